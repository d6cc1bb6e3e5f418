/**
 * Data for the tasks: opens the dataset a config names (providing Fashion-MNIST into the project
 * cache when no root is given), adapts the shim-backed `Loader` to the trainer's `TwoViewSource`,
 * and builds normalised in-memory splits for kNN and probes.
 */
import { join } from "node:path";
import { cacheDir } from "../ffi/paths.ts";
import {
  type Batch,
  type Dataset,
  type EpochSummary,
  holdOut,
  ImageFolder,
  loadCifar10,
  loadCifar100,
  Loader,
  type LoaderOptions,
  loadMnist,
  loadStl10,
  provideFashionMnist,
  type Recipe,
  recipe,
  Subset,
  subset,
  TensorDataset,
} from "../data/mod.ts";
import { ConfigError } from "../config/schema.ts";
import { noGrad } from "../autograd.ts";
import { scope } from "../scope.ts";
import { cat, type Tensor, tensor } from "../tensor.ts";
import type { LabeledSplit, TwoViews, TwoViewSource } from "./source.ts";

/** Dataset settings shared by the task configs. */
export interface DataSettings {
  dataset: string;
  root: string;
  subset: number;
}

/** Opens a split; an empty root for Fashion-MNIST provides it into the project cache. */
export async function openDataset(
  d: DataSettings,
  split: "train" | "test",
  log: (msg: string) => void = console.error,
): Promise<Dataset> {
  let root = d.root;
  if (!root && d.dataset === "fashion-mnist") {
    const provided = await provideFashionMnist({ log });
    root = provided.dir;
  } else if (!root && d.dataset === "mnist") {
    root = join(cacheDir(), "datasets", "mnist");
  }
  if (!root) throw new ConfigError(`'data.root' is required for dataset '${d.dataset}'`);
  let ds: Dataset;
  switch (d.dataset) {
    case "fashion-mnist":
    case "mnist":
      ds = await loadMnist(root, { split, variant: d.dataset });
      break;
    case "cifar10":
      ds = await loadCifar10(root, { split });
      break;
    case "cifar100":
      ds = await loadCifar100(root, { split });
      break;
    case "stl10":
      ds = await loadStl10(root, { split: split === "train" ? "train+unlabeled" : "test" });
      break;
    case "imagefolder":
      ds = new ImageFolder(join(root, split === "train" ? "train" : "val"));
      break;
    default:
      throw new ConfigError(
        `'data.dataset: ${d.dataset}' is not wired into the tasks yet (use fashion-mnist, mnist, ` +
          `cifar10, cifar100, stl10 or imagefolder; LMDB and RecordIO are readable from lib/data)`,
      );
  }
  if (split === "train" && d.subset > 0) {
    if (d.subset >= 1 && Math.floor(d.subset) > ds.size) {
      const size = ds.size;
      ds.dispose();
      throw new ConfigError(
        `'data.subset' asks for ${Math.floor(d.subset)} images but ${ds.name} has ${size}`,
      );
    }
    const opts = d.subset < 1
      ? { fraction: d.subset, seed: 0 }
      : { count: Math.floor(d.subset), seed: 0 };
    // The task holds only the subset: disposing it frees the whole split (a subset owns nothing).
    const part = subset(ds, opts);
    part.dispose = () => ds.dispose();
    return part;
  }
  return ds;
}

/** The shim-backed loader as the trainer's two-view source. */
export class LoaderSource implements TwoViewSource {
  #it: globalThis.Generator<Batch, EpochSummary> | null = null;
  constructor(readonly loader: Loader) {}
  get stepsPerEpoch(): number {
    return this.loader.batchesPerEpoch;
  }
  get batchSize(): number {
    return this.loader.batchSize;
  }
  get waitSeconds(): number {
    return this.loader.totalWaitMs / 1000;
  }
  startEpoch(epoch: number, skip: number): void {
    this.#it?.return(undefined as unknown as EpochSummary);
    this.#it = this.loader.epoch(epoch, { skip });
  }
  next(): Promise<TwoViews | null> {
    const r = this.#it?.next();
    if (!r || r.done) return Promise.resolve(null);
    const b = r.value;
    b.labels.dispose();
    b.indices.dispose();
    const [a, v] = b.views;
    if (!v) {
      throw new ConfigError(
        "the recipe yields one view; contrastive pretraining needs a two-view recipe",
      );
    }
    return Promise.resolve({ a, b: v });
  }
  close(): void {
    this.#it?.return(undefined as unknown as EpochSummary);
    this.#it = null;
    this.loader.dispose();
  }
}

/**
 * The recipe `name` for `ds`: `_small` recipes take the dataset's statistics and `size`; a
 * positive `cropMin` overrides the recipe's smallest crop area and `jitter` scales its colour
 * jitter (1 keeps it).
 */
export function recipeFor(
  ds: Dataset,
  name: string,
  size: number,
  cropMin = 0,
  jitter = 1,
): Recipe {
  const small = name.endsWith("_small");
  return recipe(name, {
    size,
    stats: small ? ds.stats : undefined,
    ...(cropMin > 0 ? { cropMin } : {}),
    jitter,
  });
}

