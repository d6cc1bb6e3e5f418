/**
 * Slimmable ResNets (spec §2.1) with the paper's heads (§2.1, §2.6), and the export of one width
 * as a dense, standalone torchvision-style ResNet.
 */
import { noGrad } from "../autograd.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { BatchNorm, Linear, ReLU, Sequential } from "../nn/layers.ts";
import type { Module } from "../nn/module.ts";
import {
  channelsAt,
  SlimmableConv2d,
  SlimmableLinear,
  SwitchableBatchNorm,
  SwitchableBatchNorm1d,
  SwitchableLinear,
  WidthState,
} from "../nn/slimmable.ts";
import {
  channelPlan,
  type Channels,
  planAtWidth,
  ResNet,
  type ResNetOptions,
  ResNetTrunk,
  slimmableLayers,
} from "./resnet.ts";

/** Heads of spec §2.1: classifiers and the SSL projectors. */
export type HeadKind =
  | "none"
  | "supervised"
  | "supervised_switch"
  | "mocov2_slim"
  | "mocov2_switch"
  | "mocov3_slim"
  | "simclr_slim";

/** Options of a slimmable ResNet. */
export interface SlimmableResNetOptions extends ResNetOptions {
  /** Widths, strictly descending (default 1, 0.75, 0.5, 0.25). */
  widths?: readonly number[];
  head?: HeadKind;
  /** Overlapping leading slices (default) or disjoint channel bands. */
  overlap?: boolean;
  /**
   * Hidden width of the projector at width 1: MoCo v3 (default 4096), SimCLR (2048), MoCo v2
   * (default: the feature width, as the paper).
   */
  mlpDim?: number;
}

/** The default widths of the paper. */
export const DEFAULT_WIDTHS = [1, 0.75, 0.5, 0.25] as const;

function buildHead(
  kind: HeadKind,
  state: WidthState,
  feat: Channels,
  classes: number,
  overlap: boolean,
  mlpDim: number | undefined,
): Module | null {
  const n = state.widths.length;
  const C = Array(n).fill(classes);
  const hidden = (d: number) => state.widths.map((w) => channelsAt(d, w));
  switch (kind) {
    case "none":
      return null;
    case "supervised":
      return new SlimmableLinear(state, feat, C, true, overlap);
    case "supervised_switch":
      return new SwitchableLinear(state, feat, C);
    case "mocov2_slim": {
      const h = mlpDim ? hidden(mlpDim) : feat;
      return new Sequential(
        new SlimmableLinear(state, feat, h, true, overlap),
        new ReLU(),
        new SlimmableLinear(state, h, C, true, overlap),
      );
    }
    case "mocov2_switch": {
      const h = mlpDim ? hidden(mlpDim) : feat;
      return new Sequential(
        new SwitchableLinear(state, feat, h),
        new ReLU(),
        new SwitchableLinear(state, h, C),
      );
    }
    case "mocov3_slim": {
      const h = hidden(mlpDim ?? 4096);
      return new Sequential(
        new SlimmableLinear(state, feat, h, false, overlap),
        new SwitchableBatchNorm1d(state, h),
        new ReLU(),
        new SlimmableLinear(state, h, C, false, overlap),
        new SwitchableBatchNorm1d(state, C, { affine: false }),
      );
    }
    case "simclr_slim": {
      const h = hidden(mlpDim ?? 2048);
      return new Sequential(
        new SlimmableLinear(state, feat, h, true, overlap),
        new SwitchableBatchNorm1d(state, h),
        new ReLU(),
        new SlimmableLinear(state, h, C, false, overlap),
        new SwitchableBatchNorm1d(state, C, { affine: true }),
      );
    }
    default:
      throw new RangeError(
        `unknown head '${kind}' (expected none, supervised, supervised_switch, mocov2_slim, ` +
          `mocov2_switch, mocov3_slim or simclr_slim)`,
      );
  }
}

/** A slimmable ResNet: one set of weights, run at any of its widths. */
export class SlimmableResNet extends ResNetTrunk {
  /** The active width, shared by every layer. */
  readonly state: WidthState;
  readonly fc: Module | null;
  readonly head: HeadKind;

