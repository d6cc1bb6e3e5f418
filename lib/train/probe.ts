/**
 * Linear evaluation of a pretrained slimmable backbone (spec §3.5): the backbone is frozen and kept
 * in eval mode, each width gets its own linear classifier (`supervised_switch`), sub-width heads
 * may learn by in-place distillation from the full width's predictions mixed with the labels, and
 * afterwards every backbone weight and BN statistic is checked to be unchanged.
 */
import { noGrad } from "../autograd.ts";
import * as F from "../functional.ts";
import type { Dataset } from "../data/mod.ts";
import { Loader } from "../data/mod.ts";
import { SlimmableResNet } from "../models/slimmable_resnet.ts";
import { SGD } from "../optim.ts";
import { randperm } from "../random.ts";
import { Generator } from "../random.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { learningRate } from "./schedule.ts";
import { EpochLog } from "./run_metrics.ts";
import { extractFeatures } from "./monitor.ts";
import { deviceOf, onDevice } from "./eval_setup.ts";
import type { Device } from "../dtype.ts";
import type { LabeledSplit } from "./source.ts";

/** Probe settings. */
export interface ProbeOptions {
  epochs: number;
  lr: number;
  momentum: number;
  weightDecay: number;
  decay: "cosine" | "step";
  milestones: readonly number[];
  /** Sub-width heads learn from the full width's softened predictions. */
  inplaceDistill: boolean;
  /** With `inplaceDistill`: average the distillation and label losses (the paper's setting). */
  mixed: boolean;
  /** Sum (default) or average the per-width losses. */
  reduce: "sum" | "mean";
  batchSize: number;
  seed: number;
}

/**
 * A probe network (on the CPU): the pretrained backbone with one linear head per width, frozen
 * and in eval mode. `modelPath` names the pretrained file in errors.
 */
export function probeNetwork(
  pretrained: SlimmableResNet,
  numClasses: number,
  modelPath = "the pretrained network",
): SlimmableResNet {
  const { head: _h, numClasses: _n, mlpDim: _m, ...rest } = pretrained.slimOptions;
  const net = new SlimmableResNet({
    ...rest,
    widths: pretrained.widths,
    head: "supervised_switch",
    numClasses,
  });
  const backbone = new Map([...pretrained.stateDict()].filter(([k]) => !k.startsWith("fc.")));
  const { missing } = net.loadStateDict(backbone, false);
  const notHead = missing.filter((k) => !k.startsWith("fc."));
  if (notHead.length) {
    net.dispose();
    throw new Error(`${modelPath} lacks backbone keys: ${notHead.join(", ")}`);
  }
  for (const [name, p] of net.namedParameters()) p.requiresGrad = name.startsWith("fc.");
  net.eval();
  return net;
}

/** `−Σ p·log softmax(q)` averaged over the batch (CrossEntropyLossSoft). */
export function softCrossEntropy(logits: Tensor, target: Tensor): Tensor {
  return scope(() => logits.logSoftmax(1).mul(target).sum(1).mean().neg());
}

/**
 * Each width's loss term (widest first): CE at the full width; per sub-width CE, soft CE to the
 * full width's predictions (in-place distillation), or their mean (`mixed`, spec §3.5). Call it
 * inside a scope: the terms and their intermediates belong to the caller's.
 */
export function classificationTerms(
  logits: Tensor[],
  labels: Tensor,
  o: Pick<ProbeOptions, "inplaceDistill" | "mixed">,
): Tensor[] {
  const teacher = logits[0].detach().softmax(1);
  return logits.map((l, i) => {
    if (i === 0 || !o.inplaceDistill) return F.crossEntropy(l, labels);
    if (o.mixed) return softCrossEntropy(l, teacher).add(F.crossEntropy(l, labels)).mul(0.5);
    return softCrossEntropy(l, teacher);
  });
}

/** The sum (or mean, `reduce`) of `classificationTerms` over all widths. */
export function slimmableClassificationLoss(
  logits: Tensor[],
  labels: Tensor,
  o: Pick<ProbeOptions, "inplaceDistill" | "mixed" | "reduce">,
): Tensor {
  return scope(() => {
    const total = classificationTerms(logits, labels, o).reduce((a, b) => a.add(b));
    return o.reduce === "mean" ? total.div(logits.length) : total;
  });
}

/** Copies of every non-head state entry, to prove the probe left the backbone alone. */
export function backboneSnapshot(net: SlimmableResNet): Map<string, Tensor> {
  return new Map(
    [...net.stateDict()].filter(([k]) => !k.startsWith("fc.")).map((
      [k, t],
    ) => [k, t.clone().keep()]),
  );
}

