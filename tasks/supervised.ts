/**
 * `deno task supervised [--config RECIPE.yaml] [--section.key value …] [--resume PATH|auto]`:
 * slimmable supervised training (every width on every batch; sub-widths optionally learn by
 * in-place distillation from the full width, spec §3.2) on the CPU or CUDA, in mixed precision if
 * asked, with checkpoints, exact resume and a clean stop on SIGINT/SIGTERM, then top-1 per width
 * on the test split. `--test-only --model PATH` evaluates a saved model instead.
 */
import { join } from "node:path";
import { commandHelp, parseCommandLine } from "../lib/config/cli.ts";
import { ConfigError } from "../lib/config/schema.ts";
import {
  SUPERVISED_SCHEMA,
  type SupervisedConfig,
  validateSupervised,
} from "../lib/config/supervised.ts";
import { type AmpSetting, resolveAmp } from "../lib/amp.ts";
import { applyThreadsSetting } from "../lib/device.ts";
import { loadModel, saveModel } from "../lib/models/model_file.ts";
import { SlimmableResNet } from "../lib/models/slimmable_resnet.ts";
import { backboneOptions } from "../lib/models/model_source.ts";
import { SGD } from "../lib/optim.ts";
import { manualSeed } from "../lib/random.ts";
import { DistributedDataParallel, initDistributed, rankDevice } from "../lib/dist/mod.ts";
import { assertNewRun, commandLineForRun } from "../lib/train/run_dir.ts";
import { resolveDevice, trainingDevice } from "../lib/train/device.ts";
import {
  assertConfiguredChannels,
  labeledSplit,
  openDataset,
  taskLoader,
} from "../lib/train/data.ts";
import { disposeSplits, type LabeledSplit } from "../lib/train/source.ts";
import type { Dataset } from "../lib/data/mod.ts";
import { runSupervised, type SupervisedResult } from "../lib/train/supervised.ts";
import { top1PerWidth } from "../lib/train/probe.ts";
import { assertClassifier, assertInputChannels } from "../lib/train/eval_setup.ts";
import { formatTable, widthRows, writeSummary } from "../lib/train/summary.ts";

export { SUPERVISED_SCHEMA };

const USAGE =
  "deno task supervised [--config RECIPE.yaml] [--section.key value ...] [--resume PATH|auto]";
const TASK_FLAGS = {
  resume: "string",
  "run-dir": "string",
  "test-only": "boolean",
  model: "string",
  quiet: "boolean",
  help: "boolean",
} as const;
const TASK_HELP =
  `  --resume PATH|auto  continue from a checkpoint ("auto": the newest in the run folder) with the
                      run's saved config.json; overrides given now may change only
                      run.log_every, run.ckpt_every, run.keep_last and run.max_steps
  --run-dir DIR       the run folder (default: run.out/run.name)
  --test-only         evaluate --model PATH on the test split instead of training
  --model PATH        the model to evaluate with --test-only
  --quiet             no live progress line
  --help              this text`;

/** What a supervised training task produced. */
export interface SupervisedOutcome {
  runDir: string;
  /** `summary.json`, or "" when the run stopped early on a signal. */
  summaryPath: string;
  result: SupervisedResult;
  config: SupervisedConfig;
}

/**
 * Trains a slimmable classifier from command-line arguments; returns the run folder, summary and
 * result (null for `--help`, `--test-only` and ranks other than 0).
 */
