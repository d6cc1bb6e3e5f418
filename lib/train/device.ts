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
