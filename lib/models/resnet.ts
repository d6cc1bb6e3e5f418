/**
 * ResNets with torchvision's module names (`conv1`, `bn1`, `layer1.0.conv1`,
 * `layer1.0.downsample.0`, `fc`): dense, or slimmable (spec §2.1) where every convolution is a
 * `SlimmableConv2d` and every batch norm a `SwitchableBatchNorm2d` (`bn1.bn.{i}`). ImageNet stem
 * (7×7/2 + max-pool), small-image stem (3×3/1, no max-pool) or its strided variant (3×3/2);
 * bottleneck blocks are v1.5.
 */
import { noGrad } from "../autograd.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import {
  AdaptiveAvgPool2d,
  BatchNorm,
  BatchNorm2d,
  Conv2d,
  Linear,
  MaxPool2d,
  Sequential,
} from "../nn/layers.ts";
import { Module } from "../nn/module.ts";
import {
  channelsAt,
  SlimmableConv2d,
  SlimmableLinear,
  SwitchableBatchNorm2d,
  WidthState,
} from "../nn/slimmable.ts";

/**
 * Stems: "imagenet" is 7×7/2 convolution and 3×3/2 max-pool (32× total downsampling); "small" is
 * a 3×3/1 convolution without pooling (8×, CIFAR-style); "small_s2" is a 3×3/2 convolution
 * without pooling (16×), which quarters the activations of every stage on small images.
 */
export const STEMS = ["imagenet", "small", "small_s2"] as const;
/** A ResNet stem kind. */
export type Stem = typeof STEMS[number];

/** Convolution geometry and pooling of each stem. */
const STEM_LAYOUT: Record<Stem, { kernel: number; stride: number; pad: number; pool: boolean }> = {
  imagenet: { kernel: 7, stride: 2, pad: 3, pool: true },
  small: { kernel: 3, stride: 1, pad: 1, pool: false },
  small_s2: { kernel: 3, stride: 2, pad: 1, pool: false },
};

/** Total spatial downsampling of a ResNet with this stem (input side ÷ final feature-map side). */
export function stemDownsampling(stem: Stem): number {
  const l = STEM_LAYOUT[stem];
  return l.stride * (l.pool ? 2 : 1) * 8;
}

/** Block type and blocks per stage of each depth. */
export const RESNET_DEPTHS = {
  resnet18: { block: "basic", layers: [2, 2, 2, 2] },
  resnet34: { block: "basic", layers: [3, 4, 6, 3] },
  resnet50: { block: "bottleneck", layers: [3, 4, 6, 3] },
  resnet101: { block: "bottleneck", layers: [3, 4, 23, 3] },
  resnet152: { block: "bottleneck", layers: [3, 8, 36, 3] },
} as const;

/** Architecture names. */
export type ResNetArch = keyof typeof RESNET_DEPTHS;

/** Channels of one layer: one count per width (a single entry for dense networks). */
export type Channels = readonly number[];

/** Makes the convolutions and batch norms of a network: dense or slimmable. */
export interface LayerFactory {
  conv(inC: Channels, outC: Channels, k: number, stride: number, padding: number): Module;
  bn(c: Channels): Module;
}

/** Dense layers (uses the first entry of each channel list). */
export const DENSE: LayerFactory = {
  conv: (i, o, k, stride, padding) => new Conv2d(i[0], o[0], k, { stride, padding, bias: false }),
  bn: (c) => new BatchNorm2d(c[0]),
};

/** Slimmable layers over a shared width state. */
export function slimmableLayers(state: WidthState, overlap = true): LayerFactory {
  return {
    conv: (i, o, k, stride, padding) =>
      new SlimmableConv2d(state, i, o, k, { stride, padding, overlap }),
    bn: (c) => new SwitchableBatchNorm2d(state, c),
  };
}

/** Channel plan of a ResNet: stem channels and [mid, out] of every block, per width. */
export interface ChannelPlan {
  stem: Channels;
  blocks: { mid: Channels; out: Channels }[][];
}

