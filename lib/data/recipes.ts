/**
 * Augmentation recipes by name (spec §4.1), each a list of views: two for the contrastive
 * recipes, one otherwise. The `_small` variants are for 28–32 px datasets (Fashion-MNIST, MNIST,
 * CIFAR): no blur, milder crops, and jitter that is grayscale-appropriate by construction
 * (saturation, hue and grayscale are no-ops on one channel).
 *
 * Deliberate differences from the reference:
 * - Solarize is one coin per image (the reference's GPU path flips one coin per batch: D3).
 * - Hue jitter is a fraction of the colour wheel as in torchvision (0.1 = ±36°); the DALI path
 *   passed 0.1 as degrees, i.e. no hue jitter (D5).
 * - `supervised` omits the reference's `Lighting(0.1)`, which is a near no-op (D16).
 * - Blur uses a kernel of 2·ceil(3σ)+1 taps (PIL's GaussianBlur(radius=σ) has no kernel size).
 */
import { type AugmentConfig, baseConfig } from "./augment.ts";

/** Per-channel normalisation statistics. */
export interface Stats {
  mean: readonly number[];
  std: readonly number[];
}

/** ImageNet mean and std (spec §4.1). */
export const IMAGENET_STATS: Stats = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/** A named list of views. */
export interface Recipe {
  name: string;
  views: AugmentConfig[];
}

/** Options of `recipe()`. */
export interface RecipeOptions {
  /** Output size (224 for the ImageNet recipes; the dataset's side for `_small`, default 28). */
  size?: number;
  /** Normalisation statistics (ImageNet by default; pass the dataset's for `_small`). */
  stats?: Stats;
  /** MoCo v3's crop_min (0.08 by default; 0.2 for mocov3_small). */
  cropMin?: number;
  /** Output channels (0 keeps the input's). */
  channels?: 0 | 1 | 3;
  /**
   * Colour-jitter strength (SimCLR's `s`): multiplies every view's brightness, contrast,
   * saturation and hue ranges; 0 turns jitter off; 1 (default) keeps the recipe's.
   */
  jitter?: number;
}

/** Recipe options with defaults filled in, as the view builders see them (jitter applies after). */
type BuildOptions = Required<Omit<RecipeOptions, "jitter">>;

type Builder = (o: BuildOptions) => AugmentConfig[];

const jitter = (p: number, b: number, c: number, s: number, h: number) => ({
  p,
  brightness: b,
  contrast: c,
  saturation: s,
  hue: h,
});

function rrc(o: BuildOptions, scale: readonly [number, number]): AugmentConfig {
  return {
    ...baseConfig(o.size),
    mode: "rrc",
    scale,
    flip: 0.5,
    normalize: o.stats,
    channels: o.channels,
  };
}

function contrastive(
  o: BuildOptions,
  scale: readonly [number, number],
  j: ReturnType<typeof jitter>,
  blurP: number,
  solarizeP = 0,
): AugmentConfig {
  const v = rrc(o, scale);
  return {
    ...v,
    jitter: j,
    grayscale: 0.2,
    blur: { ...v.blur, p: blurP },
    solarize: { ...v.solarize, p: solarizeP },
  };
}

const RECIPES: Record<string, Builder> = {
  mocov2: (o) => {
    const v = contrastive(o, [0.2, 1], jitter(0.8, 0.4, 0.4, 0.4, 0.1), 0.5);
    return [v, v];
  },
  mocov3: (o) => [
    contrastive(o, [o.cropMin, 1], jitter(0.8, 0.4, 0.4, 0.2, 0.1), 1.0),
    contrastive(o, [o.cropMin, 1], jitter(0.8, 0.4, 0.4, 0.2, 0.1), 0.1, 0.2),
  ],
  simclr: (o) => {
    const v = contrastive(o, [0.08, 1], jitter(0.8, 0.8, 0.8, 0.8, 0.2), 0.5);
    return [v, v];
  },
  supervised: (o) => [{ ...rrc(o, [0.08, 1]), jitter: jitter(1, 0.4, 0.4, 0.4, 0) }],
  linear: (o) => [rrc(o, [0.08, 1])],
  eval: (o) => [{
    ...baseConfig(o.size),
    mode: "resize_crop",
    resize: Math.round((o.size * 256) / 224),
    normalize: o.stats,
    channels: o.channels,
  }],
  mocov2_small: (o) => {
    const v = contrastive(o, [o.cropMin, 1], jitter(0.8, 0.4, 0.4, 0.4, 0.1), 0);
    return [v, v];
  },
  mocov3_small: (o) => [
    contrastive(o, [o.cropMin, 1], jitter(0.8, 0.4, 0.4, 0.2, 0.1), 0),
    contrastive(o, [o.cropMin, 1], jitter(0.8, 0.4, 0.4, 0.2, 0.1), 0, 0.2),
  ],
  simclr_small: (o) => {
    const v = contrastive(o, [0.08, 1], jitter(0.8, 0.4, 0.4, 0.4, 0.1), 0);
    return [v, v];
  },
  supervised_small: (o) => [{ ...rrc(o, [0.35, 1]), jitter: jitter(1, 0.4, 0.4, 0.4, 0) }],
  linear_small: (o) => [rrc(o, [0.5, 1])],
  eval_small: (o) => [{ ...baseConfig(o.size), normalize: o.stats, channels: o.channels }],
};

/** Names `recipe()` accepts. */
export const RECIPE_NAMES: readonly string[] = Object.keys(RECIPES);

/** Builds a recipe by name (`mocov2`, `mocov3`, `simclr`, `supervised`, `linear`, `eval`, and `_small`). */
export function recipe(name: string, opts: RecipeOptions = {}): Recipe {
  const build = RECIPES[name];
  if (!build) {
    throw new RangeError(`unknown recipe '${name}' (expected one of ${RECIPE_NAMES.join(", ")})`);
  }
  const small = name.endsWith("_small");
  const o: BuildOptions = {
    size: opts.size ?? (small ? 28 : 224),
    stats: opts.stats ?? IMAGENET_STATS,
    cropMin: opts.cropMin ?? (small ? 0.2 : 0.08),
    channels: opts.channels ?? 0,
  };
  const s = opts.jitter ?? 1;
  if (!(s >= 0)) throw new RangeError(`jitter strength must be ≥ 0 (got ${opts.jitter})`);
  const views = s === 1 ? build(o) : build(o).map((v) => ({
    ...v,
    jitter: {
      ...v.jitter,
      p: s === 0 ? 0 : v.jitter.p,
      brightness: v.jitter.brightness * s,
      contrast: v.jitter.contrast * s,
      saturation: v.jitter.saturation * s,
      hue: Math.min(0.5, v.jitter.hue * s),
    },
  }));
  return { name, views };
}
