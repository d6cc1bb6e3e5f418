/**
 * Slimmable ops (spec §2.2): one set of weights run at several widths. Convolutions and linears
 * hold the largest weight and use a slice of it at the active width; switchable batch norms and
 * linears keep a private module per width. The active width is state shared by every layer of a
 * network (`WidthState`), set with `net.setWidth(w)` or scoped with `net.withWidth(w, fn)`.
 */
import * as F from "../functional.ts";
import { empty, type Tensor } from "../tensor.ts";
import { BatchNorm, type BatchNormOptions, defaultInit, Linear } from "./layers.ts";
import { Module } from "./module.ts";

/** Channels at width `w` of a layer with `c` channels at width 1, as the reference's `int(c*w)`. */
export function channelsAt(c: number, w: number): number {
  return Math.trunc(c * w);
}

/** The active width of a network and the widths it supports (descending). */
export class WidthState {
  readonly widths: readonly number[];
  #index = 0;
  constructor(widths: readonly number[]) {
    if (!widths.length) throw new RangeError("a slimmable network needs at least one width");
    for (let i = 0; i < widths.length; i++) {
      const w = widths[i];
      if (!(w > 0 && w <= 1)) throw new RangeError(`width ${w} is not in (0, 1]`);
      if (i && !(w < widths[i - 1])) {
        throw new RangeError(`widths must be strictly descending, got [${widths}]`);
      }
    }
    this.widths = [...widths];
  }
  /** The active width. */
  get width(): number {
    return this.widths[this.#index];
  }
  /** Position of the active width in the descending list (0 is the widest). */
  get index(): number {
    return this.#index;
  }
  /** Activates `w`; an unknown width is an error naming the allowed ones. */
  set(w: number): void {
    const i = this.indexOf(w);
    this.#index = i;
  }
  /** Position of `w`, or an error naming the allowed widths. */
  indexOf(w: number): number {
    const i = this.widths.indexOf(w);
    if (i < 0) {
      throw new RangeError(`unknown width ${w}; this network supports [${this.widths.join(", ")}]`);
    }
    return i;
  }
}

/** Channel ranges per width: overlapping leading slices, or the reference's disjoint bands. */
export function channelRanges(channels: readonly number[], overlap: boolean): [number, number][] {
  if (overlap) return channels.map((c) => [0, c]);
  // Non-overlapping (spec §2.2): ascending widths take consecutive bands, the largest takes all.
  const max = channels[0];
  const ranges: [number, number][] = new Array(channels.length);
  let start = 0;
  for (let i = channels.length - 1; i >= 1; i--) {
    if (channels[i] === max) {
      ranges[i] = [0, max];
      continue;
    }
    ranges[i] = [start, start + channels[i]];
    start += channels[i];
  }
  ranges[0] = [0, max];
  for (const [, b] of ranges) {
    if (b > max) {
      throw new RangeError(
        `non-overlapping channels [${channels}] need ${b} channels but the widest layer has ${max}; ` +
          `the widths must sum to at most twice the largest`,
      );
    }
  }
  return ranges;
}

/** Common per-width bookkeeping of sliced layers. */
abstract class Sliced extends Module {
  readonly inRanges: [number, number][];
  readonly outRanges: [number, number][];
  constructor(
    readonly state: WidthState,
    readonly inChannels: readonly number[],
    readonly outChannels: readonly number[],
    overlap: boolean,
  ) {
    super();
    if (inChannels.length !== state.widths.length || outChannels.length !== state.widths.length) {
      throw new RangeError(
        `channel lists [${inChannels}] -> [${outChannels}] must have one entry per width [${state.widths}]`,
      );
    }
    this.inRanges = channelRanges(inChannels, overlap);
    this.outRanges = channelRanges(outChannels, overlap);
  }
  /** The full (widest) weight. */
  get weight(): Tensor {
    return this.get_("weight")!;
  }
  /** The full bias, if any. */
  get bias(): Tensor | null {
    return this.get_("bias");
  }

  /** Runs `fn` with the active width's views of the weight and bias, then frees the views. */
  protected withSlice<T>(fn: (w: Tensor, b: Tensor | null) => T): T {
    const [w, b, temp] = this.sliced(this.weight, this.bias);
    try {
      return fn(w, b);
    } finally {
      if (temp) {
        w.dispose();
        b?.dispose();
      }
    }
  }