/** The reference channel plan (spec §2.1) at each width: `int(c·w)`, bottleneck mid = out // 4. */
export function channelPlan(
  arch: ResNetArch,
  widths: readonly number[] = [1],
  baseWidth = 64,
): ChannelPlan {
  const { block, layers } = RESNET_DEPTHS[arch];
  const at = (c: number) => widths.map((w) => channelsAt(c, w));
  return {
    stem: at(baseWidth),
    blocks: layers.map((n, s) => {
      const feats = baseWidth * 2 ** s;
      const out = block === "basic" ? at(feats) : widths.map((w) => Math.trunc(feats * w * 4));
      const mid = block === "basic" ? out : out.map((c) => Math.floor(c / 4));
      return Array.from({ length: n }, () => ({ mid, out }));
    }),
  };
}

/** The plan of one width of a slimmable plan, as a dense plan. */
export function planAtWidth(plan: ChannelPlan, index: number): ChannelPlan {
  return {
    stem: [plan.stem[index]],
    blocks: plan.blocks.map((st) => st.map((b) => ({ mid: [b.mid[index]], out: [b.out[index]] }))),
  };
}

const same = (a: Channels, b: Channels) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Kaiming-normal (fan_out, ReLU) initialisation of a convolution weight, as torchvision does. */
export function kaimingNormalFanOut(w: Tensor): void {
  const [out, , kh, kw] = w.shape;
  noGrad(() => w.normal_(0, Math.sqrt(2 / (out * kh * kw))));
}

/** A residual block: basic (3×3, 3×3) or bottleneck v1.5 (1×1, 3×3 with the stride, 1×1). */
export class ResidualBlock extends Module {
  readonly convs: Module[] = [];
  readonly bns: Module[] = [];
  readonly downsample: Sequential | null;
  constructor(
    kind: "basic" | "bottleneck",
    f: LayerFactory,
    inC: Channels,
    mid: Channels,
    out: Channels,
    stride: number,
  ) {
    super();
    const specs: [Channels, Channels, number, number, number][] = kind === "basic"
      ? [[inC, mid, 3, stride, 1], [mid, out, 3, 1, 1]]
      : [[inC, mid, 1, 1, 0], [mid, mid, 3, stride, 1], [mid, out, 1, 1, 0]];
    specs.forEach(([i, o, k, s, p], n) => {
      this.convs.push(this.child(`conv${n + 1}`, f.conv(i, o, k, s, p)));
      this.bns.push(this.child(`bn${n + 1}`, f.bn(o)));
    });
    this.downsample = stride !== 1 || !same(inC, out)
      ? this.child("downsample", new Sequential(f.conv(inC, out, 1, stride, 0), f.bn(out)))
      : null;
  }
  /** The last batch norm, whose γ `zeroInitResidual` zeroes. */
  get lastBn(): Module {
    return this.bns[this.bns.length - 1];
  }
  forward(x: Tensor): Tensor {
    return scope(() => {
      let h = x;
      const last = this.convs.length - 1;
      for (let i = 0; i <= last; i++) {
        h = this.bns[i].forward(this.convs[i].forward(h));
        if (i < last) h.relu_();
      }
      const identity = this.downsample ? this.downsample.forward(x) : x;
      return h.add_(identity).relu_();
    });
  }
}

/** Options shared by dense and slimmable ResNets. */
export interface ResNetOptions {
  arch: ResNetArch;
  /** Stem kind (see `STEMS`); default "imagenet". */
  stem?: Stem;
  inChannels?: number;
  baseWidth?: number;
  /** Output classes of a linear classifier; 0 leaves it out (the network returns features). */
  numClasses?: number;
  /** Explicit channel plan (dense twins of slimmed networks). */
  plan?: ChannelPlan;
  /** Zero the last BN's γ in each residual block. */
  zeroInitResidual?: boolean;
  /**
   * Linear layers: N(0, 0.01) with zero bias as the paper (default), or PyTorch's default uniform
   * ±1/√fan_in. Narrow heads followed by L2 normalisation want "default": with N(0, 0.01) their
   * outputs are tiny, normalisation multiplies the head's gradients by 1/‖z‖, and a small
   * network's contrastive training collapses to log(K+1) within a few dozen steps.
   */
  linearInit?: "paper" | "default";
}

