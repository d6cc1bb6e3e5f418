/** Epoch order: seeded shuffling, DistributedSampler-style sharding, batching with drop_last. */
import { mixSeed, permutation } from "./rng.ts";

/** Options of `epochBatches`. */
export interface SamplerOptions {
  batchSize: number;
  shuffle?: boolean;
  seed?: number;
  dropLast?: boolean;
  rank?: number;
  worldSize?: number;
}

/** Checks rank and world size. */
export function checkShard(rank: number, worldSize: number): void {
  if (!Number.isInteger(worldSize) || worldSize < 1) {
    throw new RangeError(`worldSize must be a positive integer, got ${worldSize}`);
  }
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new RangeError(`rank must be in [0, ${worldSize}), got ${rank}`);
  }
}

/**
 * The dataset positions this rank reads in `epoch`, in order: a permutation seeded by (seed,
 * epoch) shared by all ranks, padded by wrapping to a multiple of the world size, then every
 * `worldSize`-th entry from `rank` (as torch's DistributedSampler).
 */
export function epochIndices(size: number, epoch: number, o: SamplerOptions): Int32Array {
  const { shuffle = true, seed = 0, rank = 0, worldSize = 1 } = o;
  checkShard(rank, worldSize);
  let order: Int32Array;
  if (shuffle) order = permutation(size, mixSeed(seed, epoch));
  else order = Int32Array.from({ length: size }, (_, i) => i);
  const total = Math.ceil(size / worldSize) * worldSize;
  const mine = new Int32Array(total / worldSize);
  for (let k = 0, p = rank; p < total; k++, p += worldSize) mine[k] = order[p % size];
  return mine;
}

/** Splits `indices` into batches; the last partial batch is dropped with `dropLast`. */
export function batches(indices: Int32Array, batchSize: number, dropLast: boolean): Int32Array[] {
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  }
  const out: Int32Array[] = [];
  for (let a = 0; a < indices.length; a += batchSize) {
    const b = indices.subarray(a, Math.min(indices.length, a + batchSize));
    if (b.length < batchSize && dropLast) break;
    out.push(b);
  }
  return out;
}