export async function trainSupervised(args: string[]): Promise<SupervisedOutcome | null> {
  const parsed = parseCommandLine(SUPERVISED_SCHEMA, args, TASK_FLAGS);
  if (parsed.flags.help) {
    console.log(commandHelp(USAGE, TASK_HELP, SUPERVISED_SCHEMA));
    return null;
  }
  const named = (parsed.flags["run-dir"] as string | undefined) ??
    join(parsed.config.run.out, parsed.config.run.name);
  const { config: c, flags } = commandLineForRun(
    SUPERVISED_SCHEMA,
    args,
    TASK_FLAGS,
    parsed,
    named,
    (m) => console.error(`supervised: ${m}`),
  );
  validateSupervised(c);
  if (flags["test-only"]) {
    await testOnly(c, flags.model as string | undefined);
    return null;
  }
  const started = performance.now();
  applyThreadsSetting(c.run.threads);
  manualSeed(c.run.seed);
  const runDir = (flags["run-dir"] as string | undefined) ?? join(c.run.out, c.run.name);
  assertNewRun(runDir, Boolean(flags.resume));
  const group = initDistributed();
  const rank = group?.rank ?? 0;
  const worldSize = group?.worldSize ?? 1;
  const log = (m: string) => rank === 0 && console.error(m);
  // Under the launcher: rank 0's initial weights everywhere, sharded batches, averaged gradients,
  // and files, logs and evaluation from rank 0 only.
  let train: Dataset | null = null;
  let test: Dataset | null = null;
  let testSplit: LabeledSplit | undefined;
  let net: SlimmableResNet | null = null;
  let optimizer: SGD | null = null;
  try {
    train = await openDataset(c.data, "train", log);
    test = await openDataset(c.data, "test", log);
    if (rank === 0) testSplit = labeledSplit(test, c.run.eval_samples, c.data.image_size);
    assertConfiguredChannels(c.model.in_channels, train);
    const device = trainingDevice(c.run, group ? rankDevice() : "cuda");
    const amp = resolveAmp(c.run.amp as AmpSetting, device);
    net = new SlimmableResNet({
      ...backboneOptions(c.model),
      head: c.model.head as "supervised" | "supervised_switch",
      numClasses: train.classes.length,
      zeroInitResidual: true,
    });
    if (device !== "cpu") net.to(device);
    const ddp = new DistributedDataParallel(net, group, { syncBatchNorm: c.run.sync_bn });
    optimizer = new SGD(net.parameters(), {
      lr: c.optim.lr,
      momentum: c.optim.momentum,
      weight_decay: c.optim.weight_decay,
      nesterov: c.optim.nesterov,
    });
    const loader = taskLoader(train, c.data, { seed: c.run.seed, rank, worldSize, device });
    log(
      `supervised: ${c.model.arch} widths [${c.model.widths}] on ${train.name} (${train.size} images, ` +
        `${loader.batchesPerEpoch} batches/epoch, ${device}, ${
          amp === "none" ? "fp32" : amp
        }) → ${runDir}`,
    );
    let result: SupervisedResult;
    try {
      result = await runSupervised({
        config: c,
        runDir,
        net,
        optimizer,
        loader,
        test: testSplit,
        resume: flags.resume as string | undefined,
        progress: !flags.quiet,
        isMain: rank === 0,
        worldSize,
        device,
        ddp,
      });
    } finally {
      loader.dispose();
    }
    // Every rank stopped after the same step; each exits 130, rank 0 tells how to continue.
    if (result.status === "interrupted") {
      log(
        `supervised: stopped by a signal at step ${result.step}; checkpoint ${result.checkpoint}. ` +
          `Continue with --resume auto --run-dir ${runDir}`,
      );
      return { runDir, summaryPath: "", result, config: c };
    }
    if (rank !== 0) return null;
    const rows = widthRows(net, c.data.image_size, result.top1);
    console.log(formatTable(rows, "top-1"));
    await saveModel(join(runDir, "model.pt"), net);
    const summaryPath = await writeSummary(runDir, {
      task: "supervised",
      status: result.status,
      dataset: train.name,
      test_images: testSplit?.images.shape[0] ?? 0,
      widths: rows,
      best: result.best
        ? { ...result.best, value: Number((result.best.value * 100).toFixed(2)) }
        : null,
      steps: result.step,
      epochs: result.epoch,
      wall_seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
      train_seconds: Number(result.wallSeconds.toFixed(1)),
      device,
      precision: amp === "none" ? "fp32" : `${amp} autocast`,
      checkpoint: result.checkpoint,
      model: join(runDir, "model.pt"),
      config: c,
    }, "top-1 (%)");
    return { runDir, summaryPath, result, config: c };
  } finally {
    optimizer?.dispose();
    net?.dispose();
    disposeSplits(testSplit);
    train?.dispose();
    test?.dispose();
    group?.destroy();
  }
}

/** `--test-only`: top-1 per width of a saved model on the test split. */
async function testOnly(c: SupervisedConfig, model: string | undefined): Promise<void> {
  if (!model) throw new ConfigError("--test-only needs --model PATH");
  const device = resolveDevice(c.run.device);
  const net = await loadModel(model);
  let test: Dataset | null = null;
  let split: LabeledSplit | undefined;
  try {
    test = await openDataset(c.data, "test");
    split = labeledSplit(test, c.run.eval_samples, c.data.image_size);
    assertInputChannels(net, model, c.data.dataset, test);
    assertClassifier(net, model, test, "pass the model.pt a supervised run wrote");
    if (device !== "cpu") net.to(device);
    console.log(formatTable(widthRows(net, c.data.image_size, top1PerWidth(net, split)), "top-1"));
  } finally {
    net.dispose();
    disposeSplits(split);
    test?.dispose();
  }
}

/** Trains (or with `--test-only` evaluates) a slimmable classifier; returns the summary path. */
export async function supervised(args: string[]): Promise<string | null> {
  return (await trainSupervised(args))?.summaryPath || null;
}

if (import.meta.main) {
  try {
    const out = await trainSupervised(Deno.args);
    if (out?.summaryPath) console.log(out.summaryPath);
    if (out?.result.status === "interrupted") Deno.exit(130);
  } catch (e) {
    console.error(`supervised: ${(e as Error).message}`);
    Deno.exit(e instanceof ConfigError ? 2 : 1);
  }
}
