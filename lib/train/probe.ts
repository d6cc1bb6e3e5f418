/**
 * Linear evaluation of a pretrained slimmable backbone (spec §3.5): the backbone is frozen and kept
 * in eval mode, each width gets its own linear classifier (`supervised_switch`), sub-width heads
 * may learn by in-place distillation from the full width's predictions mixed with the labels, and
 * afterwards every backbone weight and BN statistic is checked to be unchanged.
 */
import { noGrad } from "../autograd.ts";
import * as F from "../functional.ts";
import type { Dataset } from "../data/mod.ts";
import { Loader } from "../data/mod.ts";
import { SlimmableResNet } from "../models/slimmable_resnet.ts";
import { SGD } from "../optim.ts";
import { randperm } from "../random.ts";
import { Generator } from "../random.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { learningRate } from "./schedule.ts";
import { extractFeatures } from "./monitor.ts";
import { deviceOf, onDevice } from "./eval_setup.ts";
import type { LabeledSplit } from "./source.ts";

/** Probe settings. */
export interface ProbeOptions {
  epochs: number;
  lr: number;
  momentum: number;
  weightDecay: number;
  decay: "cosine" | "step";
  milestones: readonly number[];
  /** Sub-width heads learn from the full width's softened predictions. */
  inplaceDistill: boolean;
  /** With `inplaceDistill`: average the distillation and label losses (the paper's setting). */
  mixed: boolean;
  /** Sum (default) or average the per-width losses. */
  reduce: "sum" | "mean";
  batchSize: number;
  seed: number;
}

/**
 * A probe network (on the CPU): the pretrained backbone with one linear head per width, frozen
 * and in eval mode. `modelPath` names the pretrained file in errors.
 */
export function probeNetwork(
  pretrained: SlimmableResNet,
  numClasses: number,
  modelPath = "the pretrained network",
): SlimmableResNet {
  const { head: _h, numClasses: _n, mlpDim: _m, ...rest } = pretrained.slimOptions;
  const net = new SlimmableResNet({
    ...rest,
    widths: pretrained.widths,
    head: "supervised_switch",
    numClasses,
  });
  const backbone = new Map([...pretrained.stateDict()].filter(([k]) => !k.startsWith("fc.")));
  const { missing } = net.loadStateDict(backbone, false);
  const notHead = missing.filter((k) => !k.startsWith("fc."));
  if (notHead.length) {
    net.dispose();
    throw new Error(`${modelPath} lacks backbone keys: ${notHead.join(", ")}`);
  }
  for (const [name, p] of net.namedParameters()) p.requiresGrad = name.startsWith("fc.");
  net.eval();
  return net;
}

/** `−Σ p·log softmax(q)` averaged over the batch (CrossEntropyLossSoft). */
export function softCrossEntropy(logits: Tensor, target: Tensor): Tensor {
  return scope(() => logits.logSoftmax(1).mul(target).sum(1).mean().neg());
}

/**
 * The loss over all widths' logits (widest first): CE at the full width; per sub-width CE, soft CE
 * to the full width's predictions (in-place distillation), or their mean (`mixed`, spec §3.5).
 */
export function slimmableClassificationLoss(
  logits: Tensor[],
  labels: Tensor,
  o: Pick<ProbeOptions, "inplaceDistill" | "mixed" | "reduce">,
): Tensor {
  return scope(() => {
    const teacher = logits[0].detach().softmax(1);
    let total = F.crossEntropy(logits[0], labels);
    for (const l of logits.slice(1)) {
      let term: Tensor;
      if (!o.inplaceDistill) term = F.crossEntropy(l, labels);
      else if (o.mixed) term = softCrossEntropy(l, teacher).add(F.crossEntropy(l, labels)).mul(0.5);
      else term = softCrossEntropy(l, teacher);
      total = total.add(term);
    }
    return o.reduce === "mean" ? total.div(logits.length) : total;
  });
}

/** Copies of every non-head state entry, to prove the probe left the backbone alone. */
export function backboneSnapshot(net: SlimmableResNet): Map<string, Tensor> {
  return new Map(
    [...net.stateDict()].filter(([k]) => !k.startsWith("fc.")).map((
      [k, t],
    ) => [k, t.clone().keep()]),
  );
}

/** Names of backbone entries that differ from `snapshot` (must be empty after a probe). */
export function changedBackbone(net: SlimmableResNet, snapshot: Map<string, Tensor>): string[] {
  const now = net.stateDict();
  return [...snapshot].filter(([k, t]) => !now.get(k)!.equal(t)).map(([k]) => k);
}

/**
 * Top-1 (0–1) per width of a classifier (a probe or a supervised network) on labelled, normalised
 * images, in eval mode (the network's mode is restored afterwards); batches go to the network's
 * device.
 */
