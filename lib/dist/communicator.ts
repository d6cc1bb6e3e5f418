/**
 * `Communicator`: the collectives a contrastive method calls (spec §3.8–§3.10): gathering keys
 * and negatives, and MoCo v2's shuffle-BN. `LocalCommunicator` is the single-process identity;
 * `GroupCommunicator` runs over a `ProcessGroup`.
 */
import { type Generator, randperm } from "../random.ts";
import { scope } from "../scope.ts";
import { arange, type Tensor } from "../tensor.ts";
import type { ProcessGroup } from "./group.ts";

/** A batch shuffled across ranks and the indices that undo the shuffle. */
export interface Shuffled {
  /** This rank's share of the globally permuted batch. */
  x: Tensor;
  /** Global permutation inverse (same on every rank), for `unshuffle`. */
  restore: Tensor;
}

/** Collectives over the ranks of a data-parallel job (equal batch per rank). */
export interface Communicator {
  /** This process's rank, 0-based. */
  readonly rank: number;
  /** Number of ranks. */
  readonly worldSize: number;
  /** Every rank's `t` concatenated along dim 0 in rank order; no gradient flows back. */
  gather(t: Tensor): Tensor;
  /** As `gather`, but this rank's slice keeps its gradient (SimCLR negatives). */
  gatherWithGrad(t: Tensor): Tensor;
  /** Rank `src`'s `t` on every rank, as a new tensor (`t` has the same shape everywhere). */
  broadcast(t: Tensor, src: number): Tensor;
  /** Shuffle-BN step 1: gather, permute with rank 0's permutation, keep this rank's share. */
  shuffle(x: Tensor, generator?: Generator): Shuffled;
  /** Shuffle-BN step 2: gather the encoded shares and take this rank's rows in original order. */
  unshuffle(y: Tensor, restore: Tensor): Tensor;
}

/** The single-process communicator: every collective is the identity. */
export class LocalCommunicator implements Communicator {
  readonly rank = 0;
  readonly worldSize = 1;
  gather(t: Tensor): Tensor {
    return t.detach();
  }
  gatherWithGrad(t: Tensor): Tensor {
    return t.view(...t.shape);
  }
  broadcast(t: Tensor, _src = 0): Tensor {
    return t.view(...t.shape);
  }
  shuffle(x: Tensor, _generator?: Generator): Shuffled {
    return {
      x: x.view(...x.shape),
      restore: arange(x.shape[0], undefined, 1, { device: x.device }),
    };
  }
  unshuffle(y: Tensor, _restore: Tensor): Tensor {
    return y.view(...y.shape);
  }
}

/** Collectives over a process group. */
export class GroupCommunicator implements Communicator {
  constructor(readonly group: ProcessGroup) {}
  get rank(): number {
    return this.group.rank;
  }
  get worldSize(): number {
    return this.group.worldSize;
  }
  gather(t: Tensor): Tensor {
    return this.group.allGather(t);
  }
  gatherWithGrad(t: Tensor): Tensor {
    return this.group.allGatherWithGrad(t);
  }
  broadcast(t: Tensor, src = 0): Tensor {
    using detached = t.detach();
    const out = detached.clone();
    this.group.broadcast([out], src);
    return out;
  }
  shuffle(x: Tensor, generator?: Generator): Shuffled {
    return scope(() => {
      const all = this.gather(x);
      const total = all.shape[0];
      // drawn on the CPU (generators are CPU ones), moved to the batch's device, rank 0's wins
      const drawn = randperm(total, { generator });
      const perm = x.device === "cpu" ? drawn : drawn.to(x.device);
      this.group.broadcast([perm], 0);
      const mine = perm.view(this.worldSize, -1).select(0, this.rank);
      return { x: all.indexSelect(0, mine), restore: perm.argsort(0) };
    });
  }
  unshuffle(y: Tensor, restore: Tensor): Tensor {
    return scope(() => {
      const all = this.gather(y);
      const mine = restore.view(this.worldSize, -1).select(0, this.rank);
      return all.indexSelect(0, mine);
    });
  }
}

/** The communicator of `group`, or the local one without a group (or with a single rank). */
export function communicator(group: ProcessGroup | null): Communicator {
  return group && group.worldSize > 1 ? new GroupCommunicator(group) : new LocalCommunicator();
}
