/**
 * The batch loader: C++ worker threads in the shim decode and augment whole batches into a queue
 * while the model computes; this side only submits index lists and takes finished batches.
 * Per-epoch seeded shuffling, sharding by rank, drop_last, one or two views per sample, pinned
 * memory and a non-blocking device transfer when CUDA is present, and the time the consumer
 * waited for data.
 */
import type { Handle } from "../ffi/library.ts";
import { cuda } from "../device.ts";
import type { Device } from "../dtype.ts";
import { raw, type Tensor, tensor, wrapList } from "../tensor.ts";
import { configArray } from "./augment.ts";
import type { Dataset } from "./dataset.ts";
import { type Recipe, recipe as namedRecipe } from "./recipes.ts";
import { mixSeed } from "./rng.ts";
import { batches, checkShard, epochIndices } from "./sampler.ts";

/** Options of `Loader`. */
export interface LoaderOptions {
  batchSize: number;
  /**
   * A recipe or its name. By name, `_small` recipes take the dataset's image side and
   * statistics; the others use 224 px and ImageNet statistics.
   */
  recipe: Recipe | string;
  /** Output size when `recipe` is a name (overrides the default). */
  size?: number;
  seed?: number;
  shuffle?: boolean;
  dropLast?: boolean;
  rank?: number;
  worldSize?: number;
  /** Shim worker threads (default: the machine's cores). */
  threads?: number;
  /** Batches prepared ahead of the consumer (default 3). */
  prefetch?: number;
  /** Where batches go; a CUDA device makes the loader pin memory and copy non-blocking. */
  device?: Device;
  /** Pin host memory (default: when `device` is CUDA and CUDA is available). */
  pinMemory?: boolean;
  /** Throw on an undecodable image instead of skipping it. */
  strict?: boolean;
  /** Where skipped images and epoch summaries are reported (default console.warn). */
  log?: (msg: string) => void;
}

/** One batch: the views of its samples, their labels and dataset positions. */
export interface Batch extends Disposable {
  /** One float tensor [B, C, S, S] per view. */
  views: Tensor[];
  /** int64 [B]. */
  labels: Tensor;
  /** int64 [B]: source indices of the samples (after any skipped ones were removed). */
  indices: Tensor;
  dispose(): void;
}

/** What an epoch did. */
export interface EpochSummary {
  epoch: number;
  batches: number;
  samples: number;
  skipped: number;
  /** Path (or key) and reason of each skipped image. */
  skippedPaths: string[];
  /** Milliseconds the consumer spent blocked waiting for batches. */
  waitMs: number;
}

/** The augmentation seed of an epoch on a rank (streams are keyed by source index within it). */
export function epochSeed(seed: number, epoch: number, rank: number): number {
  return mixSeed(seed, epoch, rank, 0xa46);
}

const loaders = new FinalizationRegistry<Handle>((h) => {
  try {
    raw().data_loader_free(h);
  } catch { /* shutting down */ }
});

/** Batches of a dataset, prepared on the shim's threads. */
export class Loader implements Disposable {
  readonly dataset: Dataset;
  readonly recipe: Recipe;
  readonly batchSize: number;
  readonly #o: LoaderOptions;
  #h: Handle | null;
  readonly #labels: Int32Array;
  readonly #sourceIndex: Int32Array;
  #summaries: EpochSummary[] = [];
  #totalWaitMs = 0;

  constructor(dataset: Dataset, opts: LoaderOptions) {
    const { rank = 0, worldSize = 1 } = opts;
    checkShard(rank, worldSize);
    this.dataset = dataset;
    this.batchSize = opts.batchSize;
    this.#o = opts;
    this.recipe = typeof opts.recipe === "string"
      ? resolveRecipe(opts.recipe, dataset, opts)
      : opts.recipe;
    const n = dataset.size;
    this.#labels = Int32Array.from({ length: n }, (_, i) => dataset.label(i));
    this.#sourceIndex = Int32Array.from({ length: n }, (_, i) => dataset.sourceIndex(i));
    if (isCuda(opts.device) && !cuda.isAvailable()) {
      throw new Error(`loader: device ${opts.device} requested, but CUDA is not available`);
    }
    const pin = opts.pinMemory ?? isCuda(opts.device);
    const cfgs = this.recipe.views.flatMap(configArray);
    const threads = opts.threads ?? navigator.hardwareConcurrency;
    this.#h = raw().data_loader_new(
      dataset.source.ptr,
      cfgs,
      dataset.channels,
      threads,
      pin,
      opts.strict ?? false,
    );
    loaders.register(this, this.#h, this);
  }

  get #ptr(): Handle {
    if (!this.#h) throw new Error("loader used after it was disposed");
    return this.#h;
  }