  /** Views of the weight (and bias) for the active width; null slices mean "use as is". */
  protected sliced(weight: Tensor, bias: Tensor | null): [Tensor, Tensor | null, boolean] {
    const i = this.state.index;
    const [i0, i1] = this.inRanges[i];
    const [o0, o1] = this.outRanges[i];
    if (i0 === 0 && o0 === 0 && i1 === weight.shape[1] && o1 === weight.shape[0]) {
      return [weight, bias, false];
    }
    const w = F.weightSlice(weight, o0, o1 - o0, i0, i1 - i0);
    const b = bias ? F.weightSlice(bias, o0, o1 - o0) : null;
    return [w, b, true];
  }
}

/** Options of `SlimmableConv2d`. */
export interface SlimmableConv2dOptions {
  stride?: number;
  padding?: number;
  dilation?: number;
  bias?: boolean;
  /** Overlapping leading slices (default) or the disjoint bands of spec §2.2. */
  overlap?: boolean;
}

/** A convolution whose weight [maxOut, maxIn, k, k] is sliced to the active width. */
export class SlimmableConv2d extends Sliced {
  readonly stride: number;
  readonly padding: number;
  readonly dilation: number;
  constructor(
    state: WidthState,
    inChannels: readonly number[],
    outChannels: readonly number[],
    readonly kernelSize: number,
    o: SlimmableConv2dOptions = {},
  ) {
    super(state, inChannels, outChannels, o.overlap ?? true);
    this.stride = o.stride ?? 1;
    this.padding = o.padding ?? 0;
    this.dilation = o.dilation ?? 1;
    const maxIn = Math.max(...this.inRanges.map((r) => r[1]));
    const maxOut = Math.max(...this.outRanges.map((r) => r[1]));
    const w = this.param("weight", empty([maxOut, maxIn, kernelSize, kernelSize]));
    const b = this.param("bias", o.bias ? empty([maxOut]) : null);
    defaultInit(w, b, maxIn * kernelSize * kernelSize);
  }
  forward(x: Tensor): Tensor {
    return this.withSlice((w, b) =>
      F.conv2d(x, w, b, { stride: this.stride, padding: this.padding, dilation: this.dilation })
    );
  }
}

/** A linear layer whose weight [maxOut, maxIn] is sliced to the active width. */
export class SlimmableLinear extends Sliced {
  constructor(
    state: WidthState,
    inFeatures: readonly number[],
    outFeatures: readonly number[],
    bias = true,
    overlap = true,
  ) {
    super(state, inFeatures, outFeatures, overlap);
    const maxIn = Math.max(...this.inRanges.map((r) => r[1]));
    const maxOut = Math.max(...this.outRanges.map((r) => r[1]));
    const w = this.param("weight", empty([maxOut, maxIn]));
    const b = this.param("bias", bias ? empty([maxOut]) : null);
    defaultInit(w, b, maxIn);
  }
  forward(x: Tensor): Tensor {
    return this.withSlice((w, b) => F.linear(x, w, b));
  }
}

/** A private BatchNorm per width, named `bn.{i}` with i the position in the descending widths. */
export class SwitchableBatchNorm extends Module {
  readonly bn: BatchNorm[];
  constructor(
    readonly state: WidthState,
    readonly numFeatures: readonly number[],
    o: BatchNormOptions = {},
  ) {
    super();
    if (numFeatures.length !== state.widths.length) {
      throw new RangeError(
        `SwitchableBatchNorm needs one channel count per width [${state.widths}]`,
      );
    }
    const list = this.child("bn", new ModuleList(numFeatures.map((c) => new BatchNorm(c, o))));
    this.bn = list.items as BatchNorm[];
  }
  /** The BatchNorm of the active width. */
  get active(): BatchNorm {
    return this.bn[this.state.index];
  }
  forward(x: Tensor): Tensor {
    return this.active.forward(x);
  }
}

/** SwitchableBatchNorm over (N,C) or (N,C,L). */
export class SwitchableBatchNorm1d extends SwitchableBatchNorm {}
/** SwitchableBatchNorm over (N,C,H,W). */
export class SwitchableBatchNorm2d extends SwitchableBatchNorm {}

/** A private Linear per width, named `linears.{i}`. */
export class SwitchableLinear extends Module {
  readonly linears: Linear[];
  constructor(
    readonly state: WidthState,
    inFeatures: readonly number[],
    outFeatures: readonly number[],
    bias = true,
  ) {
    super();
    const list = this.child(
      "linears",
      new ModuleList(inFeatures.map((c, i) => new Linear(c, outFeatures[i], bias))),
    );
    this.linears = list.items as Linear[];
  }
  forward(x: Tensor): Tensor {
    return this.linears[this.state.index].forward(x);
  }
}

/** A list of modules named "0", "1", ... (it has no forward of its own). */
export class ModuleList extends Module {
  readonly items: Module[];
  constructor(items: Module[]) {
    super();
    this.items = items.map((m, i) => this.child(String(i), m));
  }
  forward(): Tensor {
    throw new Error("ModuleList has no forward; call its items");
  }
}
