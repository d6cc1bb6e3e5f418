/**
 * Per-rank shards of a dataset, as torch's `DistributedSampler`: the epoch's order (a permutation
 * from LibTorch's `randperm` seeded with `seed + epoch`, so the same as PyTorch's) padded by
 * wrapping around to a multiple of the world size (or truncated with `dropLast`), then every
 * `worldSize`-th index from `rank`.
 */
import { Generator, randperm } from "../random.ts";

/** Options of `DistributedSampler`. */
export interface SamplerOptions {
  rank: number;
  worldSize: number;
  /** Permute every epoch (default true). */
  shuffle?: boolean;
  /** Base seed, identical on every rank (default 0). */
  seed?: number;
  /** Drop the tail instead of padding (default false). */
  dropLast?: boolean;
}

/** The order of `n` items in `epoch` (identical on every rank). */
function epochOrder(n: number, epoch: number, shuffle: boolean, seed: number): number[] {
  if (!shuffle) return Array.from({ length: n }, (_, i) => i);
  using g = new Generator(seed + epoch);
  using perm = randperm(n, { generator: g });
  return Array.from(perm.toArray() as BigInt64Array, Number);
}

/** Samples per rank for a dataset of `n`. */
export function samplesPerRank(n: number, worldSize: number, dropLast = false): number {
  return dropLast && n % worldSize !== 0
    ? Math.ceil((n - worldSize) / worldSize)
    : Math.ceil(n / worldSize);
}

/** This rank's indices of a dataset of `n` items in `epoch`. */
export function distributedIndices(n: number, epoch: number, o: SamplerOptions): number[] {
  const { rank, worldSize } = o;
  if (!(rank >= 0 && rank < worldSize)) {
    throw new RangeError(`rank ${rank} is not in [0, ${worldSize})`);
  }
  const perRank = samplesPerRank(n, worldSize, o.dropLast);
  const total = perRank * worldSize;
  let order = epochOrder(n, epoch, o.shuffle ?? true, o.seed ?? 0);
  if (order.length < total) {
    const padded = order.slice();
    while (padded.length < total) padded.push(...order.slice(0, total - padded.length));
    order = padded;
  } else order = order.slice(0, total);
  const out = new Array<number>(perRank);
  for (let i = 0; i < perRank; i++) out[i] = order[rank + i * worldSize];
  return out;
}

/** A sampler with an epoch counter: `setEpoch(e)` before iterating each epoch. */
export class DistributedSampler {
  epoch = 0;
  constructor(readonly size: number, readonly options: SamplerOptions) {}
  /** Samples this rank sees per epoch. */
  get length(): number {
    return samplesPerRank(this.size, this.options.worldSize, this.options.dropLast);
  }
  setEpoch(epoch: number): void {
    this.epoch = epoch;
  }
  /** This rank's indices for the current epoch. */
  indices(): number[] {
    return distributedIndices(this.size, this.epoch, this.options);
  }
  [Symbol.iterator](): Iterator<number> {
    return this.indices()[Symbol.iterator]();
  }
}
