/**
 * `deno task pretrain [--config RECIPE.yaml] [--section.key value …] [--resume PATH|auto]`:
 * contrastive pretraining (SimCLR, MoCo v2, MoCo v3; plain with one width, slimmable with several),
 * then kNN per width and a summary (table, `summary.json`, plots) in the run folder.
 */
import { join } from "node:path";
import { commandHelp, parseCommandLine } from "../lib/config/cli.ts";
import { PRETRAIN_SCHEMA, type PretrainConfig, validatePretrain } from "../lib/config/pretrain.ts";
import { ConfigError } from "../lib/config/schema.ts";
import { type AmpMode, type AmpSetting, resolveAmp } from "../lib/amp.ts";
import { applyThreadsSetting } from "../lib/device.ts";
import { saveModel } from "../lib/models/model_file.ts";
import { Generator, manualSeed } from "../lib/random.ts";
import { buildMethod, buildOptimizer } from "../lib/train/build.ts";
import {
  communicator,
  DistributedDataParallel,
  initDistributed,
  rankDevice,
} from "../lib/dist/mod.ts";
import {
  assertConfiguredChannels,
  labeledSplit,
  LoaderSource,
  openDataset,
  taskLoader,
  withHoldout,
} from "../lib/train/data.ts";
import { disposeSplits } from "../lib/train/source.ts";
import { assertNewRun, commandLineForRun } from "../lib/train/run_dir.ts";
import { trainingDevice } from "../lib/train/device.ts";
import { type PretrainResult, runPretrain } from "../lib/train/pretrain.ts";
import { formatTable, knnProtocol, widthRows, writeSummary } from "../lib/train/summary.ts";

const USAGE =
  "deno task pretrain [--config RECIPE.yaml] [--section.key value ...] [--resume PATH|auto]";
const TASK_FLAGS = {
  resume: "string",
  "run-dir": "string",
  help: "boolean",
  quiet: "boolean",
} as const;
const TASK_HELP =
  `  --resume PATH|auto  continue from a checkpoint ("auto": the newest in the run folder, or a
                      new run when it holds none) with the run's saved config.json; overrides
                      given now may change only run.log_every, run.ckpt_every, run.keep_last and
                      run.max_steps
  --run-dir DIR       the run folder (default: run.out/run.name)
  --quiet             no live progress line
  --help              this text`;

/** What a pretraining task produced. */
export interface PretrainOutcome {
  runDir: string;
  summaryPath: string;
  result: PretrainResult;
  config: PretrainConfig;
}

function runFolder(c: PretrainConfig, explicit?: string): string {
  if (explicit) return explicit;
  const name = c.run.name ||
    `${c.method}-${c.model.arch}-${new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19)}`;
  return join(c.run.out, name);
}

function precisionName(amp: AmpMode): string {
  return amp === "none" ? "fp32" : `${amp} autocast`;
}