/** The loader settings of a task's `data` section. */
export interface LoaderSettings {
  recipe: string;
  image_size: number;
  crop_min: number;
  jitter: number;
  batch_size: number;
  workers: number;
}

/**
 * The training loader a task's `data` section describes (recipe, size, smallest crop, batch,
 * threads), sharded for `rank` of `worldSize`.
 */
export function taskLoader(
  ds: Dataset,
  d: LoaderSettings,
  o: Pick<LoaderOptions, "seed" | "rank" | "worldSize" | "device">,
): Loader {
  return new Loader(ds, {
    batchSize: d.batch_size,
    recipe: recipeFor(ds, d.recipe, d.image_size, d.crop_min, d.jitter),
    threads: d.workers,
    ...o,
  });
}

/**
 * A labelled split as normalised float images in memory (for kNN and probes): in-memory datasets
 * are normalised directly (`limit` caps the count, seeded); others go through the eval recipe.
 */
export function labeledSplit(ds: Dataset, limit = 0, size?: number): LabeledSplit {
  const n = limit > 0 ? Math.min(limit, ds.size) : ds.size;
  // In-memory images (or a subset of them) at their own size: gathered and normalised at once.
  let root = ds;
  while (root instanceof Subset) root = root.parent;
  if (root instanceof TensorDataset && (!size || size === root.imageSize)) {
    const stats = root.stats ?? { mean: [0.5], std: [0.5] };
    const at = Array.from({ length: n }, (_, i) => i === 0 ? 0 : Math.floor((i * ds.size) / n));
    return noGrad(() =>
      scope(() => {
        const idx = tensor(at.map((i) => ds.sourceIndex(i)), [n], { dtype: "int64" });
        const x = root.images.indexSelect(0, idx).to("float32").div(255);
        const c = root.channels;
        const mean = tensor(stats.mean.slice(0, c), [1, c, 1, 1]);
        const std = tensor(stats.std.slice(0, c), [1, c, 1, 1]);
        const labels = tensor(at.map((i) => ds.label(i)), [n], { dtype: "int64" });
        return {
          images: x.sub(mean).div(std).keep(),
          labels: labels.keep(),
          numClasses: ds.classes.length,
          stats: { mean: stats.mean.slice(0, c), std: stats.std.slice(0, c) },
        };
      })
    );
  }
  // Small in-memory images (and their subsets) are evaluated as they are; others resized and
  // centre-cropped with ImageNet statistics.
  const small = ds.imageSize !== undefined && ds.imageSize <= 64;
  const evalRecipe = recipeFor(
    ds,
    small ? "eval_small" : "eval",
    size ?? (small ? ds.imageSize! : 224),
  );
  const stats = evalRecipe.views[0].normalize;
  const loader = new Loader(ds, {
    batchSize: 256,
    recipe: evalRecipe,
    shuffle: false,
    dropLast: false,
  });
  const images: Tensor[] = [];
  const labels: Tensor[] = [];
  try {
    let count = 0;
    for (const b of loader.epoch(0)) {
      images.push(b.views[0]);
      labels.push(b.labels);
      b.indices.dispose();
      count += b.labels.shape[0];
      if (count >= n) break;
    }
    return scope(() => ({
      images: cat(images).narrow(0, 0, Math.min(n, count)).contiguous().keep(),
      labels: cat(labels).narrow(0, 0, Math.min(n, count)).contiguous().keep(),
      numClasses: ds.classes.length,
      ...(stats
        ? {
          stats: { mean: stats.mean.slice(0, ds.channels), std: stats.std.slice(0, ds.channels) },
        }
        : {}),
    }));
  } finally {
    for (const t of [...images, ...labels]) t.dispose();
    loader.dispose();
  }
}

/** The seed of the held-out monitor split: the same images whatever the run's seed. */
const HOLDOUT_SEED = 1;

/**
 * Splits `count` seeded images off training set `ds` (0: none) as the kNN monitor's queries; the
 * run trains on the rest. Disposing the returned `train` frees `ds`.
 */
export function withHoldout(
  ds: Dataset,
  count: number,
): { train: Dataset; heldOut: Dataset | null } {
  if (!count) return { train: ds, heldOut: null };
  if (count >= ds.size) {
    const size = ds.size;
    ds.dispose();
    throw new ConfigError(
      `'run.knn_holdout' holds out ${count} images but ${ds.name} has ${size}; leave some to train on`,
    );
  }
  const { rest, held } = holdOut(ds, count, HOLDOUT_SEED);
  rest.dispose = () => ds.dispose();
  return { train: rest, heldOut: held };
}

/** Throws a ConfigError naming `model.in_channels` unless the dataset's images have that many. */
export function assertConfiguredChannels(inChannels: number, ds: Dataset): void {
  if (ds.channels !== inChannels) {
    throw new ConfigError(
      `'model.in_channels' is ${inChannels} but ${ds.name} has ${ds.channels}-channel images`,
    );
  }
}