/** Names of backbone entries that differ from `snapshot` (must be empty after a probe). */
export function changedBackbone(net: SlimmableResNet, snapshot: Map<string, Tensor>): string[] {
  const now = net.stateDict();
  return [...snapshot].filter(([k, t]) => !now.get(k)!.equal(t)).map(([k]) => k);
}

/**
 * Top-1 (0–1) per width of a classifier (a probe or a supervised network) on labelled, normalised
 * images, in eval mode (the network's mode is restored afterwards); batches go to the network's
 * device.
 */
export function top1PerWidth(
  net: SlimmableResNet,
  test: LabeledSplit,
  batch = 512,
): Map<number, number> {
  const out = new Map<number, number>();
  const device = deviceOf(net);
  const wasTraining = net.training;
  net.eval();
  try {
    for (const w of net.widths) {
      out.set(
        w,
        net.withWidth(w, () =>
          noGrad(() => {
            let correct = 0;
            for (let i = 0; i < test.images.shape[0]; i += batch) {
              const n = Math.min(batch, test.images.shape[0] - i);
              // One scope per batch: a batch's device copies go before the next one comes.
              correct += scope(() => {
                const x = onDevice(test.images.narrow(0, i, n), device);
                const y = onDevice(test.labels.narrow(0, i, n), device);
                return net.forward(x).argmax(1).eq(y).sum().item();
              });
            }
            return correct / test.images.shape[0];
          })),
      );
    }
  } finally {
    net.train(wasTraining);
  }
  return out;
}

/** The data a probe trains on: cached backbone features' source split, or a loader. */
export type ProbeData = { cached: LabeledSplit } | { loader: Loader; dataset: Dataset };

/** One optimizer step of the heads, as `ProbeTrainer.steps` reports it. */
export interface ProbeStep {
  /** Steps done so far (1 after the first). */
  step: number;
  /** The epoch this step belongs to (0-based). */
  epoch: number;
  loss: number;
  /** The learning rate of this step. */
  lr: number;
}

/**
 * The heads' training loop, one optimizer step at a time, so that a runner can checkpoint and stop
 * between steps. With `cached` the backbone features are computed once per width (no augmentation:
 * fast on a CPU) and kept on the network's device; otherwise batches come from `loader` (the
 * `linear` recipe; give it the network's device) and the frozen backbone runs every step. Labels
 * follow the logits to their device.
 *
 * The batch order is a function of the seed and the epoch alone (cached: a permutation seeded by
 * seed and epoch; loader: its per-epoch shuffle and augmentation seeds), so the step count, the
 * heads and the optimizer state are all a run needs to continue exactly.
 */
export class ProbeTrainer implements Disposable {
  /** SGD over the heads' parameters (its state goes into checkpoints). */
  readonly optimizer: SGD;
  /** Optimizer steps per epoch. */
  readonly stepsPerEpoch: number;
  /** Optimizer steps of the whole schedule. */
  readonly totalSteps: number;
  readonly #feats: Tensor[] = [];
  readonly #snapshot: Map<string, Tensor>;
  /** Where the network (and the cached features) live; the heads never move during training. */
  readonly #device: Device;

