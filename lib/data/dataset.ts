/** The dataset interface every reader implements, and seeded subsets. */
import type { Tensor } from "../tensor.ts";
import type { NativeSource } from "./native.ts";
import type { Stats } from "./recipes.ts";
import { Prng } from "./rng.ts";

/** A labelled image dataset backed by a native source. */
export interface Dataset {
  /** A short name (for logs). */
  readonly name: string;
  /** Number of samples. */
  readonly size: number;
  /** Class names, indexed by label. */
  readonly classes: readonly string[];
  /** Channels of the images as the loader delivers them (1 or 3). */
  readonly channels: 1 | 3;
  /** Normalisation statistics, when known. */
  readonly stats?: Stats;
  /** The side of every image, when they all share one (in-memory datasets). */
  readonly imageSize?: number;
  /** Label of sample `i` (-1 when unlabelled). */
  label(i: number): number;
  /** The source index of sample `i` (differs from `i` in subsets). */
  sourceIndex(i: number): number;
  /** The native source holding the samples (owned by the dataset). */
  readonly source: NativeSource;
  /** Sample `i` as uint8 [C, H, W] (decoded if needed); throws `DataError` naming a bad file. */
  image(i: number): Tensor;
  /** Frees the native source and tensors (subsets share their parent's: dispose the parent). */
  dispose(): void;
}

/** How to pick a subset: a fraction of the samples or a count, chosen with a seed. */
export interface SubsetOptions {
  fraction?: number;
  count?: number;
  seed?: number;
}

/** The sorted source indices of a seeded random subset of `size` samples. */
export function subsetIndices(size: number, opts: SubsetOptions): Int32Array {
  const { fraction, count, seed = 0 } = opts;
  if ((fraction === undefined) === (count === undefined)) {
    throw new RangeError("subset: give exactly one of fraction or count");
  }
  const k = count ?? Math.round((fraction as number) * size);
  if (!Number.isInteger(k) || k < 0 || k > size) {
    throw new RangeError(`subset: cannot take ${count ?? fraction} of ${size} samples`);
  }
  // Partial Fisher–Yates: the first k entries of a seeded permutation.
  const perm = new Int32Array(size);
  for (let i = 0; i < size; i++) perm[i] = i;
  const r = new Prng(seed);
  for (let i = 0; i < k; i++) {
    const j = i + r.below(size - i);
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm.slice(0, k).sort();
}

/** A view of some samples of a parent dataset. */
export class Subset implements Dataset {
  readonly name: string;
  readonly #parent: Dataset;
  readonly #idx: Int32Array;
  constructor(parent: Dataset, indices: Int32Array) {
    this.#parent = parent;
    this.#idx = indices;
    this.name = `${parent.name}[${indices.length}]`;
  }
  get size(): number {
    return this.#idx.length;
  }
  /** The dataset this is a view of. */
  get parent(): Dataset {
    return this.#parent;
  }
  get classes(): readonly string[] {
    return this.#parent.classes;
  }
  get channels(): 1 | 3 {
    return this.#parent.channels;
  }
  get stats(): Stats | undefined {
    return this.#parent.stats;
  }
  get source(): NativeSource {
    return this.#parent.source;
  }
  get imageSize(): number | undefined {
    return this.#parent.imageSize;
  }
  #at(i: number): number {
    if (!Number.isInteger(i) || i < 0 || i >= this.#idx.length) {
      throw new RangeError(`index ${i} out of range [0, ${this.#idx.length})`);
    }
    return this.#idx[i];
  }
  label(i: number): number {
    return this.#parent.label(this.#at(i));
  }
  sourceIndex(i: number): number {
    return this.#parent.sourceIndex(this.#at(i));
  }
  image(i: number): Tensor {
    return this.#parent.image(this.#at(i));
  }
  /** Subsets own nothing; disposing one is a no-op. */
  dispose(): void {}
}

/**
 * Splits `ds` into a seeded held-out part of `count` samples and the rest, both views of `ds`
 * (which owns their data: dispose it, not them).
 */
export function holdOut(ds: Dataset, count: number, seed = 0): { rest: Subset; held: Subset } {
  const held = subsetIndices(ds.size, { count, seed });
  const isHeld = new Uint8Array(ds.size);
  for (const i of held) isHeld[i] = 1;
  const rest = new Int32Array(ds.size - held.length);
  for (let i = 0, k = 0; i < ds.size; i++) if (!isHeld[i]) rest[k++] = i;
  return { rest: new Subset(ds, rest), held: new Subset(ds, held) };
}

/** A seeded subset (a fraction or a count of the samples). */
export function subset(ds: Dataset, opts: SubsetOptions): Subset {
  return new Subset(ds, subsetIndices(ds.size, opts));
}

/** Base of the readers: label array, bounds checks, identity source indices. */
export abstract class BaseDataset implements Dataset {
  abstract readonly name: string;
  abstract readonly classes: readonly string[];
  abstract readonly channels: 1 | 3;
  readonly stats?: Stats;
  protected abstract readonly labels: Int32Array;
  abstract readonly source: NativeSource;
  abstract image(i: number): Tensor;
  get size(): number {
    return this.labels.length;
  }
  protected check(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.size) {
      throw new RangeError(`${this.name}: index ${i} out of range [0, ${this.size})`);
    }
  }
  label(i: number): number {
    this.check(i);
    return this.labels[i];
  }
  sourceIndex(i: number): number {
    this.check(i);
    return i;
  }
  /** A seeded subset of this dataset. */
  subset(opts: SubsetOptions): Subset {
    return subset(this, opts);
  }
  dispose(): void {
    this.source.dispose();
  }
}
