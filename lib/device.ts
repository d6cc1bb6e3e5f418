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

let initialThreads: number | null = null;

/**
 * LibTorch's own intra-op thread count, as it was before anything in this process changed it
 * (its physical cores, or OMP_NUM_THREADS).
 */
export function defaultNumThreads(): number {
  initialThreads ??= raw().get_num_threads();
  return initialThreads;
}

/** Sets LibTorch's intra-op thread count. */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) {
    throw new RangeError(`setNumThreads: expected a positive integer, got ${n}`);
  }
  defaultNumThreads();
  raw().set_num_threads(n);
}

/**
 * Applies a task's `run.threads` setting: N threads, or for 0 LibTorch's default. Setting the
 * default explicitly matters in-process: a count left by earlier code in the same process (another
 * task, a test) would otherwise carry over, and kernels that split work by thread count round
 * differently, so a resumed run in another process would no longer match bit for bit.
 */
export function applyThreadsSetting(threads: number): void {
  setNumThreads(threads > 0 ? threads : defaultNumThreads());
}

/** LibTorch's intra-op thread count. */
export function getNumThreads(): number {
  return raw().get_num_threads();
}
