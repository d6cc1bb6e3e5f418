/** CIFAR-10 and CIFAR-100 in their binary formats (`cifar-10-batches-bin`, `cifar-100-binary`). */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { scope } from "../scope.ts";
import { fromBytes } from "../tensor.ts";
import { DataError, requireDir, requireFile } from "./errors.ts";
import type { Stats } from "./recipes.ts";
import { TensorDataset } from "./tensor_dataset.ts";
import { CIFAR100_CLASSES } from "./cifar100_classes.ts";

const CIFAR10_CLASSES = [
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
];

/** Training-set pixel statistics. */
export const CIFAR_STATS: Record<"cifar10" | "cifar100", Stats> = {
  cifar10: { mean: [0.4914, 0.4822, 0.4465], std: [0.2470, 0.2435, 0.2616] },
  cifar100: { mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762] },
};

const PIXELS = 3 * 32 * 32;

/** Options of the CIFAR loaders. */
export interface CifarOptions {
  split?: "train" | "test";
}

function classNames(path: string, fallback: readonly string[]): readonly string[] {
  if (!existsSync(path)) return fallback;
  const names = Deno.readTextFileSync(path).split("\n").map((s) => s.trim()).filter(Boolean);
  if (names.length !== fallback.length) {
    throw new DataError(path, `expected ${fallback.length} class names, found ${names.length}`);
  }
  return names;
}

/** Reads record files of `labelBytes` label bytes + 3072 pixels; `labelAt` picks the label byte. */
async function readRecords(
  files: string[],
  labelBytes: number,
  labelAt: number,
  numClasses: number,
) {
  const rec = labelBytes + PIXELS;
  const parts: Uint8Array<ArrayBuffer>[] = [];
  for (const f of files) {
    requireFile(f, `a CIFAR binary batch of ${rec}-byte records`);
    const b = await Deno.readFile(f);
    if (b.length === 0 || b.length % rec !== 0) {
      throw new DataError(
        f,
        `${b.length} bytes is not a whole number of ${rec}-byte records (truncated or not CIFAR)`,
      );
    }
    parts.push(b);
  }
  const all = parts.length === 1 ? parts[0] : new Uint8Array(await new Blob(parts).arrayBuffer());
  const n = all.length / rec;
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) labels[i] = all[i * rec + labelAt];
  const bad = labels.findIndex((l) => l >= numClasses);
  if (bad >= 0) {
    throw new DataError(
      files[0],
      `label ${labels[bad]} of record ${bad} is not below ${numClasses}`,
    );
  }
  const images = scope(() => {
    const t = fromBytes(all, "uint8", [n, rec]);
    return t.narrow(1, labelBytes, PIXELS).reshape(n, 3, 32, 32).contiguous();
  }).keep();
  return { images, labels };
}

function resolve(root: string, sub: string): string {
  requireDir(root, `the CIFAR binary files (or a ${sub} folder)`);
  return existsSync(join(root, sub)) ? join(root, sub) : root;
}

/** CIFAR-10 binary: `data_batch_{1..5}.bin` (train, 50 000) or `test_batch.bin` (10 000). */
export async function loadCifar10(root: string, opts: CifarOptions = {}): Promise<TensorDataset> {
  const dir = resolve(root, "cifar-10-batches-bin");
  const split = opts.split ?? "train";
  const files = split === "train"
    ? [1, 2, 3, 4, 5].map((i) => join(dir, `data_batch_${i}.bin`))
    : [join(dir, "test_batch.bin")];
  const { images, labels } = await readRecords(files, 1, 0, 10);
  const classes = classNames(join(dir, "batches.meta.txt"), CIFAR10_CLASSES);
  return new TensorDataset(`cifar10/${split}`, images, labels, classes, CIFAR_STATS.cifar10);
}

/** CIFAR-100 binary: `train.bin` or `test.bin`; labels are the 100 fine classes. */
export async function loadCifar100(root: string, opts: CifarOptions = {}): Promise<TensorDataset> {
  const dir = resolve(root, "cifar-100-binary");
  const split = opts.split ?? "train";
  const { images, labels } = await readRecords([join(dir, `${split}.bin`)], 2, 1, 100);
  const classes = classNames(join(dir, "fine_label_names.txt"), CIFAR100_CLASSES);
  return new TensorDataset(`cifar100/${split}`, images, labels, classes, CIFAR_STATS.cifar100);
}
