/** Neural-network functions (the counterpart of `torch.nn.functional`). */
import { raw, type Reduction, reductionCode, type Tensor, wrap } from "./tensor.ts";

type Pair = number | readonly [number, number];
const pair = (v: Pair): number[] => (typeof v === "number" ? [v, v] : [v[0], v[1]]);

/** Options of `conv2d`. */
export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
}

/** 2-D convolution of `x` (N,C,H,W) with `weight` (O,C/groups,kH,kW). */
export function conv2d(
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null = null,
  o: Conv2dOptions = {},
): Tensor {
  return wrap(
    raw().conv2d(
      x.ptr,
      weight.ptr,
      bias?.ptr ?? null,
      pair(o.stride ?? 1),
      pair(o.padding ?? 0),
      pair(o.dilation ?? 1),
      o.groups ?? 1,
    ),
  );
}

/**
 * The block `w[o0:o0+oLen, i0:i0+iLen]` of a shared weight (the first dimension only for 1-D
 * tensors), as `narrow` would give. Its backward pass adds the block's gradient straight into
 * `w.grad` under a plain `backward()` instead of building a full-size zero-padded gradient per
 * use; under `grad()` it behaves exactly like `narrow`.
 */
export function weightSlice(w: Tensor, o0: number, oLen: number, i0 = 0, iLen = 0): Tensor {
  return wrap(raw().slice_weight(w.ptr, o0, oLen, i0, iLen));
}

/** `x @ weight.T + bias`. */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  return wrap(raw().linear(x.ptr, weight.ptr, bias?.ptr ?? null));
}

/** Options of `batchNorm`. */
export interface BatchNormOptions {
  weight?: Tensor | null;
  bias?: Tensor | null;
  runningMean?: Tensor | null;
  runningVar?: Tensor | null;
  /** Normalise with batch statistics and update the running ones. */
  training?: boolean;
  momentum?: number;
  eps?: number;
}

/** Batch normalisation; in training mode the running statistics are updated in place. */
export function batchNorm(x: Tensor, o: BatchNormOptions = {}): Tensor {
  return wrap(
    raw().batch_norm(
      x.ptr,
      o.weight?.ptr ?? null,
      o.bias?.ptr ?? null,
      o.runningMean?.ptr ?? null,
      o.runningVar?.ptr ?? null,
      o.training ?? false,
      o.momentum ?? 0.1,
      o.eps ?? 1e-5,
    ),
  );
}

/** Layer normalisation over the trailing `shape`. */
export function layerNorm(
  x: Tensor,
  shape: readonly number[],
  weight: Tensor | null = null,
  bias: Tensor | null = null,
  eps = 1e-5,
): Tensor {
  return wrap(raw().layer_norm(x.ptr, shape, weight?.ptr ?? null, bias?.ptr ?? null, eps));
}

/** Options of the 2-D pools. */
export interface PoolOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  ceilMode?: boolean;
  countIncludePad?: boolean;
}

export function maxPool2d(x: Tensor, kernel: Pair, o: PoolOptions = {}): Tensor {
  return wrap(
    raw().max_pool2d(
      x.ptr,
      pair(kernel),
      pair(o.stride ?? kernel),
      pair(o.padding ?? 0),
      pair(o.dilation ?? 1),
      o.ceilMode ?? false,
    ),
  );
}

export function avgPool2d(x: Tensor, kernel: Pair, o: PoolOptions = {}): Tensor {
  return wrap(
    raw().avg_pool2d(
      x.ptr,
      pair(kernel),
      pair(o.stride ?? kernel),
      pair(o.padding ?? 0),
      o.ceilMode ?? false,
      o.countIncludePad ?? true,
    ),
  );
}

export function adaptiveAvgPool2d(x: Tensor, size: Pair): Tensor {
  return wrap(raw().adaptive_avg_pool2d(x.ptr, pair(size)));
}

/** Resizes (N,C,H,W) to `size` with nearest, bilinear or bicubic interpolation. */
export function interpolate(
  x: Tensor,
  size: Pair,
  mode: "nearest" | "bilinear" | "bicubic" = "nearest",
  alignCorners = false,
): Tensor {
  return wrap(raw().interpolate(x.ptr, pair(size), mode, alignCorners));
}

