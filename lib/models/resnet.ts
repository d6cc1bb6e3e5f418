/**
 * Dense ResNets with torchvision's module names (`conv1`, `bn1`, `layer1.0.conv1`,
 * `layer1.0.downsample.0`, `fc`), the ImageNet stem or the small-image stem, configurable input
 * channels and base width. Bottleneck blocks are v1.5 (stride on the 3×3 convolution).
 */
import { noGrad } from "../autograd.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import {
  AdaptiveAvgPool2d,
  BatchNorm2d,
  Conv2d,
  Linear,
  MaxPool2d,
  Sequential,
} from "../nn/layers.ts";
import { Module } from "../nn/module.ts";

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

/** Options of a ResNet. */
export interface ResNetOptions {
  arch: ResNetArch;
  /** "imagenet": 7×7/2 convolution and max-pool; "small": 3×3/1 convolution, no max-pool. */
  stem?: "imagenet" | "small";
  inChannels?: number;
  baseWidth?: number;
  /** Output classes; 0 leaves out the classifier (the network returns pooled features). */
  numClasses?: number;
  /** Explicit channel counts, for dense twins of slimmed networks: stem, then per stage. */
  channels?: { stem: number; stages: number[][] };
  /** Zero the last BN's γ in each residual block (as in the paper's initialisation). */
  zeroInitResidual?: boolean;
}

/** Kaiming-normal (fan_out, ReLU) initialisation of a convolution weight, as torchvision does. */
export function kaimingNormalFanOut(w: Tensor): void {
  const [out, , kh, kw] = w.shape;
  noGrad(() => w.normal_(0, Math.sqrt(2 / (out * kh * kw))));
}

/** A two-convolution residual block. */
export class BasicBlock extends Module {
  static readonly expansion = 1;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Sequential | null;
  constructor(inC: number, mid: number, out: number, stride: number) {
    super();
    this.conv1 = this.child("conv1", new Conv2d(inC, mid, 3, { stride, padding: 1, bias: false }));
    this.bn1 = this.child("bn1", new BatchNorm2d(mid));
    this.conv2 = this.child("conv2", new Conv2d(mid, out, 3, { padding: 1, bias: false }));
    this.bn2 = this.child("bn2", new BatchNorm2d(out));
    this.downsample = stride !== 1 || inC !== out
      ? this.child(
        "downsample",
        new Sequential(new Conv2d(inC, out, 1, { stride, bias: false }), new BatchNorm2d(out)),
      )
      : null;
  }
  /** The BN whose γ is zeroed by `zeroInitResidual`. */
  get lastBn(): BatchNorm2d {
    return this.bn2;
  }
  forward(x: Tensor): Tensor {
    return scope(() => {
      const h = this.bn1.forward(this.conv1.forward(x)).relu_();
      const y = this.bn2.forward(this.conv2.forward(h));
      const identity = this.downsample ? this.downsample.forward(x) : x;
      return y.add_(identity).relu_();
    });
  }
}

/** A 1×1–3×3–1×1 bottleneck block (v1.5: stride on the 3×3). */
export class Bottleneck extends Module {
  static readonly expansion = 4;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly downsample: Sequential | null;
  constructor(inC: number, mid: number, out: number, stride: number) {
    super();
    this.conv1 = this.child("conv1", new Conv2d(inC, mid, 1, { bias: false }));
    this.bn1 = this.child("bn1", new BatchNorm2d(mid));
    this.conv2 = this.child("conv2", new Conv2d(mid, mid, 3, { stride, padding: 1, bias: false }));
    this.bn2 = this.child("bn2", new BatchNorm2d(mid));
    this.conv3 = this.child("conv3", new Conv2d(mid, out, 1, { bias: false }));
    this.bn3 = this.child("bn3", new BatchNorm2d(out));
    this.downsample = stride !== 1 || inC !== out
      ? this.child(
        "downsample",
        new Sequential(new Conv2d(inC, out, 1, { stride, bias: false }), new BatchNorm2d(out)),
      )
      : null;
  }
  get lastBn(): BatchNorm2d {
    return this.bn3;
  }
  forward(x: Tensor): Tensor {
    return scope(() => {
      const h1 = this.bn1.forward(this.conv1.forward(x)).relu_();
      const h2 = this.bn2.forward(this.conv2.forward(h1)).relu_();
      const y = this.bn3.forward(this.conv3.forward(h2));
      const identity = this.downsample ? this.downsample.forward(x) : x;
      return y.add_(identity).relu_();
    });
  }
}