  constructor(readonly slimOptions: SlimmableResNetOptions) {
    const state = new WidthState(slimOptions.widths ?? DEFAULT_WIDTHS);
    const overlap = slimOptions.overlap ?? true;
    super(
      slimOptions,
      slimmableLayers(state, overlap),
      slimOptions.plan ?? channelPlan(slimOptions.arch, state.widths, slimOptions.baseWidth ?? 64),
    );
    this.state = state;
    this.head = slimOptions.head ?? (slimOptions.numClasses ? "supervised" : "none");
    const head = buildHead(
      this.head,
      state,
      this.featureChannels,
      slimOptions.numClasses ?? 0,
      overlap,
      slimOptions.mlpDim,
    );
    this.fc = head ? this.child("fc", head) : null;
    this.initWeights(slimOptions.zeroInitResidual ?? false, slimOptions.linearInit);
  }

  /** The widths, descending. */
  get widths(): readonly number[] {
    return this.state.widths;
  }
  /** The active width. */
  get width(): number {
    return this.state.width;
  }
  /** Activates width `w` (an unknown width is an error naming the allowed ones). */
  setWidth(w: number): this {
    this.state.set(w);
    return this;
  }
  /** Runs `fn` at width `w`, then restores the previous width. */
  withWidth<T>(w: number, fn: () => T): T {
    const prev = this.state.width;
    this.state.set(w);
    try {
      return fn();
    } finally {
      this.state.set(prev);
    }
  }

  /** Output at the active width. */
  forward(x: Tensor): Tensor {
    if (!this.fc) return this.features(x);
    return scope(() => this.fc!.forward(this.features(x)));
  }

  /** Outputs of each of `widths` (all by default, widest first). */
  forwardWidths(x: Tensor, widths: readonly number[] = this.widths): Map<number, Tensor> {
    const out = new Map<number, Tensor>();
    for (const w of widths) out.set(w, this.withWidth(w, () => this.forward(x)));
    return out;
  }
}

/**
 * One width of a slimmable ResNet as a dense torchvision-style ResNet: sliced weights, that width's
 * batch norms, and the classifier when the head is `supervised` or `supervised_switch`.
 */
export function exportDense(net: SlimmableResNet, width: number): ResNet {
  const index = net.state.indexOf(width);
  const classifier = net.head === "supervised" || net.head === "supervised_switch";
  const dense = new ResNet({
    ...net.options,
    plan: planAtWidth(net.plan, index),
    numClasses: classifier ? net.slimOptions.numClasses : 0,
  });
  const targets = new Map(dense.namedModules());
  net.withWidth(width, () =>
    noGrad(() => {
      for (const [path, m] of net.namedModules()) {
        if (path.startsWith("fc") && !classifier) continue;
        const t = targets.get(path);
        if (m instanceof SlimmableConv2d || m instanceof SlimmableLinear) {
          const [i0, i1] = m.inRanges[index];
          const [o0, o1] = m.outRanges[index];
          const dst = t as unknown as { weight: Tensor; bias: Tensor | null };
          scope(() => {
            dst.weight.copy_(m.weight.narrow(0, o0, o1 - o0).narrow(1, i0, i1 - i0));
            if (m.bias && dst.bias) dst.bias.copy_(m.bias.narrow(0, o0, o1 - o0));
          });
        } else if (m instanceof SwitchableBatchNorm) {
          (t as BatchNorm).loadStateDict(m.active.stateDict());
        } else if (m instanceof SwitchableLinear) {
          (t as Linear).loadStateDict(m.linears[index].stateDict());
        }
      }
    }));
  return dense;
}

/** Channel counts of one width, for the JSON written beside an export. */
export function describeWidth(net: SlimmableResNet, width: number): Record<string, unknown> {
  const plan = planAtWidth(net.plan, net.state.indexOf(width));
  return {
    arch: net.options.arch,
    width,
    stem: net.options.stem ?? "imagenet",
    in_channels: net.options.inChannels ?? 3,
    stem_channels: plan.stem[0],
    stages: plan.blocks.map((st) => st.map((b) => ({ mid: b.mid[0], out: b.out[0] }))),
    num_classes: net.head === "supervised" || net.head === "supervised_switch"
      ? net.slimOptions.numClasses
      : 0,
  };
}
