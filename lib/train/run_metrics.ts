/**
 * What the training loops share: their common options and outcome, per-epoch means and the best
 * monitored metric.
 */
import type { Device } from "../dtype.ts";

/** What every training loop takes besides its model, optimizer and data. */
export interface LoopOptions {
  /** A checkpoint file to continue from, or "auto" for the newest in the run folder. */
  resume?: string;
  /** Show the live progress line (default true). */
  progress?: boolean;
  /** Only rank 0 writes files and logs (default true). */
  isMain?: boolean;
  /** The device the model lives on (autocast's device; default the CPU). */
  device?: Device;
  /** Data parallelism: buffers synced before each step, gradients averaged after backward. */
  ddp?: {
    syncBuffers(): void;
    allReduceGradients(): void;
    /** Whether a flag is set on any rank (stop signals; see `StopSignals`). */
    anyRank(flag: boolean): boolean;
    readonly active: boolean;
  };
}

/** How a training loop ended. */
export interface LoopEnd {
  status: "completed" | "interrupted" | "max_steps";
  step: number;
  epoch: number;
  /** The best widest-width monitor value of any evaluation so far, and its step. */
  best: BestMetric | null;
  /** The newest checkpoint written. */
  checkpoint: string | null;
  wallSeconds: number;
}

/** The best value of a monitored metric (top-1, 0–1) and its step, kept across resumes. */
export interface BestMetric {
  metric: string;
  value: number;
  step: number;
}

/** `best`, or the new value when it is higher (or there was none). */
export function betterOf(
  best: BestMetric | null,
  metric: string,
  value: number,
  step: number,
): BestMetric {
  return best && best.value >= value ? best : { metric, value, step };
}

/** The sums an `EpochLog` carries through a checkpoint. */
export interface EpochLogState {
  sums: Record<string, number>;
  steps: number;
  images: number;
}

/**
 * Means of the step scalars since the last `epoch` row, with throughput. Its state goes into
 * checkpoints, so an epoch split by a resume gets the row an uninterrupted one would (its
 * seconds and images per second cover the resumed part only).
 */
export class EpochLog {
  #sums: Record<string, number> = {};
  #steps = 0;
  #images = 0;
  #since = performance.now();

  constructor(state?: EpochLogState | null) {
    if (state) {
      this.#sums = { ...state.sums };
      this.#steps = state.steps;
      this.#images = state.images;
    }
  }

  /** Optimizer steps added since the last row. */
  get steps(): number {
    return this.#steps;
  }

  /** Adds one optimizer step's scalars (gradient diagnostics excluded) and its images. */
  add(scalars: Record<string, number>, images: number): void {
    for (const [k, v] of Object.entries(scalars)) {
      if (k.startsWith("grad/")) continue;
      this.#sums[k] = (this.#sums[k] ?? 0) + v;
    }
    this.#steps++;
    this.#images += images;
  }

  /** What a checkpoint keeps. */
  state(): EpochLogState {
    return { sums: { ...this.#sums }, steps: this.#steps, images: this.#images };
  }

  /** The `epoch` row for the steps added since the last one, then starts over. */
  take(epoch: number, step: number): Record<string, number | string> {
    const seconds = (performance.now() - this.#since) / 1000;
    const means = Object.fromEntries(
      Object.entries(this.#sums).map(([k, v]) => [k, v / Math.max(1, this.#steps)]),
    );
    const row = {
      kind: "epoch",
      step,
      epoch,
      steps: this.#steps,
      ...means,
      seconds: Number(seconds.toFixed(2)),
      images_per_s: Number((this.#images / Math.max(seconds, 1e-9)).toFixed(1)),
    };
    this.#sums = {};
    this.#steps = 0;
    this.#images = 0;
    this.#since = performance.now();
    return row;
  }
}

/** TensorBoard scalars of an `epoch` row: its losses and throughput under `epoch/`. */
export function epochScalars(row: Record<string, unknown>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(row)) {
    if (typeof v !== "number") continue;
    if (k === "loss" || k.startsWith("loss/") || k === "images_per_s") out[`epoch/${k}`] = v;
  }
  return out;
}
