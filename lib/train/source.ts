/**
 * What the trainer consumes: batches of two augmented views, one epoch at a time, reproducible
 * from (seed, epoch, batch index) so a resumed run sees exactly the batches it would have seen.
 */
import { randn, randperm } from "../random.ts";
import { Generator } from "../random.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";

/** Two views of one batch, owned by the caller. */
export interface TwoViews {
  a: Tensor;
  b: Tensor;
}

/** A source of two-view batches. */
export interface TwoViewSource {
  /** Batches per epoch (incomplete batches are dropped). */
  readonly stepsPerEpoch: number;
  readonly batchSize: number;
  /** Starts epoch `epoch`, skipping its first `skip` batches (used when resuming). */
  startEpoch(epoch: number, skip: number): void;
  /** The next batch of the epoch, or null when the epoch is over. */
  next(): Promise<TwoViews | null>;
  /** Seconds the consumer has waited for batches so far. */
  readonly waitSeconds: number;
  /** Stops background work and frees buffers. */
  close(): void;
}

/** Labelled images for evaluation (kNN, probes): float images [N,C,H,W] and int64 labels [N]. */
export interface LabeledSplit {
  images: Tensor;
  labels: Tensor;
  numClasses: number;
  /** The per-channel normalisation applied to `images`, when known. */
  stats?: { mean: readonly number[]; std: readonly number[] };
}

/** Frees the tensors of each split (absent ones are skipped). */
export function disposeSplits(...splits: (LabeledSplit | null | undefined)[]): void {
  for (const s of splits) {
    s?.images.dispose();
    s?.labels.dispose();
  }
}

/**
 * An in-memory source for tests and small data: each view is the image plus Gaussian noise of
 * `noise` std, drawn from a generator seeded by (seed, epoch, batch).
 */
export class NoisyViewsSource implements TwoViewSource {
  readonly stepsPerEpoch: number;
  #epoch = 0;
  #cursor = 0;
  #order: Tensor | null = null;
  waitSeconds = 0;
  constructor(
    readonly images: Tensor,
    readonly batchSize: number,
    readonly seed: number,
    readonly noise = 0.1,
  ) {
    this.stepsPerEpoch = Math.floor(images.shape[0] / batchSize);
    if (this.stepsPerEpoch < 1) {
      throw new RangeError(`batch size ${batchSize} exceeds the ${images.shape[0]} images`);
    }
  }
  startEpoch(epoch: number, skip: number): void {
    this.#epoch = epoch;
    this.#cursor = skip;
    this.#order?.dispose();
    using g = new Generator(this.seed * 1_000_003 + epoch);
    this.#order = randperm(this.images.shape[0], { generator: g }).keep();
  }
  next(): Promise<TwoViews | null> {
    if (!this.#order || this.#cursor >= this.stepsPerEpoch) return Promise.resolve(null);
    const i = this.#cursor++;
    const views = scope(() => {
      using g = new Generator((this.seed * 1_000_003 + this.#epoch) * 65_537 + i + 1);
      const idx = this.#order!.narrow(0, i * this.batchSize, this.batchSize);
      const x = this.images.indexSelect(0, idx);
      const shape = x.shape;
      return {
        a: x.add(randn(shape, { generator: g }).mul(this.noise)),
        b: x.add(randn(shape, { generator: g }).mul(this.noise)),
      };
    });
    views.a.keep();
    views.b.keep();
    return Promise.resolve(views);
  }
  close(): void {
    this.#order?.dispose();
    this.#order = null;
  }
}
