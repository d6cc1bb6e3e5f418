/**
 * `deno task demo`: the whole idea on a laptop CPU. Provides Fashion-MNIST, pretrains
 * SlimCLR-MoCo v2 with a small-image slimmable ResNet-18 (widths 1.0/0.75/0.5/0.25) from
 * `configs/demo_fashion_mnist.yaml`, evaluates kNN per width against kNN on raw pixels under the
 * same protocol, writes the table, plots and `summary.json`, and prints that file's path last.
 * Extra arguments override the recipe (e.g. `--schedule.epochs 1`).
 */
import { join } from "node:path";
import { ConfigError } from "../lib/config/schema.ts";
import { PROJECT_ROOT } from "../lib/ffi/paths.ts";
import { atomicWriteFile } from "../lib/serialize/fs.ts";
import { labeledSplit, openDataset } from "../lib/train/data.ts";
import { disposeSplits } from "../lib/train/source.ts";
import { writeAccuracyPlot } from "../lib/train/summary.ts";
import { holdsRun } from "../lib/train/run_dir.ts";
import { pretrain } from "./pretrain.ts";
import { percent, pixelKnn, pixelLine } from "./knn.ts";

/**
 * The recipe's run folder name, or with `-2`, `-3`, … appended when earlier demo runs hold it (a
 * rerun never replaces an earlier one; `--run.name`, `--run-dir` or `--resume` choose yourself).
 */
function freshRunName(out: string, name: string, args: string[]): string[] {
  const chosen = args.some((a) => /^--(run\.name|run-dir|resume)(=|$)/.test(a));
  if (chosen) return [];
  let n = 1;
  while (holdsRun(join(out, n === 1 ? name : `${name}-${n}`))) n++;
  return n === 1 ? [] : ["--run.name", `${name}-${n}`];
}

const HELP = `deno task demo [--section.key value ...]

Pretrains SlimCLR-MoCo v2 on Fashion-MNIST with configs/demo_fashion_mnist.yaml (about thirteen
minutes on two cores), evaluates kNN per width against kNN on raw pixels, writes the table, the
plots and summary.json in runs/demo (runs/demo-2, ... when earlier demos hold it) and prints the
summary's path last. Any recipe key can be overridden (e.g. --schedule.epochs 1); the keys are
those of deno task pretrain --help.`;

/** Runs the demo; returns the summary path (null after `--help` or an interruption). */
export async function demo(args: string[] = []): Promise<string | null> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(HELP);
    return null;
  }
  const recipe = join(PROJECT_ROOT, "configs", "demo_fashion_mnist.yaml");
  const at = args.findIndex((a) => a === "--run.out" || a.startsWith("--run.out="));
  const runs = at < 0
    ? join(PROJECT_ROOT, "runs")
    : args[at].includes("=")
    ? args[at].slice("--run.out=".length)
    : args[at + 1];
  const out = await pretrain([
    "--config",
    recipe,
    "--run.out",
    runs,
    ...freshRunName(runs, "demo", args),
    ...args,
  ]);
  if (!out || out.result.status === "interrupted") return null;
  const { config } = out;
  const train = await openDataset(config.data, "train");
  const test = await openDataset(config.data, "test");
  const bank = labeledSplit(train, config.run.knn_samples, config.data.image_size);
  const queries = labeledSplit(test, 0, config.data.image_size);
  let pixels: { raw: number | null; standardized: number };
  try {
    pixels = pixelKnn(bank, queries, config.run.knn_k, config.run.knn_t);
  } finally {
    disposeSplits(bank, queries);
    train.dispose();
    test.dispose();
  }
  const summary = JSON.parse(await Deno.readTextFile(out.summaryPath));
  const raw = percent(pixels.raw);
  summary.raw_pixels_top1 = raw;
  summary.standardized_pixels_top1 = percent(pixels.standardized);
  for (const w of summary.widths) {
    w.margin_over_raw_pixels = w.top1 === null || raw === null
      ? null
      : Number((w.top1 - raw).toFixed(2));
  }
  await atomicWriteFile(
    out.summaryPath,
    new TextEncoder().encode(JSON.stringify(summary, null, 2) + "\n"),
  );
  // The trade-off curve again, now with the pixel baselines it is judged against.
  await writeAccuracyPlot(out.runDir, summary.widths, "kNN top-1 (%)", [
    ...(pixels.raw === null ? [] : [{ label: "raw pixels", accuracy: pixels.raw }]),
    { label: "standardized pixels", accuracy: pixels.standardized },
  ]);
  console.log(pixelLine(pixels));
  console.log(
    `plots: ${join(out.runDir, "accuracy_vs_macs.png")}, ${join(out.runDir, "loss.png")}`,
  );
  return out.summaryPath;
}

if (import.meta.main) {
  try {
    const path = await demo(Deno.args);
    if (path) console.log(path);
  } catch (e) {
    console.error(`demo: ${(e as Error).message}`);
    Deno.exit(e instanceof ConfigError ? 2 : 1);
  }
}