/** The default channel plan: stem width, then [mid, out] per block per stage. */
export function defaultChannels(
  arch: ResNetArch,
  baseWidth = 64,
): { stem: number; stages: number[][] } {
  const { block, layers } = RESNET_DEPTHS[arch];
  const expansion = block === "basic" ? 1 : 4;
  return {
    stem: baseWidth,
    stages: layers.map((n, i) => {
      const mid = baseWidth * 2 ** i;
      return Array.from({ length: n }, () => [mid, mid * expansion]).flat();
    }),
  };
}

/** A dense ResNet. */
export class ResNet extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly maxpool: MaxPool2d | null;
  readonly stages: Sequential[];
  readonly avgpool: AdaptiveAvgPool2d;
  readonly fc: Linear | null;
  /** Width of the pooled features. */
  readonly featureDim: number;

  constructor(readonly opts: ResNetOptions) {
    super();
    const { block, layers } = RESNET_DEPTHS[opts.arch];
    const Block = block === "basic" ? BasicBlock : Bottleneck;
    const plan = opts.channels ?? defaultChannels(opts.arch, opts.baseWidth ?? 64);
    const small = (opts.stem ?? "imagenet") === "small";
    const inC = opts.inChannels ?? 3;
    this.conv1 = this.child(
      "conv1",
      small
        ? new Conv2d(inC, plan.stem, 3, { stride: 1, padding: 1, bias: false })
        : new Conv2d(inC, plan.stem, 7, { stride: 2, padding: 3, bias: false }),
    );
    this.bn1 = this.child("bn1", new BatchNorm2d(plan.stem));
    this.maxpool = small ? null : new MaxPool2d(3, 2, 1);
    let c = plan.stem;
    this.stages = layers.map((n, si) => {
      const blocks: Module[] = [];
      for (let b = 0; b < n; b++) {
        const [mid, out] = [plan.stages[si][2 * b], plan.stages[si][2 * b + 1]];
        blocks.push(new Block(c, mid, out, b === 0 && si > 0 ? 2 : 1));
        c = out;
      }
      return this.child(`layer${si + 1}`, new Sequential(...blocks));
    });
    this.avgpool = new AdaptiveAvgPool2d(1);
    this.featureDim = c;
    this.fc = opts.numClasses ? this.child("fc", new Linear(c, opts.numClasses)) : null;
    this.initWeights(opts.zeroInitResidual ?? false);
  }

  #initLinear(l: Linear): void {
    noGrad(() => {
      l.weight.normal_(0, 0.01);
      l.bias?.zero_();
    });
  }

  /** torchvision's initialisation; optionally zero-γ residual BNs. */
  initWeights(zeroInitResidual: boolean): void {
    for (const [, m] of this.namedModules()) {
      if (m instanceof Conv2d) kaimingNormalFanOut(m.weight);
      if (m instanceof Linear) this.#initLinear(m);
      if (zeroInitResidual && (m instanceof BasicBlock || m instanceof Bottleneck)) {
        noGrad(() => m.lastBn.weight!.zero_());
      }
    }
  }

  /** Pooled features (before the classifier). */
  features(x: Tensor): Tensor {
    return scope(() => {
      let h = this.bn1.forward(this.conv1.forward(x)).relu_();
      if (this.maxpool) h = this.maxpool.forward(h);
      for (const s of this.stages) h = s.forward(h);
      return this.avgpool.forward(h).flatten(1);
    });
  }

  forward(x: Tensor): Tensor {
    if (!this.fc) return this.features(x);
    return scope(() => this.fc!.forward(this.features(x)));
  }
}
