/**
 * What the evaluation tasks share: checks that a model takes the dataset's images and classifies
 * its classes, and where a network's weights live.
 */
import { ConfigError } from "../config/schema.ts";
import type { Dataset } from "../data/mod.ts";
import type { Device } from "../dtype.ts";
import type { SlimmableResNet } from "../models/slimmable_resnet.ts";
import type { Tensor } from "../tensor.ts";

/** The image channels a network's stem takes. */
export function inputChannels(net: SlimmableResNet): number {
  return net.slimOptions.inChannels ?? 3;
}

/**
 * Throws a ConfigError, naming the model file, the model's input channels and `data.dataset` with
 * its channels, when `net` cannot take the images of `ds` (instead of a convolution-shape error
 * from LibTorch later).
 */
export function assertInputChannels(
  net: SlimmableResNet,
  modelPath: string,
  dataset: string,
  ds: Dataset,
): void {
  const c = inputChannels(net);
  if (c !== ds.channels) {
    throw new ConfigError(
      `--model ${modelPath} takes ${c}-channel images, but 'data.dataset' ${dataset} has ` +
        `${ds.channels}-channel images`,
    );
  }
}

/** The device holding a network's weights ("cpu" for a network without parameters). */
export function deviceOf(net: SlimmableResNet): Device {
  return net.parameters()[0]?.device ?? "cpu";
}

/** `t` itself when it is on `device` already (the CPU case), else a copy there. */
export function onDevice(t: Tensor, device: Device): Tensor {
  return t.device === device ? t : t.to(device);
}

/**
 * Throws a ConfigError naming `file` unless `net` is a classifier (a supervised or probe head) of
 * the classes of `ds`; `hint` says which file to pass instead.
 */
export function assertClassifier(
  net: SlimmableResNet,
  file: string,
  ds: Dataset,
  hint: string,
): void {
  const { head = "none", numClasses = 0 } = net.slimOptions;
  if (head !== "supervised" && head !== "supervised_switch") {
    throw new ConfigError(
      `--test-only evaluates a classifier, but ${file} has a '${head}' head (an encoder); ${hint}`,
    );
  }
  if (numClasses !== ds.classes.length) {
    throw new ConfigError(
      `${file} classifies ${numClasses} classes, but 'data.dataset' ${ds.name} has ` +
        `${ds.classes.length}`,
    );
  }
}
