/**
 * Synchronized batch normalisation: in training, the batch mean and variance are those of the
 * global batch (one all-reduce of per-channel sums forward, one backward, in the shim's
 * `SyncBatchNormFn`); in evaluation, or without a multi-rank group, it is plain `BatchNorm`.
 * `convertSyncBatchNorm` turns every `BatchNorm` of a built network into one in place, keeping its
 * tensors and state-dict names.
 */
import { raw, type Tensor, wrap } from "../tensor.ts";
import { BatchNorm, type BatchNormOptions } from "../nn/layers.ts";
import type { Module } from "../nn/module.ts";
import type { ProcessGroup } from "./group.ts";

// The group of each synchronized layer (a WeakMap rather than a field, so that converting an
// existing BatchNorm by changing its prototype needs no new instance state).
const groups = new WeakMap<BatchNorm, ProcessGroup | null>();

/** BatchNorm whose training statistics span every rank of `group`. */
export class SyncBatchNorm extends BatchNorm {
  constructor(numFeatures: number, group: ProcessGroup | null, o: BatchNormOptions = {}) {
    super(numFeatures, o);
    groups.set(this, group);
  }

  /** The group whose ranks share the statistics (null: plain BatchNorm). */
  get group(): ProcessGroup | null {
    return groups.get(this) ?? null;
  }
  set group(g: ProcessGroup | null) {
    groups.set(this, g);
  }

  override forward(x: Tensor): Tensor {
    const g = this.group;
    if (!this.training || !g || g.worldSize === 1) return super.forward(x);
    const rm = this.runningMean;
    const momentum = this.trackBatch();
    return wrap(
      raw().dist_sync_batch_norm(
        g.ptr,
        x.ptr,
        this.weight?.ptr ?? null,
        this.bias?.ptr ?? null,
        rm?.ptr ?? null,
        this.runningVar?.ptr ?? null,
        momentum,
        this.eps,
      ),
    );
  }
}

/**
 * Makes every `BatchNorm` in `module` (switchable ones included) a `SyncBatchNorm` over `group`,
 * in place: same parameters, buffers and names. Returns `module`.
 */
export function convertSyncBatchNorm<M extends Module>(module: M, group: ProcessGroup | null): M {
  for (const [, m] of module.namedModules()) {
    if (!(m instanceof BatchNorm)) continue;
    if (!(m instanceof SyncBatchNorm)) Object.setPrototypeOf(m, SyncBatchNorm.prototype);
    groups.set(m, group);
  }
  return module;
}
