/**
 * BatchNorm recalibration of a slimmable network, width by width ("post-statistics", Yu & Huang,
 * US-Nets 2019). The running statistics a network collects while training average augmented
 * views under weights that kept moving; recomputing them once training ends, as an exact average
 * over clean training images at the final weights, gives each width the statistics of the inputs
 * it is evaluated on. No labels are used.
 */
import { noGrad } from "../autograd.ts";
import type { SlimmableResNet } from "../models/slimmable_resnet.ts";
import { SyncBatchNorm } from "../dist/sync_bn.ts";
import { BatchNorm } from "../nn/layers.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";

/** Options of `recalibrateBatchNorm`. */
export interface RecalibrationOptions {
  /** Images used per width, the first ones of `images` (default: all). */
  samples?: number;
  /** Batch size of the passes (default 256): the statistics average per-batch ones. */
  batch?: number;
}

/** The BatchNorms of `net` that keep running statistics. */
function trackingNorms(net: SlimmableResNet): BatchNorm[] {
  return net.namedModules().map(([, m]) => m).filter((m): m is BatchNorm =>
    m instanceof BatchNorm && m.runningMean !== null
  );
}

/**
 * Replaces the running mean and variance of every BatchNorm the backbone uses at each width by
 * their average over batches of `images` (N,C,H,W, normalised as for evaluation), taken in
 * training mode at the current weights. BatchNorms no width's backbone reaches (in a head) keep
 * their statistics. A SyncBatchNorm averages this process's images only (no other rank takes
 * part). Weights are not touched; the network's mode is restored.
 */
export function recalibrateBatchNorm(
  net: SlimmableResNet,
  images: Tensor,
  o: RecalibrationOptions = {},
): void {
  const n = Math.min(o.samples ?? images.shape[0], images.shape[0]);
  const batch = o.batch ?? 256;
  if (n < 2) throw new RangeError(`BatchNorm recalibration needs at least 2 images, got ${n}`);
  const norms = trackingNorms(net);
  const saved = norms.map((bn) => ({
    momentum: bn.momentum,
    tracked: bn.numBatchesTracked?.item() ?? 0,
  }));
  // Statistics of this process's images: no collective (other ranks do not take part).
  const groups = norms.map((bn) => bn instanceof SyncBatchNorm ? bn.group : null);
  norms.forEach((bn) => bn instanceof SyncBatchNorm && (bn.group = null));
  const recalibrated = new Set<BatchNorm>();
  const wasTraining = net.training;
  const device = net.parameters()[0]?.device ?? "cpu";
  try {
    for (const width of net.widths) {
      for (const bn of norms) {
        if (recalibrated.has(bn)) continue;
        bn.momentum = null;
        bn.numBatchesTracked?.zero_();
      }
      net.withWidth(width, () => {
        net.train();
        noGrad(() => {
          for (let i = 0; i < n;) {
            // A last batch of one image has no variance: it joins the one before.
            const size = n - i === batch + 1 ? batch + 1 : Math.min(batch, n - i);
            scope(() => {
              const x = images.narrow(0, i, size);
              net.features(device === "cpu" ? x : x.to(device));
            });
            i += size;
          }
        });
      });
      for (const bn of norms) {
        if ((bn.numBatchesTracked?.item() ?? 0) > 0) recalibrated.add(bn);
      }
    }
  } finally {
    norms.forEach((bn, i) => {
      if (bn instanceof SyncBatchNorm) bn.group = groups[i];
      bn.momentum = saved[i].momentum;
      if (!recalibrated.has(bn)) bn.numBatchesTracked?.fill_(saved[i].tracked);
    });
    net.train(wasTraining);
  }
}

/**
 * Runs `fn` with statistics recalibrated as `recalibrateBatchNorm` does, then restores the
 * running statistics the network had (a monitor during training must not change its state).
 */
export function withRecalibratedBatchNorm<T>(
  net: SlimmableResNet,
  images: Tensor,
  o: RecalibrationOptions,
  fn: () => T,
): T {
  return scope(() => {
    const buffers = trackingNorms(net).flatMap((bn) =>
      [bn.runningMean, bn.runningVar, bn.numBatchesTracked].filter((t) => t !== null)
    );
    const saved = noGrad(() => buffers.map((t) => t.clone()));
    try {
      recalibrateBatchNorm(net, images, o);
      return fn();
    } finally {
      noGrad(() => buffers.forEach((t, i) => t.copy_(saved[i])));
    }
  });
}