const GRID_MODES = { bilinear: 0, nearest: 1, bicubic: 2 } as const;
const GRID_PADDING = { zeros: 0, border: 1, reflection: 2 } as const;

/** Samples `x` at `grid` locations in [-1, 1] (as `F.grid_sample`). */
export function gridSample(
  x: Tensor,
  grid: Tensor,
  mode: keyof typeof GRID_MODES = "bilinear",
  padding: keyof typeof GRID_PADDING = "zeros",
  alignCorners = false,
): Tensor {
  return wrap(
    raw().grid_sample(x.ptr, grid.ptr, GRID_MODES[mode], GRID_PADDING[padding], alignCorners),
  );
}

/** Sampling grid for affine matrices `theta` (N,2,3) and output `size` [N,C,H,W]. */
export function affineGrid(theta: Tensor, size: readonly number[], alignCorners = false): Tensor {
  return wrap(raw().affine_grid(theta.ptr, size, alignCorners));
}

/** Constant, reflect, replicate or circular padding (`pad` lists last-dimension pairs first). */
export function pad(
  x: Tensor,
  padding: readonly number[],
  mode: "constant" | "reflect" | "replicate" | "circular" = "constant",
  value = 0,
): Tensor {
  return wrap(raw().pad(x.ptr, padding, mode, value));
}

export function relu(x: Tensor): Tensor {
  return x.relu();
}
export function softmax(x: Tensor, dim: number): Tensor {
  return x.softmax(dim);
}
export function logSoftmax(x: Tensor, dim: number): Tensor {
  return x.logSoftmax(dim);
}
export function dropout(x: Tensor, p: number, training: boolean): Tensor {
  return wrap(raw().dropout(x.ptr, p, training));
}

/** Options of `crossEntropy`. */
export interface CrossEntropyOptions {
  weight?: Tensor | null;
  reduction?: Reduction;
  ignoreIndex?: number;
  labelSmoothing?: number;
}

/** Cross entropy of logits against class indices or class probabilities. */
export function crossEntropy(logits: Tensor, target: Tensor, o: CrossEntropyOptions = {}): Tensor {
  return wrap(
    raw().cross_entropy(
      logits.ptr,
      target.ptr,
      o.weight?.ptr ?? null,
      reductionCode(o.reduction ?? "mean"),
      o.ignoreIndex ?? -100,
      o.labelSmoothing ?? 0,
    ),
  );
}

export function nllLoss(
  logProbs: Tensor,
  target: Tensor,
  reduction: Reduction = "mean",
  ignoreIndex = -100,
): Tensor {
  return wrap(
    raw().nll_loss(logProbs.ptr, target.ptr, null, reductionCode(reduction), ignoreIndex),
  );
}

/** KL divergence with `input` as log-probabilities (as `F.kl_div`). */
export function klDiv(
  input: Tensor,
  target: Tensor,
  reduction: Reduction | "batchmean" = "mean",
  logTarget = false,
): Tensor {
  if (reduction === "batchmean") {
    using s = wrap(raw().kl_div(input.ptr, target.ptr, reductionCode("sum"), logTarget));
    return s.div(input.shape[0]);
  }
  return wrap(raw().kl_div(input.ptr, target.ptr, reductionCode(reduction), logTarget));
}

export function mseLoss(input: Tensor, target: Tensor, reduction: Reduction = "mean"): Tensor {
  return wrap(raw().mse_loss(input.ptr, target.ptr, reductionCode(reduction)));
}

export function binaryCrossEntropyWithLogits(
  input: Tensor,
  target: Tensor,
  reduction: Reduction = "mean",
): Tensor {
  return wrap(raw().bce_with_logits(input.ptr, target.ptr, reductionCode(reduction)));
}

/** `x / max(‖x‖_p, eps)` along `dim` (as `F.normalize`). */
export function normalize(x: Tensor, p = 2, dim = 1, eps = 1e-12): Tensor {
  return wrap(raw().normalize(x.ptr, p, dim, eps));
}

export function cosineSimilarity(a: Tensor, b: Tensor, dim = 1, eps = 1e-8): Tensor {
  return wrap(raw().cosine_similarity(a.ptr, b.ptr, dim, eps));
}

export function oneHot(x: Tensor, numClasses: number): Tensor {
  return x.oneHot(numClasses);
}
