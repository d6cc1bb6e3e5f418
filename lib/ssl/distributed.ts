/**
 * The hook for data-parallel training: a `Communicator` (lib/dist) gathers keys and negatives
 * across ranks; `LocalCommunicator` is the single-process one. Shuffle-BN (MoCo v2, spec §3.6) is written
 * against it, so the distributed version only needs a real communicator.
 */
import type { Generator } from "../random.ts";
import { randperm } from "../random.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";

export { type Communicator, LocalCommunicator } from "../dist/communicator.ts";
import type { Communicator } from "../dist/communicator.ts";

/** A shuffled batch and the indices that undo the shuffle. */
export interface Shuffled {
  /** This rank's share of the globally shuffled batch. */
  x: Tensor;
  /** Global indices that restore the original order (see `unshuffleBatch`). */
  restore: Tensor;
}

/**
 * Shuffle-BN, step 1 (as MoCo's `_batch_shuffle_ddp`): gathers the batch from every rank,
 * permutes it with a permutation drawn on rank 0 and broadcast, and returns this rank's share.
 * With one rank the batch is permuted in place; batch-norm statistics are permutation invariant,
 * so this alone changes nothing numerically: the protection comes from normalising different
 * sub-batches (ranks, or `keyBatchSplits` in MoCo v2).
 */
export function shuffleBatch(x: Tensor, comm: Communicator, generator?: Generator): Shuffled {
  return scope(() => {
    const all = comm.gather(x);
    const total = all.shape[0];
    // Drawn on the CPU (a Generator is a CPU generator), then moved to the batch's device.
    const cpuPerm = randperm(total, { generator });
    const local = x.device === "cpu" ? cpuPerm : cpuPerm.to(x.device);
    const perm = comm.broadcast(local, 0);
    const restore = perm.argsort(0);
    const mine = perm.view(comm.worldSize, -1).select(0, comm.rank);
    return { x: all.indexSelect(0, mine), restore };
  });
}

/** Shuffle-BN, step 2: gathers the encoded shares and takes this rank's rows in original order. */
export function unshuffleBatch(y: Tensor, restore: Tensor, comm: Communicator): Tensor {
  return scope(() => {
    const all = comm.gather(y);
    const mine = restore.view(comm.worldSize, -1).select(0, comm.rank);
    return all.indexSelect(0, mine);
  });
}