/** Runs pretraining from command-line arguments; returns the run folder and summary. */
export async function pretrain(args: string[]): Promise<PretrainOutcome | null> {
  const parsed = parseCommandLine(PRETRAIN_SCHEMA, args, TASK_FLAGS);
  if (parsed.flags.help) {
    console.log(commandHelp(USAGE, TASK_HELP, PRETRAIN_SCHEMA));
    return null;
  }
  const named = (parsed.flags["run-dir"] as string | undefined) ??
    (parsed.config.run.name ? join(parsed.config.run.out, parsed.config.run.name) : null);
  const { config, flags } = commandLineForRun(
    PRETRAIN_SCHEMA,
    args,
    TASK_FLAGS,
    parsed,
    named,
    (m) => console.error(`pretrain: ${m}`),
  );
  const group = initDistributed();
  const rank = group?.rank ?? 0;
  const worldSize = group?.worldSize ?? 1;
  validatePretrain(config, worldSize);
  const started = performance.now();
  applyThreadsSetting(config.run.threads);
  manualSeed(config.run.seed);
  if (flags.resume === "auto" && !config.run.name && !flags["run-dir"]) {
    throw new ConfigError(
      "--resume auto needs 'run.name' or --run-dir: an unnamed run gets a new timestamped folder, so there is nothing to resume",
    );
  }
  const runDir = runFolder(config, flags["run-dir"] as string | undefined);
  assertNewRun(runDir, Boolean(flags.resume));
  const log = (m: string) => rank === 0 && console.error(m);

  const { train, heldOut } = withHoldout(
    await openDataset(config.data, "train", log),
    config.run.knn_holdout,
  );
  const test = await openDataset(config.data, "test", log);
  assertConfiguredChannels(config.model.in_channels, train);
  const device = trainingDevice(config.run, group ? rankDevice() : "cuda");
  const precision = precisionName(resolveAmp(config.run.amp as AmpSetting, device));
  const source = new LoaderSource(
    taskLoader(train, config.data, { seed: config.run.seed, rank, worldSize, device }),
  );
  // Only rank 0 evaluates (and writes files).
  const knn = rank === 0
    ? {
      train: labeledSplit(train, config.run.knn_samples, config.data.image_size),
      test: labeledSplit(test, 0, config.data.image_size),
      holdout: heldOut && labeledSplit(heldOut, 0, config.data.image_size),
    }
    : undefined;

  const generator = new Generator(config.run.seed + 1);
  const method = buildMethod(config, { generator, communicator: communicator(group) });
  if (device !== "cpu") method.to(device);
  const ddp = new DistributedDataParallel(method, group, { syncBatchNorm: config.run.sync_bn });
  const optimizer = buildOptimizer(config, method);
  log(
    `pretrain: ${config.method} ${config.model.arch} widths [${config.model.widths}] on ${train.name} ` +
      `(${train.size} images, ${source.stepsPerEpoch} batches/epoch, ${device}, ${precision}) → ${runDir}`,
  );
  try {
    const resume = flags.resume as string | undefined;
    const result = await runPretrain({
      config,
      runDir,
      method,
      optimizer,
      source,
      knn,
      resume,
      progress: !flags.quiet,
      isMain: rank === 0,
      ddp,
      device,
    });
    // Every rank stopped after the same step; each exits 130, rank 0 tells how to continue.
    if (result.status === "interrupted") {
      log(
        `pretrain: stopped by a signal at step ${result.step}; checkpoint ${result.checkpoint}. ` +
          `Continue with --resume auto --run-dir ${runDir}`,
      );
      return { runDir, summaryPath: "", result, config };
    }
    if (rank !== 0) return null;
    await saveModel(join(runDir, "model.pt"), method.encoder);
    const rows = widthRows(method.encoder, config.data.image_size, result.knn);
    const summaryPath = await writeSummary(runDir, {
      task: "pretrain",
      status: result.status,
      dataset: train.name,
      protocol: knnProtocol(
        config.run.knn_k,
        config.run.knn_t,
        knn?.train.images.shape[0] ?? 0,
        config.run.bn_recalibrate,
      ),
      monitor: heldOut
        ? `kNN on ${heldOut.size} training images held out of pretraining (${heldOut.name})`
        : "kNN on the test split",
      widths: rows,
      steps: result.step,
      epochs: result.epoch,
      wall_seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
      train_seconds: Number(result.wallSeconds.toFixed(1)),
      data_wait_seconds: Number(result.dataWaitSeconds.toFixed(2)),
      device,
      precision,
      checkpoint: result.checkpoint,
      best: result.best
        ? { ...result.best, value: Number((result.best.value * 100).toFixed(2)) }
        : null,
      model: join(runDir, "model.pt"),
      config,
    }, "kNN top-1 (%)");
    console.log(formatTable(rows, "kNN top-1"));
    return { runDir, summaryPath, result, config };
  } finally {
    source.close();
    optimizer.dispose();
    method.dispose();
    generator.dispose();
    disposeSplits(knn?.train, knn?.test, knn?.holdout);
    train.dispose();
    test.dispose();
    group?.destroy();
  }
}

if (import.meta.main) {
  try {
    const out = await pretrain(Deno.args);
    if (out?.summaryPath) console.log(out.summaryPath);
    if (out?.result.status === "interrupted") Deno.exit(130);
  } catch (e) {
    console.error(`pretrain: ${(e as Error).message}`);
    Deno.exit(e instanceof ConfigError ? 2 : 1);
  }
}
