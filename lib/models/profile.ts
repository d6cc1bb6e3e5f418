/**
 * Model profiling (spec §5.9) from layer shapes only: the parameters and multiply-accumulates of
 * each width of a slimmable ResNet (or of a dense ResNet, or a plain `Sequential` of layers),
 * without allocating a tensor or running a forward. Spatial sizes are followed through the
 * network with PyTorch's output-size formula (floor, no ceil mode).
 *
 * What is counted, as the slimmable-networks profiler the reference ships (`model_profiling.py`)
 * counts it, for one image (batch 1):
 * - convolution: `Cout · (Cin / groups) · kh · kw · Hout · Wout` MACs;
 * - linear: `in · out` MACs;
 * - adaptive average pooling: `C · H · W` MACs of its input (one accumulate per element; the
 *   reference profiler's formula, 2048·7·7 = 100,352 MACs at width 1 of a 224 px ResNet-50);
 * - batch norm, ReLU, max pooling and the residual addition: 0 MACs; biases add no MACs.
 *
 * Parameters are those of the width's sub-network as `exportDense` builds it: sliced convolution
 * and linear weights (and biases), that width's batch norm (γ and β when affine; running
 * statistics are buffers), and the classifier for the `supervised` and `supervised_switch` heads.
 * SSL projector heads are left out unless `includeProjector` is set (then their parameters and
 * MACs are both counted).
 */
import {
  AdaptiveAvgPool2d,
  BatchNorm,
  Conv2d,
  Flatten,
  Identity,
  Linear,
  MaxPool2d,
  ReLU,
  Sequential,
} from "../nn/layers.ts";
import type { Module } from "../nn/module.ts";
import {
  SlimmableConv2d,
  SlimmableLinear,
  SwitchableBatchNorm,
  SwitchableLinear,
  WidthState,
} from "../nn/slimmable.ts";
import { ResidualBlock, ResNetTrunk } from "./resnet.ts";
import { SlimmableResNet } from "./slimmable_resnet.ts";

/** Parameters and multiply-accumulates of one width. */
export interface WidthProfile {
  /** The width (1 for a dense network). */
  width: number;
  /** Parameter elements of the width's sub-network. */
  params: number;
  /** Multiply-accumulates of one forward of one image. */
  macs: number;
}

/** Options of `profileWidths`. */
export interface ProfileOptions {
  /** Widths to profile (default: every width of the network, widest first). */
  widths?: readonly number[];
  /** Also count SSL projector heads (`mocov2_*`, `mocov3_slim`, `simclr_slim`); default false. */
  includeProjector?: boolean;
}

type Size = [number, number];

const pair = (p: number | [number, number]): Size => (typeof p === "number" ? [p, p] : p);

/** Kernel, stride, padding, dilation and groups of a dense or slimmable convolution. */
function convGeometry(m: Module) {
  if (m instanceof SlimmableConv2d) {
    return {
      k: pair(m.kernelSize),
      s: pair(m.stride),
      p: pair(m.padding),
      d: pair(m.dilation),
      groups: 1,
    };
  }
  if (m instanceof Conv2d) {
    return {
      k: pair(m.kernelSize),
      s: pair(m.options.stride),
      p: pair(m.options.padding),
      d: pair(m.options.dilation),
      groups: m.options.groups,
    };
  }
  throw new TypeError(`profile: expected a convolution, got ${m.constructor.name}`);
}

