/** Standard layers with PyTorch's parameter names, shapes and default initialisation. */
import * as F from "../functional.ts";
import { noGrad } from "../autograd.ts";
import { empty, ones, type Tensor, zeros } from "../tensor.ts";
import { Module } from "./module.ts";

/** Default initialisation of a weight with `fanIn` inputs (kaiming_uniform_ with a=√5). */
export function defaultInit(weight: Tensor, bias: Tensor | null, fanIn: number): void {
  const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
  noGrad(() => {
    weight.uniform_(-bound, bound);
    bias?.uniform_(-bound, bound);
  });
}

type Pair = number | [number, number];

/** Options of `Conv2d`. */
export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  bias?: boolean;
}

/** 2-D convolution: `weight` [out, in/groups, k, k], optional `bias` [out]. */
export class Conv2d extends Module {
  readonly options: Required<Omit<Conv2dOptions, "bias">>;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: Pair,
    o: Conv2dOptions = {},
  ) {
    super();
    const [kh, kw] = typeof kernelSize === "number" ? [kernelSize, kernelSize] : kernelSize;
    const groups = o.groups ?? 1;
    if (inChannels % groups || outChannels % groups) {
      throw new RangeError(
        `Conv2d: channels ${inChannels}->${outChannels} not divisible by groups ${groups}`,
      );
    }
    this.options = {
      stride: o.stride ?? 1,
      padding: o.padding ?? 0,
      dilation: o.dilation ?? 1,
      groups,
    };
    const w = this.param("weight", empty([outChannels, inChannels / groups, kh, kw]));
    const b = this.param("bias", o.bias === false ? null : empty([outChannels]));
    defaultInit(w, b, (inChannels / groups) * kh * kw);
  }
  get weight(): Tensor {
    return this.get_("weight")!;
  }
  get bias(): Tensor | null {
    return this.get_("bias");
  }
  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, this.bias, this.options);
  }
}

/** Fully connected layer: `weight` [out, in], optional `bias` [out]. */
export class Linear extends Module {
  constructor(readonly inFeatures: number, readonly outFeatures: number, bias = true) {
    super();
    const w = this.param("weight", empty([outFeatures, inFeatures]));
    const b = this.param("bias", bias ? empty([outFeatures]) : null);
    defaultInit(w, b, inFeatures);
  }
  get weight(): Tensor {
    return this.get_("weight")!;
  }
  get bias(): Tensor | null {
    return this.get_("bias");
  }
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

/** Options of batch normalisation. */
export interface BatchNormOptions {
  eps?: number;
  /** Running-statistics update factor (default 0.1); `null`: cumulative average, as PyTorch's None. */
  momentum?: number | null;
  affine?: boolean;
  trackRunningStats?: boolean;
}

/**
 * Batch normalisation over channel dimension 1 (BatchNorm1d for (N,C) or (N,C,L), BatchNorm2d for
 * (N,C,H,W)): `weight`, `bias`, `running_mean`, `running_var`, `num_batches_tracked`.
 */
export class BatchNorm extends Module {
  readonly eps: number;
  /**
   * Factor of the running-statistics update in training mode; `null` averages every batch since
   * `num_batches_tracked` was last zero equally (PyTorch's `momentum=None`). Mutable, as in
   * PyTorch, so that statistics can be recalibrated after training.
   */
  momentum: number | null;
  constructor(readonly numFeatures: number, o: BatchNormOptions = {}) {
    super();
    this.eps = o.eps ?? 1e-5;
    this.momentum = o.momentum === undefined ? 0.1 : o.momentum;
    const affine = o.affine ?? true;
    this.param("weight", affine ? ones([numFeatures]) : null);
    this.param("bias", affine ? zeros([numFeatures]) : null);
    const track = o.trackRunningStats ?? true;
    this.buffer("running_mean", track ? zeros([numFeatures]) : null);
    this.buffer("running_var", track ? ones([numFeatures]) : null);
    this.buffer("num_batches_tracked", track ? zeros([], { dtype: "int64" }) : null);
  }
  get weight(): Tensor | null {
    return this.get_("weight");
  }
  get bias(): Tensor | null {
    return this.get_("bias");
  }
  get runningMean(): Tensor | null {
    return this.get_("running_mean");
  }
  get runningVar(): Tensor | null {
    return this.get_("running_var");
  }
  get numBatchesTracked(): Tensor | null {
    return this.get_("num_batches_tracked");
  }
  /**
   * In training mode with running statistics, counts the batch in `num_batches_tracked`. Returns
   * the factor of this batch in the running-statistics update.
   */
  protected trackBatch(): number {
    if (!this.training || !this.runningMean) return this.momentum ?? 0;
    const tracked = this.numBatchesTracked!.add_(1);
    return this.momentum ?? 1 / tracked.item();
  }
  forward(x: Tensor): Tensor {
    const rm = this.runningMean;
    const useBatchStats = this.training || rm === null;
    const momentum = this.trackBatch();
    return F.batchNorm(x, {
      weight: this.weight,
      bias: this.bias,
      runningMean: rm,
      runningVar: this.runningVar,
      training: useBatchStats,
      momentum,
      eps: this.eps,
    });
  }
}

/** BatchNorm over (N,C) or (N,C,L). */
export class BatchNorm1d extends BatchNorm {}
/** BatchNorm over (N,C,H,W). */
export class BatchNorm2d extends BatchNorm {}

/** Rectified linear unit. */
export class ReLU extends Module {
  constructor(readonly inplace = false) {
    super();
  }
  forward(x: Tensor): Tensor {
    return x.relu();
  }
}

/** 2-D max pooling. */
export class MaxPool2d extends Module {
  constructor(
    readonly kernelSize: Pair,
    readonly stride: Pair = kernelSize,
    readonly padding: Pair = 0,
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.maxPool2d(x, this.kernelSize, { stride: this.stride, padding: this.padding });
  }
}

/** Adaptive average pooling to a fixed output size. */
export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: Pair = 1) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.adaptiveAvgPool2d(x, this.outputSize);
  }
}

/** Flattens dimensions `start..end`. */
export class Flatten extends Module {
  constructor(readonly start = 1, readonly end = -1) {
    super();
  }
  forward(x: Tensor): Tensor {
    return x.flatten(this.start, this.end);
  }
}

/** Passes its input through (returns a new handle to the same tensor). */
export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return x.view(...x.shape);
  }
}

/** Applies children in order; children are named "0", "1", ... as in PyTorch. */
export class Sequential extends Module {
  readonly layers: Module[];
  constructor(...layers: Module[]) {
    super();
    this.layers = layers.map((m, i) => this.child(String(i), m));
  }
  forward(x: Tensor): Tensor {
    let h = x;
    for (const m of this.layers) {
      const next = m.forward(h);
      if (h !== x) h.dispose();
      h = next;
    }
    return h === x ? x.view(...x.shape) : h;
  }
}
