/** Schema pieces shared by the tasks' configs, so each setting is declared once. */
import { ConfigError, f } from "./schema.ts";
import { type Stem, stemDownsampling, STEMS } from "../models/resnet.ts";
import { RECIPE_NAMES } from "../data/recipes.ts";

/** Datasets the tasks can open (see `lib/train/data.ts`). */
export const DATASETS = [
  "fashion-mnist",
  "mnist",
  "cifar10",
  "cifar100",
  "stl10",
  "imagefolder",
] as const;

/** Backbones. */
export const ARCHS = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"] as const;

/** The `data` section; `recipe` and `batch_size` defaults differ per task. */
export function dataSection(recipe: string, batchSize: number) {
  return {
    dataset: f.str("fashion-mnist", "dataset", DATASETS),
    root: f.str("", "dataset folder (empty: the project cache for fashion-mnist)"),
    recipe: f.str(recipe, "augmentation recipe", RECIPE_NAMES),
    crop_min: f.num(0, "smallest random-resized-crop area (0: the recipe's own)", {
      min: 0,
      max: 1,
    }),
    jitter: f.num(
      1,
      "colour-jitter strength: scales the recipe's brightness, contrast, saturation and hue ranges (0: off)",
      { min: 0 },
    ),
    image_size: f.int(28, "crop size", { min: 8 }),
    batch_size: f.int(batchSize, "batch size per process", { min: 1 }),
    subset: f.num(0, "use a seeded subset: a fraction (<1) or a count (≥1); 0 uses everything", {
      min: 0,
    }),
    workers: f.int(2, "augmentation threads", { min: 1 }),
  };
}

/** The backbone part of a `model` section. */
export function backboneFields() {
  return {
    arch: f.str("resnet18", "backbone", ARCHS),
    stem: f.str(
      "small",
      "stem: imagenet (7×7/2 + max-pool), small (3×3/1) or small_s2 (3×3/2, for 28–64 px)",
      STEMS,
    ),
    in_channels: f.int(1, "input channels", { min: 1 }),
    base_width: f.int(16, "channels of the stem at width 1 (64 in the paper)", { min: 4 }),
    widths: f.nums(
      [1, 0.75, 0.5, 0.25],
      "widths, strictly descending; one width trains the plain network",
      {
        min: 0.01,
        max: 1,
      },
    ),
  };
}

/** Where a training task runs. */
export const deviceField = () =>
  f.str("auto", "device (auto: CUDA when available)", ["auto", "cpu", "cuda"]);

/** Mixed precision of a training task. */
export const ampField = () =>
  f.str(
    "none",
    "mixed precision: bf16 (CPU or CUDA), fp16 with loss scaling (CUDA), or auto (fp16 on CUDA, bf16 on a CPU with native bf16, else none)",
    ["none", "auto", "bf16", "fp16"],
  );

/**
 * Checks the backbone and run settings every training task shares: strictly descending widths, a
 * crop the stem can downsample, and fp16 only off the CPU.
 */
export function validateBackboneAndRun(c: {
  model: { widths: readonly number[]; stem: string };
  data: { image_size: number };
  run: { amp: string; device: string };
}): void {
  const w = c.model.widths;
  if (!w.length) throw new ConfigError("'model.widths' must list at least one width");
  for (let i = 1; i < w.length; i++) {
    if (!(w[i] < w[i - 1])) {
      throw new ConfigError(`'model.widths' must be strictly descending, got [${w}]`);
    }
  }
  const down = stemDownsampling(c.model.stem as Stem);
  if (c.data.image_size < down) {
    throw new ConfigError(
      `'model.stem: ${c.model.stem}' downsamples ${down}×; 'data.image_size' ${c.data.image_size} ` +
        `is too small${c.model.stem === "small" ? "" : " (use stem small)"}`,
    );
  }
  if (c.run.amp === "fp16" && c.run.device === "cpu") {
    throw new ConfigError("'run.amp: fp16' needs CUDA; use 'run.amp: bf16' on the CPU");
  }
}

/** LibTorch threads. */
export const threadsField = () => f.int(0, "LibTorch threads (0: all cores)", { min: 0 });
/** The random seed. */
export const seedField = () => f.int(0, "random seed", { min: 0 });

/** The learning-rate decay fields (`decay`, `milestones`) of every training task. */
export function decayFields() {
  return {
    decay: f.str("cosine", "learning-rate decay", ["cosine", "step"]),
    milestones: f.nums([], "step decay: epochs where the rate is multiplied by 0.1", { min: 0 }),
  };
}

/** The `schedule` section of pretraining and supervised training. */
export function scheduleSection() {
  return {
    epochs: f.num(1, "training epochs (may be fractional)", { min: 0.001 }),
    warmup_epochs: f.num(0, "linear warm-up epochs", { min: 0 }),
    ...decayFields(),
  };
}

/** The learning-rate schedule fields every training task's config shares. */
export interface ScheduleSettings {
  epochs: number;
  warmup_epochs: number;
  decay: string;
  milestones: readonly number[];
}

/**
 * Checks a schedule no single field can: warm-up shorter than training, step decay with strictly
 * ascending milestones inside training, and no milestones under cosine decay (they would be
 * ignored). `section` names the keys in errors (e.g. "schedule", "probe").
 */
export function validateSchedule(s: ScheduleSettings, section = "schedule"): void {
  const key = (k: string) => `'${section}.${k}'`;
  if (s.warmup_epochs >= s.epochs) {
    throw new ConfigError(`${key("warmup_epochs")} must be shorter than ${key("epochs")}`);
  }
  if (s.decay !== "step") {
    if (s.milestones.length) {
      throw new ConfigError(
        `${key("milestones")} [${s.milestones}] apply to ${
          key("decay")
        }: step only, not ${s.decay}`,
      );
    }
    return;
  }
  if (!s.milestones.length) {
    throw new ConfigError(
      `${key("decay")}: step needs ${key("milestones")} (epochs where the rate drops tenfold)`,
    );
  }
  s.milestones.forEach((m, i) => {
    if (i > 0 && !(m > s.milestones[i - 1])) {
      throw new ConfigError(`${key("milestones")} must be ascending, got [${s.milestones}]`);
    }
    if (!(m > 0 && m < s.epochs)) {
      throw new ConfigError(
        `${key("milestones")}: ${m} is not inside training (0 < milestone < ${
          key("epochs")
        } ${s.epochs})`,
      );
    }
  });
}
