/**
 * `deno task knn --model RUN/model.pt [--section.key value …]`: weighted kNN (k=200, t=0.1,
 * cosine) of every width of a pretrained slimmable network, plus the same protocol on raw pixels
 * as the baseline. `--model` takes a model file, a checkpoint (a pretraining checkpoint's query or
 * base encoder) or a run folder. Prints a table and writes `knn.json` next to the model (or to
 * `--out`).
 */
import { join } from "node:path";
import { commandHelp, parseCommandLine } from "../lib/config/cli.ts";
import { ConfigError, f, type Schema } from "../lib/config/schema.ts";
import { dataSection, deviceField, threadsField } from "../lib/config/sections.ts";
import { applyThreadsSetting } from "../lib/device.ts";
import { recalibrateBatchNorm } from "../lib/eval/bn_recalibration.ts";
import { knnAccuracy } from "../lib/eval/knn.ts";
import type { Device } from "../lib/dtype.ts";
import { loadModel } from "../lib/models/model_file.ts";
import { modelHome, resolveModelPath } from "../lib/models/model_source.ts";
import { atomicWriteFile } from "../lib/serialize/fs.ts";
import { scope } from "../lib/scope.ts";
import { type Tensor, tensor } from "../lib/tensor.ts";
import type { Dataset } from "../lib/data/mod.ts";
import { labeledSplit, openDataset } from "../lib/train/data.ts";
import { resolveDevice } from "../lib/train/device.ts";
import { assertInputChannels, onDevice } from "../lib/train/eval_setup.ts";
import { knnPerWidth } from "../lib/train/monitor.ts";
import { disposeSplits, type LabeledSplit } from "../lib/train/source.ts";
import { formatTable, widthRows } from "../lib/train/summary.ts";

/** Settings of `deno task knn`. */
export const KNN_SCHEMA = {
  data: dataSection("eval_small", 256),
  knn: {
    k: f.int(200, "neighbours", { min: 1 }),
    t: f.num(0.1, "temperature", { min: 1e-4 }),
    samples: f.int(0, "bank size cap (0: the whole training split)", { min: 0 }),
    bn_recalibrate: f.int(
      0,
      "first recompute each width's BatchNorm statistics over this many clean bank images (0: the model's own)",
      { min: 0 },
    ),
    raw_pixels: f.bool(true, "also report kNN on raw pixels (the baseline)"),
  },
  run: {
    device: deviceField(),
    threads: threadsField(),
  },
} as const satisfies Schema;

const USAGE = "deno task knn --model PATH [--out FILE.json] [--section.key value ...]";
const TASK_HELP =
  `  --model PATH        a model file (a run's model.pt), a checkpoint (supervised, or pretraining:
                      its query/base encoder), an official .pth.tar or a run folder (its
                      model.pt, else its newest checkpoint)
  --out FILE          where to write the JSON (default: knn.json beside the model, or in the folder)
  --help              this text`;

/**
 * kNN top-1 (0–1) on pixels under the same protocol: `raw` on pixel values in [0, 1] (the
 * baseline the paper's kNN numbers are compared with), `standardized` on the normalised images.
 * The search runs on `device`.
 */
export function pixelKnn(
  train: LabeledSplit,
  test: LabeledSplit,
  k: number,
  t: number,
  device: Device = "cpu",
): { raw: number | null; standardized: number } {
  return scope(() => {
    const on = (x: Tensor) => onDevice(x, device);
    const [bankLabels, queryLabels] = [on(train.labels), on(test.labels)];
    const acc = (a: Tensor, b: Tensor) =>
      knnAccuracy(on(a.flatten(1)), bankLabels, on(b.flatten(1)), queryLabels, train.numClasses, {
        k,
        t,
      });
    const standardized = acc(train.images, test.images);
    if (!train.stats) return { raw: null, standardized };
    const c = train.images.shape[1];
    const mean = tensor([...train.stats.mean], [1, c, 1, 1]);
    const std = tensor([...train.stats.std], [1, c, 1, 1]);
    const unit = (x: Tensor) => x.mul(std).add(mean);
    return { raw: acc(unit(train.images), unit(test.images)), standardized };
  });
}

/** Runs the kNN evaluation; returns the JSON written. */
export async function knnTask(args: string[]): Promise<Record<string, unknown> | null> {
  const { config, flags } = parseCommandLine(KNN_SCHEMA, args, {
    model: "string",
    out: "string",
    help: "boolean",
  });
  if (flags.help) {
    console.log(commandHelp(USAGE, TASK_HELP, KNN_SCHEMA));
    return null;
  }
  if (!flags.model) throw new ConfigError("--model is required (see --help)");
  applyThreadsSetting(config.run.threads);
  const device = resolveDevice(config.run.device);
  const file = resolveModelPath(flags.model as string);
  const net = await loadModel(file);
  let train: Dataset | null = null;
  let test: Dataset | null = null;
  let bank: LabeledSplit | null = null;
  let queries: LabeledSplit | null = null;
  try {
    train = await openDataset(config.data, "train");
    assertInputChannels(net, file, config.data.dataset, train);
    test = await openDataset(config.data, "test");
    bank = labeledSplit(train, config.knn.samples, config.data.image_size);
    queries = labeledSplit(test, 0, config.data.image_size);
    if (device !== "cpu") net.to(device);
    if (config.knn.bn_recalibrate) {
      recalibrateBatchNorm(net, bank.images, { samples: config.knn.bn_recalibrate });
    }
    const acc = knnPerWidth(net, bank, queries, { k: config.knn.k, t: config.knn.t });
    const rows = widthRows(net, config.data.image_size, acc);
    console.log(formatTable(rows, "kNN top-1"));
    const pixels = config.knn.raw_pixels
      ? pixelKnn(bank, queries, config.knn.k, config.knn.t, device)
      : null;
    if (pixels) console.log(pixelLine(pixels));
    const out = {
      model: file,
      dataset: train.name,
      device,
      protocol: {
        k: config.knn.k,
        t: config.knn.t,
        similarity: "cosine",
        bank: bank.images.shape[0],
        bn_recalibrate: Math.min(config.knn.bn_recalibrate, bank.images.shape[0]),
      },
      widths: rows,
      raw_pixels_top1: percent(pixels?.raw ?? null),
      standardized_pixels_top1: percent(pixels?.standardized ?? null),
    };
    const path = (flags.out as string | undefined) ??
      join(modelHome(flags.model as string), "knn.json");
    await atomicWriteFile(path, new TextEncoder().encode(JSON.stringify(out, null, 2) + "\n"));
    return out;
  } finally {
    disposeSplits(bank, queries);
    net.dispose();
    train?.dispose();
    test?.dispose();
  }
}

if (import.meta.main) {
  try {
    await knnTask(Deno.args);
  } catch (e) {
    console.error(`knn: ${(e as Error).message}`);
    Deno.exit(e instanceof ConfigError ? 2 : 1);
  }
}

/** A fraction as a percentage with two decimals (null stays null). */
export function percent(x: number | null): number | null {
  return x === null ? null : Number((x * 100).toFixed(2));
}

/** One line describing the pixel baselines. */
export function pixelLine(p: { raw: number | null; standardized: number }): string {
  const raw = p.raw === null ? "" : `raw pixels ${(p.raw * 100).toFixed(2)}%, `;
  return `pixel baselines, same protocol: ${raw}standardized pixels ${
    (p.standardized * 100).toFixed(2)
  }%`;
}
