/**
 * Batched augmentation in the shim: per-sample random parameters from a seeded stream per
 * (seed, sample key, view), applied to whole batches by C++ loops over the batch. JavaScript
 * never touches pixels.
 */
import { raw, type Tensor, tensor, wrap } from "../tensor.ts";

/** Colour jitter with torchvision semantics; `hue` is a fraction of the colour wheel (≤ 0.5). */
export interface JitterConfig {
  p: number;
  brightness: number;
  contrast: number;
  saturation: number;
  hue: number;
}

/** Everything one view does to an image, in torchvision's order. */
export interface AugmentConfig {
  /** Output side (square). */
  size: number;
  /** rrc: RandomResizedCrop; resize_crop: Resize(`resize`) + CenterCrop; whole: resize all. */
  mode: "rrc" | "resize_crop" | "whole";
  /** RandomResizedCrop area fraction and aspect-ratio ranges. */
  scale: readonly [number, number];
  ratio: readonly [number, number];
  /** Shorter side for `resize_crop`. */
  resize: number;
  /** Horizontal flip probability. */
  flip: number;
  jitter: JitterConfig;
  /** RandomGrayscale probability. */
  grayscale: number;
  /** Gaussian blur: probability, σ range, kernel size (odd; 0 = 2·ceil(3σ)+1). */
  blur: { p: number; sigma: readonly [number, number]; kernel: number };
  /** Solarize: probability (one coin per image) and threshold in [0, 1]. */
  solarize: { p: number; threshold: number };
  /** Per-channel mean and std, or null for none. */
  normalize: { mean: readonly number[]; std: readonly number[] } | null;
  /** Output channels: 1, 3, or 0 for the input's. */
  channels: 0 | 1 | 3;
  /** Decode JPEGs at a DCT downscale and only the crop's region when the crop allows it. */
  fastDecode: boolean;
}

/** A view that does nothing but resize the whole image to `size`. */
export function baseConfig(size: number): AugmentConfig {
  return {
    size,
    mode: "whole",
    scale: [0.08, 1],
    ratio: [3 / 4, 4 / 3],
    resize: size,
    flip: 0,
    jitter: { p: 0, brightness: 0, contrast: 0, saturation: 0, hue: 0 },
    grayscale: 0,
    blur: { p: 0, sigma: [0.1, 2], kernel: 0 },
    solarize: { p: 0, threshold: 128 / 255 },
    normalize: null,
    channels: 0,
    fastDecode: true,
  };
}

const MODES = { rrc: 0, resize_crop: 1, whole: 2 } as const;
/** Length of the native config (`Cfg` in ffi/data.hpp). */
export const CONFIG_LENGTH = 30;

/** The f64[] layout that `ffi/data.hpp` reads (keep in step with its `Cfg` enum). */
export function configArray(c: AugmentConfig): number[] {
  if (!(c.mode in MODES)) throw new RangeError(`unknown augmentation mode '${c.mode}'`);
  const m = c.normalize?.mean ?? [0, 0, 0];
  const s = c.normalize?.std ?? [1, 1, 1];
  const three = (xs: readonly number[]) => (xs.length === 1 ? [xs[0], xs[0], xs[0]] : [...xs]);
  const out = [
    1,
    c.size,
    MODES[c.mode],
    c.scale[0],
    c.scale[1],
    c.ratio[0],
    c.ratio[1],
    c.resize,
    c.flip,
    c.jitter.p,
    c.jitter.brightness,
    c.jitter.contrast,
    c.jitter.saturation,
    c.jitter.hue,
    c.grayscale,
    c.blur.p,
    c.blur.sigma[0],
    c.blur.sigma[1],
    c.blur.kernel,
    c.solarize.p,
    c.solarize.threshold,
    c.normalize ? 1 : 0,
    ...three(m),
    ...three(s),
    c.channels,
    c.fastDecode ? 1 : 0,
  ];
  if (out.length !== CONFIG_LENGTH) throw new Error("augmentation config layout out of step");
  return out;
}

/** Column names of a sampled parameter row (`Par` in ffi/data.hpp). */
export const PARAM_FIELDS = [
  "y0",
  "x0",
  "h",
  "w",
  "vh",
  "vw",
  "oy",
  "ox",
  "flip",
  "jitter",
  "brightness",
  "contrast",
  "saturation",
  "hue",
  "order",
  "gray",
  "sigma",
  "solarize",
] as const;

/** Options of sampling: the seed, the stream key of each image (default 0..N-1), the view. */
export interface SampleOptions {
  seed: number;
  keys?: readonly number[];
  view?: number;
}

/**
 * Samples parameter rows (float64 [N, 18], columns `PARAM_FIELDS`) for images of the given
 * (height, width) sizes. The crop box is in source pixels.
 */
export function sampleParams(
  sizes: readonly (readonly [number, number])[],
  cfg: AugmentConfig,
  opts: SampleOptions,
): Tensor {
  const n = sizes.length;
  using s = tensor(sizes.flat(), [n, 2], { dtype: "int64" });
  using k = tensor(opts.keys ? [...opts.keys] : Array.from({ length: n }, (_, i) => i), [n], {
    dtype: "int64",
  });
  return wrap(raw().data_aug_sample(s.ptr, configArray(cfg), opts.seed, k.ptr, opts.view ?? 0));
}

/** Applies parameter rows to a batch [N, C, H, W] (uint8, or float in [0, 1]) -> float. */
export function applyParams(images: Tensor, params: Tensor, cfg: AugmentConfig): Tensor {
  return wrap(raw().data_aug_apply(images.ptr, params.ptr, configArray(cfg)));
}

/** Samples and applies one view to a batch: float [N, C', size, size]. */
export function augment(images: Tensor, cfg: AugmentConfig, opts: SampleOptions): Tensor {
  const [n, , h, w] = images.shape;
  const sizes = Array.from({ length: n }, () => [h, w] as const);
  using p = sampleParams(sizes, cfg, opts);
  return applyParams(images, p, cfg);
}
