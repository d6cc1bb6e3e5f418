/** MNIST and Fashion-MNIST from their IDX files (plain or .gz). */
import { join } from "node:path";
import { existsSync } from "node:fs";
import { fromBytes } from "../tensor.ts";
import { DataError, requireDir } from "./errors.ts";
import { readIdx } from "./idx.ts";
import { TensorDataset } from "./tensor_dataset.ts";
import type { Stats } from "./recipes.ts";

/** Which IDX dataset. */
export type MnistVariant = "mnist" | "fashion-mnist";

const CLASSES: Record<MnistVariant, readonly string[]> = {
  mnist: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
  "fashion-mnist": [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
  ],
};

/** Training-set pixel statistics (in [0, 1]). */
export const MNIST_STATS: Record<MnistVariant, Stats> = {
  mnist: { mean: [0.1307], std: [0.3081] },
  "fashion-mnist": { mean: [0.2860], std: [0.3530] },
};

/** Options of `loadMnist`. */
export interface MnistOptions {
  split?: "train" | "test";
  variant?: MnistVariant;
}

/** Finds `<stem>` or `<stem>.gz` in `root` or `root/raw` (torchvision's layout). */
function findIdx(root: string, stem: string): string {
  for (const dir of [root, join(root, "raw")]) {
    for (const name of [stem, `${stem}.gz`]) {
      const p = join(dir, name);
      if (existsSync(p)) return p;
    }
  }
  throw new DataError(join(root, stem), `file not found (expected ${stem} or ${stem}.gz)`);
}

/** Loads MNIST or Fashion-MNIST (`train`: 60 000 images, `test`: 10 000) into memory. */
export async function loadMnist(root: string, opts: MnistOptions = {}): Promise<TensorDataset> {
  const { split = "train", variant = "fashion-mnist" } = opts;
  requireDir(root, `the ${variant} IDX files`);
  const prefix = split === "train" ? "train" : "t10k";
  const imgPath = findIdx(root, `${prefix}-images-idx3-ubyte`);
  const lblPath = findIdx(root, `${prefix}-labels-idx1-ubyte`);
  const [img, lbl] = await Promise.all([readIdx(imgPath), readIdx(lblPath)]);
  if (img.dims.length !== 3) {
    throw new DataError(imgPath, `expected 3 dimensions (N, 28, 28), found ${img.dims.join("×")}`);
  }
  if (lbl.dims.length !== 1 || lbl.dims[0] !== img.dims[0]) {
    throw new DataError(lblPath, `expected ${img.dims[0]} labels, found ${lbl.dims.join("×")}`);
  }
  const labels = Int32Array.from(lbl.data);
  const bad = labels.findIndex((l) => l > 9);
  if (bad >= 0) throw new DataError(lblPath, `label ${labels[bad]} at ${bad} is not in 0..9`);
  const [n, h, w] = img.dims;
  const images = fromBytes(img.data, "uint8", [n, 1, h, w]).keep();
  return new TensorDataset(
    `${variant}/${split}`,
    images,
    labels,
    CLASSES[variant],
    MNIST_STATS[variant],
  );
}
