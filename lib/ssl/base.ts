/**
 * The shared base of the SSL methods: one training step over all widths with SlimCLR's slow
 * start, online distillation and loss re-weighting, plain-number metrics, and optional gradient
 * diagnostics. A method supplies its momentum update and, per loss direction, the outputs of
 * each width (`WidthOutput`); everything else lives here.
 */
import { enableGrad } from "../autograd.ts";
import * as F from "../functional.ts";
import {
  DEFAULT_WIDTHS,
  type SlimmableResNet,
  type SlimmableResNetOptions,
} from "../models/slimmable_resnet.ts";
import { Module } from "../nn/module.ts";
import { WidthState } from "../nn/slimmable.ts";
import type { ParamGroup } from "../optim.ts";
import type { Generator } from "../random.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { type Communicator, LocalCommunicator } from "./distributed.ts";
import {
  type DiagnosedLayer,
  diagnosedLayers,
  type GradDiagnostics,
  gradientDiagnostics,
  gradientMagnitudes,
} from "./grad_diagnostics.ts";
import { readMetrics, type StepMetrics, sum } from "./metrics.ts";
import { composeSlimLoss, type DistillOptions, type WidthOutput } from "./slim_loss.ts";
import { slimEnabled, slowStartBaseLr, type SlowStartOptions } from "./slow_start.ts";
import { lossWeights, type LossWeightScheme } from "./weights.ts";

/** Encoder options a method passes to `SlimmableResNet` (it sets widths, head and dims). */
export type EncoderOptions = Omit<
  SlimmableResNetOptions,
  "widths" | "head" | "numClasses" | "mlpDim"
>;

/** Where a step is in training. */
export interface StepContext {
  /** Fractional epoch: `epoch + step_in_epoch / steps_per_epoch` (drives slow start, momentum). */
  epoch: number;
  /** Global step (drives the diagnostics interval). */
  step: number;
}

/** Options shared by every method. */
export interface SlimSSLOptions {
  /**
   * The backbone (arch, stem, input channels, base width, overlap). `zeroInitResidual` defaults
   * to true: the reference's slimmable ResNet always zeroes the last BN γ of each block.
   */
  encoder: EncoderOptions;
  /** Widths, strictly descending (default 1, 0.75, 0.5, 0.25; `[1]` trains the plain method). */
  widths?: readonly number[];
  slowStart?: SlowStartOptions;
  distill?: DistillOptions;
  /**
   * Loss re-weighting: a scheme 0–7 of spec §3.3 (default 0: all ones; the paper uses 5), or
   * explicit λ per width, widest first.
   */
  lossWeighting?: LossWeightScheme | readonly number[];
  /** Compute gradient diagnostics every `every` steps (0 or absent: never). */
  gradDiagnostics?: { every: number };
  /** Collectives for data-parallel training (default: single process). */
  communicator?: Communicator;
  /** Random source of the method's own sampling (queue init, batch shuffles). */
  generator?: Generator;
}

/** What `trainingStep` returns. */
export interface StepResult {
  /** The scalar to back-propagate; it joins the caller's scope. */
  loss: Tensor;
  metrics: StepMetrics;
}

/** Optimizer hyperparameters the parameter groups set. */
export interface DecayOptions {
  weight_decay: number;
}

/** Base class of the SlimCLR methods (MoCo v2, MoCo v3, SimCLR). */
export abstract class SlimSSLMethod extends Module {
  /** Widths, descending. */
  readonly widths: readonly number[];
  /** λ per width (after the slow start). */
  readonly weights: readonly number[];
  readonly slowStart: SlowStartOptions;
  readonly distill: DistillOptions;
  readonly comm: Communicator;
  readonly generator: Generator | undefined;
  /** Diagnostics interval in steps (0: off). */
  readonly diagnosticsEvery: number;
  #layers: DiagnosedLayer[] | null = null;

  protected constructor(o: SlimSSLOptions) {
    super();
    this.widths = new WidthState(o.widths ?? DEFAULT_WIDTHS).widths;
    this.weights = explicitOrScheme(this.widths, o.lossWeighting ?? 0);
    this.slowStart = { ...o.slowStart };
    this.distill = this.widths.length > 1 ? { ...o.distill } : { kind: "none" };
    this.comm = o.communicator ?? new LocalCommunicator();
    this.generator = o.generator;
    this.diagnosticsEvery = o.gradDiagnostics?.every ?? 0;
  }

  /** The encoder being trained (MoCo's query / base encoder, SimCLR's encoder). */
  abstract get encoder(): SlimmableResNet;

  /** Throws if a batch of `viewA`'s shape cannot be trained on; runs before any state changes. */
  protected checkBatch(_viewA: Tensor): void {}

  /** Updates the momentum encoder for this step, before any key is computed; returns m. */
  protected abstract updateMomentum(ctx: StepContext): number | null;

  /** For each loss direction, the outputs of each of `widths` (widest first). */
  protected abstract widthOutputs(
    viewA: Tensor,
    viewB: Tensor,
    widths: readonly number[],
    ctx: StepContext,
  ): WidthOutput[][];