export function top1PerWidth(
  net: SlimmableResNet,
  test: LabeledSplit,
  batch = 512,
): Map<number, number> {
  const out = new Map<number, number>();
  const device = deviceOf(net);
  const wasTraining = net.training;
  net.eval();
  try {
    for (const w of net.widths) {
      out.set(
        w,
        net.withWidth(w, () =>
          noGrad(() =>
            scope(() => {
              let correct = 0;
              for (let i = 0; i < test.images.shape[0]; i += batch) {
                const n = Math.min(batch, test.images.shape[0] - i);
                const x = onDevice(test.images.narrow(0, i, n), device);
                const y = onDevice(test.labels.narrow(0, i, n), device);
                correct += net.forward(x).argmax(1).eq(y).sum().item();
              }
              return correct / test.images.shape[0];
            })
          )),
      );
    }
  } finally {
    net.train(wasTraining);
  }
  return out;
}

/**
 * Trains the heads. With `cached` the backbone features are computed once per width (no
 * augmentation: fast on a CPU) and kept on the network's device; otherwise batches come from
 * `loader` (the `linear` recipe; give it the network's device) and the frozen backbone runs every
 * step. Labels follow the logits to their device. Returns the mean loss of the last epoch.
 */
export function trainProbe(
  net: SlimmableResNet,
  o: ProbeOptions,
  data: { cached: LabeledSplit } | { loader: Loader; dataset: Dataset },
  onEpoch?: (epoch: number, loss: number) => void,
  /** Called after each backward pass (data parallelism averages the heads' gradients here). */
  afterBackward?: () => void,
): number {
  const heads = net.parameters().filter((p) => p.requiresGrad);
  const opt = new SGD(heads, { lr: o.lr, momentum: o.momentum, weight_decay: o.weightDecay });
  const snapshot = backboneSnapshot(net);
  const device = deviceOf(net);
  /** One optimizer step of the heads on the widths' logits; returns the loss. */
  const update = (logits: Tensor[], labels: Tensor): number => {
    const loss = slimmableClassificationLoss(logits, labels, o);
    opt.zeroGrad();
    loss.backward();
    afterBackward?.();
    opt.step();
    return loss.item();
  };
  let last = NaN;
  try {
    if ("cached" in data) {
      const feats = net.widths.map((w) =>
        scope(() =>
          net.withWidth(w, () => onDevice(extractFeatures(net, data.cached.images), device))
        ).keep()
      );
      try {
        const n = data.cached.images.shape[0];
        const steps = Math.floor(n / o.batchSize);
        const total = Math.max(1, Math.ceil(o.epochs * steps));
        for (let step = 0, epoch = 0; step < total; epoch++) {
          using g = new Generator(o.seed * 7919 + epoch);
          using order = randperm(n, { generator: g });
          let sum = 0, count = 0;
          for (let b = 0; b < steps && step < total; b++, step++) {
            opt.setLr(schedule(o, step, total, steps));
            sum += scope(() => {
              const idx = order.narrow(0, b * o.batchSize, o.batchSize);
              const rows = onDevice(idx, device);
              const head = net.fc!;
              const logits = net.widths.map((w, i) =>
                net.withWidth(w, () => head.forward(feats[i].indexSelect(0, rows)))
              );
              return update(logits, onDevice(data.cached.labels.indexSelect(0, idx), device));
            });
            count++;
          }
          last = sum / Math.max(1, count);
          onEpoch?.(epoch, last);
        }
      } finally {
        feats.forEach((f) => f.dispose());
      }
    } else {
      const steps = data.loader.batchesPerEpoch;
      const total = Math.max(1, Math.ceil(o.epochs * steps));
      for (let step = 0, epoch = 0; step < total; epoch++) {
        let sum = 0, count = 0;
        for (const batch of data.loader.epoch(epoch)) {
          try {
            if (step >= total) break;
            opt.setLr(schedule(o, step, total, steps));
            sum += scope(() => {
              const logits = net.widths.map((w) =>
                net.withWidth(w, () => net.forward(batch.views[0]))
              );
              return update(logits, onDevice(batch.labels, device));
            });
            count++;
            step++;
          } finally {
            batch.dispose();
          }
        }
        last = sum / Math.max(1, count);
        onEpoch?.(epoch, last);
      }
    }
    const changed = changedBackbone(net, snapshot);
    if (changed.length) {
      throw new Error(`the probe changed the frozen backbone: ${changed.slice(0, 5).join(", ")}`);
    }
  } finally {
    opt.dispose();
    for (const t of snapshot.values()) t.dispose();
  }
  return last;
}

function schedule(o: ProbeOptions, step: number, total: number, stepsPerEpoch: number): number {
  return learningRate({
    lr: o.lr,
    totalSteps: total,
    kind: o.decay,
    milestones: o.milestones,
    stepsPerEpoch,
  }, step);
}
