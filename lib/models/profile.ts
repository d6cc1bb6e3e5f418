/**
 * Model profiling (spec §5.9) from layer shapes only: the parameters and multiply-accumulates of
 * each width of a slimmable ResNet (or of a dense ResNet), without allocating a tensor or running
 * a forward.
 *
 * What is counted, as the slimmable-networks profiler the reference ships (`model_profiling.py`)
 * counts it, for one image (batch 1):
 * - convolution: `Cout · (Cin / groups) · kh · kw · Hout · Wout` MACs;
 * - linear: `in · out` MACs;
 * - global average pooling: `C · H · W` MACs (one accumulate per input element);
 * - batch norm, ReLU, max pooling and the residual addition: 0 MACs; biases add no MACs.
 *
 * Parameters are those of the width's sub-network as `exportDense` builds it: sliced convolution
 * and linear weights (and biases), that width's batch norm (γ and β when affine; running
 * statistics are buffers), and the classifier for the `supervised` and `supervised_switch` heads.
 * SSL projector heads are left out unless `includeProjector` is set (then their parameters and
 * MACs are both counted).
 */
import { BatchNorm, Conv2d, Linear, MaxPool2d } from "../nn/layers.ts";
import type { Module } from "../nn/module.ts";
import {
  SlimmableConv2d,
  SlimmableLinear,
  SwitchableBatchNorm,
  SwitchableLinear,
} from "../nn/slimmable.ts";
import { ResidualBlock, type ResNetTrunk } from "./resnet.ts";
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

function convOut(m: Module, size: Size, what: string): Size {
  const g = convGeometry(m);
  return windowOut(size, g.k, g.s, g.p, g.d, what);
}

/** Input spatial size of every convolution of a ResNet trunk, and the size before pooling. */
function traceSpatial(net: ResNetTrunk, input: Size): { convIn: Map<Module, Size>; last: Size } {
  const convIn = new Map<Module, Size>();
  let s = input;
  convIn.set(net.conv1, s);
  s = convOut(net.conv1, s, "conv1");
  if (net.maxpool) {
    const mp: MaxPool2d = net.maxpool;
    s = windowOut(s, pair(mp.kernelSize), pair(mp.stride), pair(mp.padding), [1, 1], "maxpool");
  }
  net.stages.forEach((stage, si) => {
    stage.layers.forEach((block, bi) => {
      if (!(block instanceof ResidualBlock)) {
        throw new TypeError(`profile: layer${si + 1}.${bi} is not a residual block`);
      }
      const where = `layer${si + 1}.${bi}`;
      let h = s;
      block.convs.forEach((c, ci) => {
        convIn.set(c, h);
        h = convOut(c, h, `${where}.conv${ci + 1}`);
      });
      if (block.downsample) {
        const d = block.downsample.layers[0];
        convIn.set(d, s);
        convOut(d, s, `${where}.downsample.0`);
      }
      s = h;
    });
  });
  return { convIn, last: s };
}

const span = ([a, b]: [number, number]) => b - a;

/**
 * Parameters and MACs (batch 1) of each width of `net` at input size `inputSize` (square side or
 * `[height, width]`), from layer shapes alone: nothing is allocated and the network's active
 * width is left unchanged. A dense `ResNet` gives one entry, width 1. See the module
 * documentation for what is counted.
 */
export function profileWidths(
  net: ResNetTrunk,
  inputSize: number | [number, number],
  options: ProfileOptions = {},
): WidthProfile[] {
  const size = pair(inputSize);
  if (!size.every((x) => Number.isInteger(x) && x > 0)) {
    throw new RangeError(`profile: input size must be positive integers, got ${inputSize}`);
  }
  const { convIn, last } = traceSpatial(net, size);
  const slim = net instanceof SlimmableResNet ? net : null;
  const widths = options.widths ?? (slim ? slim.widths : [1]);
  const headCounted = !slim || options.includeProjector === true ||
    slim.head === "supervised" || slim.head === "supervised_switch";
  return widths.map((width) => {
    let index = 0;
    if (slim) index = slim.state.indexOf(width);
    else if (width !== 1) throw new RangeError(`profile: a dense network has only width 1`);
    let params = 0;
    let macs = 0;
    let skip: string | null = null;
    for (const [path, m] of net.namedModules()) {
      if (skip !== null && (path === skip || path.startsWith(`${skip}.`))) continue;
      skip = null;
      if ((path === "fc" || path.startsWith("fc.")) && !headCounted) continue;
      if (m instanceof SlimmableConv2d || m instanceof Conv2d) {
        const spatial = convIn.get(m);
        if (!spatial) throw new TypeError(`profile: convolution '${path}' is outside the trunk`);
        const g = convGeometry(m);
        const [cin, cout] = m instanceof SlimmableConv2d
          ? [span(m.inRanges[index]), span(m.outRanges[index])]
          : [m.inChannels / g.groups, m.outChannels];
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
    // Global average pooling: one accumulate per element of the last feature map.
    macs += net.featureChannels[slim ? index : 0] * last[0] * last[1];
    return { width, params, macs };
  });
}