  /** Trained modules whose weights the gradient diagnostics cover, with name prefixes. */
  protected diagnosedModules(): [string, Module][] {
    return [["encoder", this.encoder]];
  }

  /** The weight layers the diagnostics cover, with each width's slice. */
  get diagnosedLayers(): DiagnosedLayer[] {
    return this.#layers ??= diagnosedLayers(this.diagnosedModules(), this.widths.length);
  }

  /**
   * One training step on two views of a batch: momentum update, forwards of every active width,
   * the composed SlimCLR loss, and metrics. The caller back-propagates `loss` and steps the
   * optimizer; every other tensor of the step is freed here.
   */
  trainingStep(viewA: Tensor, viewB: Tensor, ctx: StepContext): StepResult {
    checkViews(viewA, viewB);
    this.checkBatch(viewA);
    const slim = slimEnabled(ctx.epoch, this.slowStart);
    const widths = slim ? this.widths : this.widths.slice(0, 1);
    const weights = slim ? this.weights : [1];
    return enableGrad(() =>
      scope(() => {
        const momentum = this.updateMomentum(ctx);
        const dirs = this.widthOutputs(viewA, viewB, widths, ctx);
        const losses = dirs.map((outs) => composeSlimLoss(outs, weights, this.distill, slim));
        const terms = widths.map((_, i) => sum(losses.map((l) => l.terms[i])));
        const total = sum(terms);
        const metrics = readMetrics(widths, weights, dirs, losses, terms, total);
        metrics.slimEnabled = slim;
        metrics.momentum = momentum;
        if (this.diagnosticsDue(ctx.step)) {
          metrics.grad = gradientDiagnostics(terms, this.diagnosedLayers, widths);
        }
        return { loss: total, metrics };
      })
    );
  }

  /** Moves or casts every tensor; the diagnosed layers are looked up afresh afterwards. */
  override to(target: Parameters<Module["to"]>[0]): this {
    this.#layers = null;
    return super.to(target);
  }

  /** Whether the gradient diagnostics run at `step`. */
  diagnosticsDue(step: number): boolean {
    return this.diagnosticsEvery > 0 && step % this.diagnosticsEvery === 0;
  }

  /**
   * Magnitude imbalance of the accumulated gradients (`.grad`, after `backward()` and before the
   * optimizer clears them), as the reference logs it after `optimizer.step()`.
   */
  gradientMagnitudes(): Pick<GradDiagnostics, "widths" | "magnitude" | "meanLayerMagnitude"> {
    return gradientMagnitudes(this.diagnosedLayers, this.widths);
  }

  /** Normalised embedding of the trained encoder at its active width. */
  forward(x: Tensor): Tensor {
    return scope(() => F.normalize(this.encoder.forward(x), 2, 1));
  }

  /** The parameters the optimizer updates (momentum encoders are frozen). */
  trainableParameters(): Tensor[] {
    return this.parameters().filter((p) => p.requiresGrad);
  }

  /**
   * Two parameter groups: weights with `weightDecay`, and 1-D tensors (biases, batch-norm γ/β)
   * with none when `noDecayBiasAndNorm` (default true). The reference means to exempt biases and
   * norms but ends up decaying everything under SGD (spec §7 D6): pass false to reproduce it.
   */
  parameterGroups<H extends DecayOptions>(
    weightDecay: number,
    noDecayBiasAndNorm = true,
  ): ParamGroup<H>[] {
    const params = this.trainableParameters();
    if (!noDecayBiasAndNorm) {
      return [{ params, options: { weight_decay: weightDecay } as Partial<H> }];
    }
    return [
      { params: params.filter((p) => p.ndim > 1), options: { weight_decay: weightDecay } },
      { params: params.filter((p) => p.ndim <= 1), options: { weight_decay: 0 } },
    ] as ParamGroup<H>[];
  }

  /**
   * Called by the trainer after each optimizer step. The three methods need nothing here: their
   * momentum updates run at the start of `trainingStep`, before the keys, as in the reference.
   */
  afterOptimizerStep(_ctx?: StepContext): void {}

  /** The base learning rate at `epoch` under the slow start's optional LR reset (spec §7 D1). */
  baseLr(baseLr: number, epoch: number): number {
    return slowStartBaseLr(baseLr, epoch, this.slowStart);
  }
}

function explicitOrScheme(
  widths: readonly number[],
  w: LossWeightScheme | readonly number[],
): number[] {
  if (typeof w === "number") return lossWeights(widths, w);
  if (w.length !== widths.length || w.some((x) => !(x >= 0)) || !(w[0] > 0)) {
    throw new RangeError(
      `loss weights [${w.join(", ")}] need one non-negative λ per width [${
        widths.join(", ")
      }], the widest positive`,
    );
  }
  return [...w];
}

function checkViews(a: Tensor, b: Tensor): void {
  const sa = a.shape;
  const sb = b.shape;
  if (sa.length !== 4 || sa.join() !== sb.join()) {
    throw new RangeError(
      `trainingStep expects two views of the same [N, C, H, W] shape, got [${sa}] and [${sb}]`,
    );
  }
}
