/** Devices, threads and memory statistics. */
import { raw } from "./tensor.ts";

/** CUDA queries. */
export const cuda = {
  /** Whether a CUDA device can be used (false on CPU LibTorch builds). */
  isAvailable(): boolean {
    return raw().cuda_is_available();
  },
  /** Number of visible CUDA devices. */
  deviceCount(): number {
    return raw().cuda_device_count();
  },
  /** Waits for all work on `device` to finish. */
  synchronize(device = 0): void {
    raw().cuda_synchronize(device);
  },
  /** Caching-allocator statistics of `device` in bytes (zeros on CPU builds). */
  memoryStats(
    device = 0,
  ): { allocated: number; reserved: number; peakAllocated: number; peakReserved: number } {
    const s = (w: number) => raw().cuda_memory_stat(device, w);
    return { allocated: s(0), reserved: s(1), peakAllocated: s(2), peakReserved: s(3) };
  },
  /** Starts the peak statistics of `device` anew (`torch.cuda.reset_peak_memory_stats`). */
  resetPeakStats(device = 0): void {
    raw().cuda_reset_peak(device);
  },
  /**
   * cuDNN's autotuner (`torch.backends.cudnn.benchmark`): on, the first convolution of each shape
   * times the available algorithms and keeps the fastest. Off by default, as in PyTorch.
   */
  setCudnnBenchmark(on: boolean): void {
    raw().cudnn_set_benchmark(on);
  },
  /** Returns cached, unused CUDA memory to the driver. */
  emptyCache(): void {
    raw().cuda_empty_cache();
  },
  /** Whether the shim was compiled with CUDA memory statistics. */
  builtWithCuda(): boolean {
    return raw().built_with_cuda();
  },
};

/** Sets LibTorch's intra-op thread count. */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`setNumThreads: expected a positive integer, got ${n}`);
  }
  raw().set_num_threads(n);
}

/** LibTorch's intra-op thread count. */
export function getNumThreads(): number {
  return raw().get_num_threads();
}