  constructor(
    readonly net: SlimmableResNet,
    readonly options: ProbeOptions,
    readonly data: ProbeData,
    /** Called after each backward pass (data parallelism averages the heads' gradients here). */
    readonly afterBackward?: () => void,
  ) {
    const o = options;
    this.stepsPerEpoch = "cached" in data
      ? Math.floor(data.cached.images.shape[0] / o.batchSize)
      : data.loader.batchesPerEpoch;
    if (this.stepsPerEpoch < 1) {
      throw new RangeError(
        `an epoch of the probe has no complete batch of ${o.batchSize}; lower 'data.batch_size'`,
      );
    }
    this.totalSteps = Math.max(1, Math.ceil(o.epochs * this.stepsPerEpoch));
    const heads = net.parameters().filter((p) => p.requiresGrad);
    this.optimizer = new SGD(heads, {
      lr: o.lr,
      momentum: o.momentum,
      weight_decay: o.weightDecay,
    });
    this.#snapshot = backboneSnapshot(net);
    this.#device = deviceOf(net);
    try {
      if ("cached" in data) {
        for (const w of net.widths) {
          this.#feats.push(
            scope(() => net.withWidth(w, () => extractFeatures(net, data.cached.images))).keep(),
          );
        }
      }
    } catch (e) {
      this[Symbol.dispose]();
      throw e;
    }
  }

  /**
   * Runs the schedule from step `from` (0: the start) to its end, yielding after each optimizer
   * step. Leaving the loop early stops cleanly (a loader's batches in flight are freed).
   */
  *steps(from = 0): IterableIterator<ProbeStep> {
    const spe = this.stepsPerEpoch;
    const total = this.totalSteps;
    let step = from;
    for (let epoch = Math.floor(from / spe); step < total; epoch++) {
      const skip = step - epoch * spe;
      if ("cached" in this.data) {
        using g = new Generator(this.options.seed * 7919 + epoch);
        using order = randperm(this.data.cached.images.shape[0], { generator: g });
        for (let b = skip; b < spe && step < total; b++) {
          const lr = this.lrAt(step);
          const loss = this.#cachedStep(order, b, step);
          yield { step: ++step, epoch, loss, lr };
        }
      } else {
        for (const batch of this.data.loader.epoch(epoch, { skip })) {
          const lr = this.lrAt(step);
          let loss: number;
          try {
            loss = this.#loaderStep(batch.views[0], batch.labels, step);
          } finally {
            batch.dispose();
          }
          yield { step: ++step, epoch, loss, lr };
          if (step >= total) break;
        }
      }
    }
  }

  /** The learning rate of the optimizer step after `step` steps. */
  lrAt(step: number): number {
    return schedule(this.options, step, this.totalSteps, this.stepsPerEpoch);
  }

  /** Throws if anything outside the heads changed since construction. */
  assertBackboneUnchanged(): void {
    const changed = changedBackbone(this.net, this.#snapshot);
    if (changed.length) {
      throw new Error(`the probe changed the frozen backbone: ${changed.slice(0, 5).join(", ")}`);
    }
  }

  /** Frees the optimizer, the cached features and the backbone snapshot. */
  [Symbol.dispose](): void {
    this.optimizer.dispose();
    for (const f of this.#feats) f.dispose();
    this.#feats.length = 0;
    for (const t of this.#snapshot.values()) t.dispose();
    this.#snapshot.clear();
  }

  #cachedStep(order: Tensor, b: number, step: number): number {
    const { net, options: o } = this;
    const data = this.data as { cached: LabeledSplit };
    return scope(() => {
      const device = this.#device;
      const idx = order.narrow(0, b * o.batchSize, o.batchSize);
      const rows = onDevice(idx, device);
      const head = net.fc!;
      const logits = net.widths.map((w, i) =>
        net.withWidth(w, () => head.forward(this.#feats[i].indexSelect(0, rows)))
      );
      return this.#update(step, logits, onDevice(data.cached.labels.indexSelect(0, idx), device));
    });
  }

  #loaderStep(x: Tensor, y: Tensor, step: number): number {
    const net = this.net;
    return scope(() => {
      const logits = net.widths.map((w) => net.withWidth(w, () => net.forward(x)));
      return this.#update(step, logits, onDevice(y, this.#device));
    });
  }

  /** One optimizer step of the heads on the widths' logits at `step`; returns the loss. */
  #update(step: number, logits: Tensor[], labels: Tensor): number {
    const opt = this.optimizer;
    opt.setLr(this.lrAt(step));
    const loss = slimmableClassificationLoss(logits, labels, this.options);
    opt.zeroGrad();
    loss.backward();
    this.afterBackward?.();
    opt.step();
    return loss.item();
  }
}

/**
 * Adds step `s`'s loss to `log`; at the epoch's end (or the schedule's) returns the epoch's row
 * (mean loss, seconds, images per second) and starts the next epoch, otherwise returns null.
 */
export function addEpochLoss(
  log: EpochLog,
  s: ProbeStep,
  t: Pick<ProbeTrainer, "stepsPerEpoch" | "totalSteps" | "options">,
): Record<string, number | string> | null {
  log.add({ loss: s.loss }, t.options.batchSize);
  if (s.step % t.stepsPerEpoch !== 0 && s.step !== t.totalSteps) return null;
  return log.take(s.step / t.stepsPerEpoch, s.step);
}

/**
 * Trains the heads for the whole schedule at once (see `ProbeTrainer`; `runProbe` adds
 * checkpoints, resume and stop signals). Returns the mean loss of the last epoch.
 */
export function trainProbe(
  net: SlimmableResNet,
  o: ProbeOptions,
  data: ProbeData,
  onEpoch?: (epoch: number, loss: number) => void,
  /** Called after each backward pass (data parallelism averages the heads' gradients here). */
  afterBackward?: () => void,
): number {
  using trainer = new ProbeTrainer(net, o, data, afterBackward);
  const log = new EpochLog();
  let last = NaN;
  for (const s of trainer.steps()) {
    const row = addEpochLoss(log, s, trainer);
    if (row === null) continue;
    last = row.loss as number;
    onEpoch?.(s.epoch, last);
  }
  trainer.assertBackboneUnchanged();
  return last;
}

function schedule(o: ProbeOptions, step: number, total: number, stepsPerEpoch: number): number {
  return learningRate({
    lr: o.lr,
    totalSteps: total,
    kind: o.decay,
    milestones: o.milestones,
    stepsPerEpoch,
  }, step);
}