  /** Number of batches one epoch yields on this rank. */
  get batchesPerEpoch(): number {
    const { worldSize = 1, dropLast = true } = this.#o;
    const per = Math.ceil(this.dataset.size / worldSize);
    return dropLast ? Math.floor(per / this.batchSize) : Math.ceil(per / this.batchSize);
  }

  /** Summaries of the finished epochs. */
  get summaries(): readonly EpochSummary[] {
    return this.#summaries;
  }

  /** Milliseconds the consumer waited for data, over all epochs. */
  get totalWaitMs(): number {
    return this.#totalWaitMs;
  }

  /**
   * The batches of `epoch`. Each batch is the caller's to dispose (`for (using b of ...)`).
   * Stopping early is fine: the batches still in flight are drained and freed. `skip` leaves
   * out the first batches (a resumed run sees exactly the batches it would have seen: order and
   * augmentation depend only on the seed, the epoch, the rank and the sample).
   */
  *epoch(epoch: number, opts: { skip?: number } = {}): Generator<Batch, EpochSummary> {
    const o = this.#o;
    const order = epochIndices(this.dataset.size, epoch, { ...o, seed: o.seed ?? 0 });
    const list = batches(order, this.batchSize, o.dropLast ?? true).slice(opts.skip ?? 0);
    const augSeed = epochSeed(o.seed ?? 0, epoch, o.rank ?? 0);
    const ahead = Math.max(1, o.prefetch ?? 3);
    const summary: EpochSummary = {
      epoch,
      batches: 0,
      samples: 0,
      skipped: 0,
      skippedPaths: [],
      waitMs: 0,
    };
    let submitted = 0, taken = 0;
    const submit = () => {
      const b = list[submitted++];
      using idx = tensor(Array.from(b, (i) => this.#sourceIndex[i]), [b.length], {
        dtype: "int64",
      });
      using lab = tensor(Array.from(b, (i) => this.#labels[i]), [b.length], { dtype: "int64" });
      raw().data_loader_submit(this.#ptr, idx.ptr, lab.ptr, augSeed);
    };
    try {
      while (submitted < list.length && submitted < ahead) submit();
      while (taken < list.length) {
        const batch = this.#take(summary);
        taken++;
        if (submitted < list.length) submit();
        yield batch;
      }
    } finally {
      while (taken < submitted) { // drain what is still queued (early exit or error)
        taken++;
        try {
          for (const t of wrapList(raw().data_loader_take(this.#ptr))) t?.dispose();
        } catch { /* strict-mode errors of abandoned batches */ }
      }
      this.#summaries.push(summary);
      this.#totalWaitMs += summary.waitMs;
    }
    if (summary.skipped > 0) {
      this.#log(
        `data: epoch ${epoch}: skipped ${summary.skipped} undecodable image(s) of ${
          summary.samples + summary.skipped
        }`,
      );
    }
    return summary;
  }

  #log(msg: string): void {
    (this.#o.log ?? console.warn)(msg);
  }

  #take(summary: EpochSummary): Batch {
    const t0 = performance.now();
    const hs = raw().data_loader_take(this.#ptr);
    summary.waitMs += performance.now() - t0;
    const errors = raw().data_loader_errors(this.#ptr);
    for (const line of errors.split("\n")) {
      if (!line) continue;
      const [path, ...why] = line.split("\t");
      summary.skipped++;
      summary.skippedPaths.push(`${path}: ${why.join(" ")}`);
      this.#log(`data: skipped ${path}: ${why.join(" ")}`);
    }
    const [indices, labels, ...views] = wrapList(hs);
    summary.batches++;
    summary.samples += indices.shape[0];
    const dev = this.#o.device;
    const moved = isCuda(dev) ? views.map((v) => moveAndFree(v, dev as Device)) : views;
    return {
      views: moved,
      labels,
      indices,
      dispose() {
        for (const t of [...moved, labels, indices]) t.dispose();
      },
      [Symbol.dispose]() {
        this.dispose();
      },
    };
  }

  /** Stops the worker threads and frees the loader. */
  dispose(): void {
    if (!this.#h) return;
    loaders.unregister(this);
    raw().data_loader_free(this.#h);
    this.#h = null;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

function resolveRecipe(name: string, ds: Dataset, o: LoaderOptions): Recipe {
  const small = name.endsWith("_small");
  return namedRecipe(name, {
    size: o.size ?? (small ? ds.imageSize : undefined),
    stats: small ? ds.stats : undefined,
  });
}

function isCuda(d: Device | undefined): boolean {
  return typeof d === "string" && d.startsWith("cuda");
}

/** Copies to the device without blocking (the pinned source stays valid until the copy ends). */
function moveAndFree(t: Tensor, device: Device): Tensor {
  const out = t.to(device, true);
  t.dispose();
  return out;
}