/** The convolutional trunk of a ResNet: stem, four stages, global pooling. */
export abstract class ResNetTrunk extends Module {
  readonly conv1: Module;
  readonly bn1: Module;
  readonly maxpool: MaxPool2d | null;
  readonly stages: Sequential[];
  readonly avgpool = new AdaptiveAvgPool2d(1);
  readonly plan: ChannelPlan;

  constructor(readonly options: ResNetOptions, f: LayerFactory, plan: ChannelPlan) {
    super();
    this.plan = plan;
    const { block } = RESNET_DEPTHS[options.arch];
    const stem = STEM_LAYOUT[options.stem ?? "imagenet"];
    if (!stem) {
      throw new Error(`unknown ResNet stem '${options.stem}' (expected ${STEMS.join(", ")})`);
    }
    const inC = plan.stem.map(() => options.inChannels ?? 3);
    this.conv1 = this.child("conv1", f.conv(inC, plan.stem, stem.kernel, stem.stride, stem.pad));
    this.bn1 = this.child("bn1", f.bn(plan.stem));
    this.maxpool = stem.pool ? new MaxPool2d(3, 2, 1) : null;
    let c: Channels = plan.stem;
    this.stages = plan.blocks.map((blocks, si) => {
      const mods = blocks.map((b, bi) => {
        const m = new ResidualBlock(block, f, c, b.mid, b.out, bi === 0 && si > 0 ? 2 : 1);
        c = b.out;
        return m;
      });
      return this.child(`layer${si + 1}`, new Sequential(...mods));
    });
  }

  /** Feature channels after pooling, per width. */
  get featureChannels(): Channels {
    const last = this.plan.blocks[this.plan.blocks.length - 1];
    return last[last.length - 1].out;
  }

  /** Pooled features (N, C). */
  features(x: Tensor): Tensor {
    return scope(() => {
      let h = this.bn1.forward(this.conv1.forward(x)).relu_();
      if (this.maxpool) h = this.maxpool.forward(h);
      for (const s of this.stages) h = s.forward(h);
      return this.avgpool.forward(h).flatten(1);
    });
  }

  /** The paper's initialisation: kaiming-normal convs, N(0, 0.01) linears, optional zero-γ. */
  initWeights(zeroInitResidual: boolean, linearInit: "paper" | "default" = "paper"): void {
    noGrad(() => {
      for (const [, m] of this.namedModules()) {
        if (m instanceof Conv2d || m instanceof SlimmableConv2d) {
          kaimingNormalFanOut(m.weight);
          m.bias?.zero_();
        }
        if ((m instanceof Linear || m instanceof SlimmableLinear) && linearInit === "paper") {
          m.weight.normal_(0, 0.01);
          m.bias?.zero_();
        }
        if (m instanceof BatchNorm) {
          m.weight?.fill_(1);
          m.bias?.zero_();
        }
      }
      if (zeroInitResidual) {
        for (const [, m] of this.namedModules()) {
          if (!(m instanceof ResidualBlock)) continue;
          for (const [, bn] of m.lastBn.namedModules()) {
            if (bn instanceof BatchNorm) bn.weight?.zero_();
          }
        }
      }
    });
  }
}

/** A dense ResNet. */
export class ResNet extends ResNetTrunk {
  readonly fc: Linear | null;
  constructor(options: ResNetOptions) {
    super(options, DENSE, options.plan ?? channelPlan(options.arch, [1], options.baseWidth ?? 64));
    this.fc = options.numClasses
      ? this.child("fc", new Linear(this.featureChannels[0], options.numClasses))
      : null;
    this.initWeights(options.zeroInitResidual ?? false, options.linearInit);
  }
  forward(x: Tensor): Tensor {
    if (!this.fc) return this.features(x);
    return scope(() => this.fc!.forward(this.features(x)));
  }
}

/** @internal Shared by the slimmable network classes. */
export function widthStateFor(widths: readonly number[]): WidthState {
  return new WidthState(widths);
}
