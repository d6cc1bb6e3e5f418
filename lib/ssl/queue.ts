/** MoCo's queue of normalised keys [dim, K] with a write pointer (spec §2.6, §3.8). */
import { noGrad } from "../autograd.ts";
import * as F from "../functional.ts";
import { type Generator, randn } from "../random.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";

/** A fresh queue: N(0, 1) samples [dim, size] normalised along dim 0, as the reference. */
export function initQueue(dim: number, size: number, generator?: Generator): Tensor {
  return scope(() => F.normalize(randn([dim, size], { generator }), 2, 0));
}

/**
 * Throws unless the queue size is a multiple of the global batch: otherwise an enqueue would run
 * past the end of the queue (the reference asserts `K % batch == 0`).
 */
export function checkQueueBatch(size: number, globalBatch: number, worldSize = 1): void {
  if (globalBatch > 0 && size % globalBatch === 0) return;
  const ranks = worldSize > 1 ? ` (${globalBatch / worldSize} per rank × ${worldSize} ranks)` : "";
  throw new RangeError(
    `MoCo queue size K=${size} is not a multiple of the global batch size ${globalBatch}${ranks}; ` +
      `keys are enqueued a whole batch at a time, so choose K as a multiple of ${globalBatch} ` +
      `(e.g. ${
        Math.max(1, Math.round(size / globalBatch)) * globalBatch
      }) or change the batch size`,
  );
}

/**
 * Writes `keys` [B, dim] into columns `ptr..ptr+B` of `queue` [dim, K] and advances `ptr` (an
 * int64 tensor of shape [1]) to `(ptr + B) mod K`. Returns the new pointer.
 */
export function enqueueKeys(queue: Tensor, ptr: Tensor, keys: Tensor): number {
  const [dim, size] = queue.shape;
  const [batch, keyDim] = keys.shape;
  if (keyDim !== dim) {
    throw new RangeError(`keys have dimension ${keyDim}, the queue holds ${dim}-d keys`);
  }
  checkQueueBatch(size, batch);
  const at = ptr.item();
  noGrad(() => scope(() => queue.narrow(1, at, batch).copy_(keys.detach().t())));
  const next = (at + batch) % size;
  ptr.fill_(next);
  return next;
}
