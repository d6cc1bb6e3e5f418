/** STL-10 binary (`stl10_binary/`): 96×96 colour images, column-major on disk. */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { scope } from "../scope.ts";
import { cat, fromBytes, type Tensor } from "../tensor.ts";
import { DataError, requireDir, requireFile } from "./errors.ts";
import type { Stats } from "./recipes.ts";
import { TensorDataset } from "./tensor_dataset.ts";

const STL_CLASSES = [
  "airplane",
  "bird",
  "car",
  "cat",
  "deer",
  "dog",
  "horse",
  "monkey",
  "ship",
  "truck",
];
const IMAGE_BYTES = 3 * 96 * 96;

/** Pixel statistics of the train+unlabeled images. */
export const STL10_STATS: Stats = { mean: [0.4467, 0.4398, 0.4066], std: [0.2603, 0.2566, 0.2713] };

/** STL-10 splits; `unlabeled` samples have label -1. */
export type Stl10Split = "train" | "test" | "unlabeled" | "train+unlabeled";

async function readImages(path: string): Promise<Tensor> {
  requireFile(path, `STL-10 images (N × ${IMAGE_BYTES} bytes)`);
  const b = await Deno.readFile(path);
  if (b.length === 0 || b.length % IMAGE_BYTES !== 0) {
    throw new DataError(
      path,
      `${b.length} bytes is not a whole number of ${IMAGE_BYTES}-byte images (truncated?)`,
    );
  }
  const n = b.length / IMAGE_BYTES;
  // Stored column-major per channel: swap the last two axes (as torchvision does).
  return scope(() => fromBytes(b, "uint8", [n, 3, 96, 96]).transpose(2, 3).contiguous()).keep();
}

async function readLabels(path: string, n: number): Promise<Int32Array> {
  requireFile(path, `STL-10 labels (one byte 1..10 per image)`);
  const b = await Deno.readFile(path);
  if (b.length !== n) throw new DataError(path, `expected ${n} labels, found ${b.length}`);
  const out = Int32Array.from(b, (v) => v - 1);
  const bad = out.findIndex((l) => l < 0 || l > 9);
  if (bad >= 0) throw new DataError(path, `label ${b[bad]} at ${bad} is not in 1..10`);
  return out;
}

async function readSplit(dir: string, split: "train" | "test" | "unlabeled") {
  const images = await readImages(join(dir, `${split}_X.bin`));
  const n = images.shape[0];
  const labels = split === "unlabeled"
    ? new Int32Array(n).fill(-1)
    : await readLabels(join(dir, `${split}_y.bin`), n).catch((e) => {
      images.dispose();
      throw e;
    });
  return { images, labels };
}

/** Loads an STL-10 split into memory (`unlabeled` is 100 000 images, about 2.8 GB). */
export async function loadStl10(
  root: string,
  opts: { split?: Stl10Split } = {},
): Promise<TensorDataset> {
  requireDir(root, "the STL-10 binary files (or a stl10_binary folder)");
  const dir = existsSync(join(root, "stl10_binary")) ? join(root, "stl10_binary") : root;
  const split = opts.split ?? "train";
  const parts = split === "train+unlabeled" ? ["train", "unlabeled"] as const : [split] as const;
  const read = [];
  for (const p of parts) read.push(await readSplit(dir, p));
  const images = read.length === 1 ? read[0].images : catAndFree(read.map((r) => r.images));
  const labels = read.length === 1 ? read[0].labels : concatLabels(read.map((r) => r.labels));
  const namesPath = join(dir, "class_names.txt");
  const classes = existsSync(namesPath)
    ? Deno.readTextFileSync(namesPath).split("\n").map((s) => s.trim()).filter(Boolean)
    : STL_CLASSES;
  return new TensorDataset(`stl10/${split}`, images, labels, classes, STL10_STATS);
}

/** Concatenates image tensors along the batch axis and frees the parts. */
function catAndFree(parts: Tensor[]): Tensor {
  try {
    return cat(parts, 0).keep();
  } finally {
    for (const p of parts) p.dispose();
  }
}

function concatLabels(parts: Int32Array[]): Int32Array {
  const out = new Int32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