/** Output size of a convolution or pooling window (PyTorch's floor formula). */
function windowOut(
  [h, w]: Size,
  k: Size,
  s: Size,
  p: Size,
  d: Size,
  what: string,
): Size {
  const out: Size = [0, 1].map((i) =>
    Math.floor(([h, w][i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) / s[i]) + 1
  ) as Size;
  if (out[0] < 1 || out[1] < 1) {
    throw new RangeError(`profile: input ${h}×${w} is too small for ${what} (output ${out})`);
  }
  return out;
}

/** Output size of a convolution. */
function convOut(m: Module, size: Size, what: string): Size {
  const g = convGeometry(m);
  return windowOut(size, g.k, g.s, g.p, g.d, what);
}

/** Where each convolution and average pool sits: input spatial sizes from a shape-only walk. */
interface Trace {
  /** Input height and width of every convolution on the forward path. */
  convIn: Map<Module, Size>;
  /** Average pools: input height and width, and the convolution whose channels they pool. */
  pools: { size: Size; source: Module }[];
}

/**
 * Follows the spatial size through `m` as its forward would, for the layers this library builds
 * networks from: ResNet trunks, residual blocks, `Sequential`, convolutions, pools, batch norms,
 * activations, `Flatten` and linears. Returns the size after `m` (null once flattened).
 */
function trace(m: Module, s: Size | null, t: Trace, path: string, last: { conv: Module | null }) {
  const at = (n: string) => (path ? `${path}.${n}` : n);
  const need = (what: string): Size => {
    if (!s) {
      throw new TypeError(`profile: ${what} '${path}' comes after the features were flattened`);
    }
    return s;
  };
  if (m instanceof ResNetTrunk) {
    s = trace(m.conv1, s, t, at("conv1"), last);
    if (m.maxpool) s = trace(m.maxpool, s, t, at("maxpool"), last);
    m.stages.forEach((stage, i) => (s = trace(stage, s, t, at(`layer${i + 1}`), last)));
    s = trace(m.avgpool, s, t, at("avgpool"), last);
    return null;
  }
  if (m instanceof ResidualBlock) {
    const input = need("residual block");
    let h: Size | null = input;
    m.convs.forEach((c, i) => (h = trace(c, h, t, at(`conv${i + 1}`), last)));
    const conv = last.conv;
    if (m.downsample) trace(m.downsample, input, t, at("downsample"), last);
    last.conv = conv;
    return h;
  }
  if (m instanceof Sequential) {
    m.layers.forEach((l, i) => (s = trace(l, s, t, at(String(i)), last)));
    return s;
  }
  if (m instanceof SlimmableConv2d || m instanceof Conv2d) {
    const input = need("convolution");
    t.convIn.set(m, input);
    last.conv = m;
    return convOut(m, input, path);
  }
  if (m instanceof MaxPool2d) {
    const [k, st, p] = [pair(m.kernelSize), pair(m.stride), pair(m.padding)];
    return windowOut(need("max pool"), k, st, p, [1, 1], path);
  }
  if (m instanceof AdaptiveAvgPool2d) {
    const input = need("average pool");
    if (!last.conv) {
      throw new TypeError(`profile: average pool '${path}' has no convolution before it`);
    }
    t.pools.push({ size: input, source: last.conv });
    return pair(m.outputSize);
  }
  if (m instanceof Flatten) return null;
  if (
    m instanceof BatchNorm || m instanceof SwitchableBatchNorm || m instanceof ReLU ||
    m instanceof Identity || m instanceof Linear || m instanceof SlimmableLinear ||
    m instanceof SwitchableLinear
  ) return s;
  throw new TypeError(`profile: cannot follow shapes through '${path}' (${m.constructor.name})`);
}

const span = ([a, b]: [number, number]) => b - a;

/** Output channels of a convolution at width position `index`. */
function outChannels(m: Module, index: number): number {
  if (m instanceof SlimmableConv2d) return span(m.outRanges[index]);
  return (m as Conv2d).outChannels;
}

/** The width state of a slimmable network, or null for a dense one. */
function widthStateOf(net: Module): WidthState | null {
  if (net instanceof SlimmableResNet) return net.state;
  for (const [, m] of net.namedModules()) {
    const state = (m as { state?: unknown }).state;
    if (state instanceof WidthState) return state;
  }
  return null;
}

/**
 * Parameters and MACs (batch 1) of each width of `net` at input size `inputSize` (square side or
 * `[height, width]`), from layer shapes alone: nothing is allocated, no forward runs and the
 * active width is left unchanged. `net` is a `SlimmableResNet`, a dense `ResNet` (one entry,
 * width 1), or a `Sequential` of convolutions, pools, norms, activations, `Flatten` and linears
 * (slimmable or dense). See the module documentation for what is counted.
 */
export function profileWidths(
  net: Module,
  inputSize: number | [number, number],
  options: ProfileOptions = {},
): WidthProfile[] {
  const size = pair(inputSize);
  if (!size.every((x) => Number.isInteger(x) && x > 0)) {
    throw new RangeError(`profile: input size must be positive integers, got ${inputSize}`);
  }
  const t: Trace = { convIn: new Map(), pools: [] };
  trace(net, size, t, "", { conv: null });
  const state = widthStateOf(net);
  const widths = options.widths ?? (state ? state.widths : [1]);
  // Classifier heads are part of the exported network; SSL projectors only when asked.
  const skipHead = net instanceof SlimmableResNet && options.includeProjector !== true &&
    net.head !== "supervised" && net.head !== "supervised_switch";
  return widths.map((width) => {
    let index = 0;
    if (state) index = state.indexOf(width);
    else if (width !== 1) throw new RangeError(`profile: a dense network has only width 1`);
    let params = 0;
    let macs = 0;
    let skip: string | null = null;
    for (const [path, m] of net.namedModules()) {
      if (skip !== null && (path === skip || path.startsWith(`${skip}.`))) continue;
      skip = null;
      if (skipHead && (path === "fc" || path.startsWith("fc."))) continue;
      if (m instanceof SlimmableConv2d || m instanceof Conv2d) {
        const spatial = t.convIn.get(m);
        if (!spatial) throw new TypeError(`profile: convolution '${path}' is never run`);
        const g = convGeometry(m);
        const cin = m instanceof SlimmableConv2d
          ? span(m.inRanges[index])
          : m.inChannels / g.groups;
        const cout = outChannels(m, index);
        const [ho, wo] = convOut(m, spatial, path);
        const perOut = cin * g.k[0] * g.k[1];
        params += cout * perOut + (m.bias ? cout : 0);
        macs += cout * perOut * ho * wo;
      } else if (m instanceof SlimmableLinear || m instanceof Linear) {
        const [fin, fout] = m instanceof SlimmableLinear
          ? [span(m.inRanges[index]), span(m.outRanges[index])]
          : [m.inFeatures, m.outFeatures];
        params += fin * fout + (m.bias ? fout : 0);
        macs += fin * fout;
      } else if (m instanceof SwitchableLinear) {
        const l = m.linears[index];
        params += l.inFeatures * l.outFeatures + (l.bias ? l.outFeatures : 0);
        macs += l.inFeatures * l.outFeatures;
      } else if (m instanceof SwitchableBatchNorm || m instanceof BatchNorm) {
        const bn = m instanceof SwitchableBatchNorm ? m.bn[index] : m;
        params += (bn.weight ? bn.numFeatures : 0) + (bn.bias ? bn.numFeatures : 0);
      } else if (m.namedParameters().some(([n]) => !n.includes("."))) {
        throw new TypeError(`profile: cannot count layer '${path}' (${m.constructor.name})`);
      } else continue;
      skip = path;
    }
    // Average pooling: one accumulate per element of the pooled feature map.
    for (const p of t.pools) macs += outChannels(p.source, index) * p.size[0] * p.size[1];
    return { width, params, macs };
  });
}
