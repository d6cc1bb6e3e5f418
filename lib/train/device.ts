/** What a task's `run.device` setting means on this machine. */
import { cuda } from "../device.ts";
import type { Device } from "../dtype.ts";
import { ConfigError } from "../config/schema.ts";

/**
 * The device a `run.device` setting means here: "cpu", "cuda" (an error naming the key when this
 * LibTorch has no usable CUDA device) or "auto" (CUDA when available). `cudaDevice` is the CUDA
 * device to use, e.g. a launched rank's own.
 */
export function resolveDevice(setting: string, cudaDevice: Device = "cuda"): Device {
  if (setting === "cpu") return "cpu";
  const available = cuda.isAvailable();
  if (setting === "cuda" && !available) {
    throw new ConfigError("'run.device: cuda' but this LibTorch has no usable CUDA device");
  }
  return available ? cudaDevice : "cpu";
}

/**
 * The device a training run uses (`resolveDevice` of `run.device`), refusing fp16 autocast when
 * that is the CPU: "auto" can land there on a machine without CUDA.
 */
export function trainingDevice(
  run: { device: string; amp: string },
  cudaDevice: Device = "cuda",
): Device {
  const device = resolveDevice(run.device, cudaDevice);
  if (device === "cpu" && run.amp === "fp16") {
    throw new ConfigError(
      "'run.amp: fp16' needs CUDA and this run is on the CPU; use bf16 or auto",
    );
  }
  return device;
}
