/**
 * `deno task supervised [--config RECIPE.yaml] [--section.key value …]`: slimmable supervised
 * training (every width on every batch; sub-widths optionally learn by in-place distillation from
 * the full width, spec §3.2), checkpoints with resume, and top-1 per width on the test split.
 * `--test-only --model PATH` evaluates a saved model instead.
 */
import { join } from "node:path";
import { commandHelp, parseCommandLine } from "../lib/config/cli.ts";
import { ConfigError, f, type Schema } from "../lib/config/schema.ts";
import { assertNewRun } from "../lib/train/run_dir.ts";
import { backboneFields, dataSection, seedField, threadsField } from "../lib/config/sections.ts";
import { setNumThreads } from "../lib/device.ts";
import { loadModel, modelRecord, saveModel } from "../lib/models/model_file.ts";
import { SlimmableResNet } from "../lib/models/slimmable_resnet.ts";
import type { ResNetArch, Stem } from "../lib/models/resnet.ts";
import { clipGradNorm, SGD } from "../lib/optim.ts";
import { manualSeed } from "../lib/random.ts";
import { DistributedDataParallel, initDistributed } from "../lib/dist/mod.ts";
import { scope } from "../lib/scope.ts";
import { fromRaw } from "../lib/serialize/tensors.ts";
import type { RawTensor } from "../lib/serialize/raw.ts";
import {
  CheckpointManager,
  loadOptimizerRecord,
  optimizerRecord,
  readCheckpoint,
} from "../lib/train/checkpoint.ts";
import { labeledSplit, openDataset, taskLoader } from "../lib/train/data.ts";
import { disposeSplits } from "../lib/train/source.ts";
import { probeAccuracy, slimmableClassificationLoss } from "../lib/train/probe.ts";
import { learningRate } from "../lib/train/schedule.ts";
import { MetricsLog, Progress } from "../lib/log/progress.ts";
import { formatTable, widthRows, writeSummary } from "../lib/train/summary.ts";

/** Settings of `deno task supervised`. */
export const SUPERVISED_SCHEMA = {
  model: {
    ...backboneFields(),
    head: f.str("supervised", "classifier: shared slimmable or private per width", [
      "supervised",
      "supervised_switch",
    ]),
    inplace_distill: f.bool(false, "sub-widths learn from the full width's predictions"),
  },
  data: dataSection("supervised_small", 128),
  optim: {
    lr: f.num(0.1, "peak learning rate", { min: 0 }),
    momentum: f.num(0.9, "SGD momentum", { min: 0, max: 1 }),
    weight_decay: f.num(1e-4, "weight decay", { min: 0 }),
    nesterov: f.bool(false, "Nesterov momentum"),
    clip_grad: f.num(0, "clip the global gradient norm (0: off)", { min: 0 }),
  },
  schedule: {
    epochs: f.num(1, "epochs", { min: 0.001 }),
    warmup_epochs: f.num(0, "linear warm-up epochs", { min: 0 }),
    decay: f.str("cosine", "learning-rate decay", ["cosine", "step"]),
    milestones: f.nums([], "step decay epochs", { min: 0 }),
  },
  run: {
    out: f.str("runs", "folder that holds run folders"),
    name: f.str("supervised", "run folder name"),
    seed: seedField(),
    threads: threadsField(),
    keep_last: f.int(2, "checkpoints kept", { min: 1 }),
    sync_bn: f.bool(
      false,
      "with several processes: batch statistics over all ranks (SyncBatchNorm)",
    ),
  },
} as const satisfies Schema;

const USAGE =
  "deno task supervised [--config RECIPE.yaml] [--section.key value ...] [--resume auto]";
const TASK_HELP = `  --resume auto|PATH  continue from a checkpoint of the run folder
  --test-only         evaluate --model PATH on the test split instead of training
  --model PATH        the model to evaluate with --test-only
  --help              this text`;

/** Trains (or evaluates) a slimmable classifier; returns the summary path. */
export async function supervised(args: string[]): Promise<string | null> {
  const { config: c, flags } = parseCommandLine(SUPERVISED_SCHEMA, args, {
    resume: "string",
    "test-only": "boolean",
    model: "string",
    help: "boolean",
  });
  if (flags.help) {
    console.log(commandHelp(USAGE, TASK_HELP, SUPERVISED_SCHEMA));
    return null;
  }
  if (c.run.threads) setNumThreads(c.run.threads);
  manualSeed(c.run.seed);
  const test = await openDataset(c.data, "test");
  const testSplit = labeledSplit(test, 0, c.data.image_size);
  const runDir = join(c.run.out, c.run.name);
  if (!flags["test-only"]) assertNewRun(runDir, Boolean(flags.resume));
  if (flags["test-only"]) {
    if (!flags.model) throw new ConfigError("--test-only needs --model PATH");
    const net = await loadModel(flags.model as string);
    try {
      const rows = widthRows(net, c.data.image_size, probeAccuracy(net, testSplit));
      console.log(formatTable(rows, "top-1"));
      return null;
    } finally {
      net.dispose();
      disposeSplits(testSplit);
      test.dispose();
    }
  }
  const train = await openDataset(c.data, "train");
  const net = new SlimmableResNet({
    arch: c.model.arch as ResNetArch,
    stem: c.model.stem as Stem,
    inChannels: c.model.in_channels,
    baseWidth: c.model.base_width,
    widths: c.model.widths,
    head: c.model.head as "supervised" | "supervised_switch",
    numClasses: train.classes.length,
    zeroInitResidual: true,
  });
  // Under the launcher: rank 0's initial weights everywhere, sharded batches, averaged gradients,
  // and files, logs and evaluation from rank 0 only.
  const group = initDistributed();
  const rank = group?.rank ?? 0;
  const ddp = new DistributedDataParallel(net, group, { syncBatchNorm: c.run.sync_bn });
  const opt = new SGD(net.parameters(), {
    lr: c.optim.lr,
    momentum: c.optim.momentum,
    weight_decay: c.optim.weight_decay,
    nesterov: c.optim.nesterov,
  });
  const loader = taskLoader(train, c.data, {
    seed: c.run.seed,
    rank,
    worldSize: group?.worldSize ?? 1,
  });
  const ckpts = new CheckpointManager(join(runDir, "checkpoints"), c.run.keep_last);
  await Deno.mkdir(runDir, { recursive: true });
  const metrics = rank === 0 ? new MetricsLog(join(runDir, "metrics.jsonl")) : null;
  const started = performance.now();
  try {
    const perEpoch = loader.batchesPerEpoch;
    const total = Math.max(1, Math.ceil(c.schedule.epochs * perEpoch));
    let step = 0;
    const resume = flags.resume === "auto"
      ? ckpts.latest()?.path
      : flags.resume as string | undefined;
    if (resume) step = await restore(resume, net, opt);
    const progress = rank === 0 ? new Progress(total) : null;
    while (step < total) {
      const epoch = Math.floor(step / perEpoch);
      for (const batch of loader.epoch(epoch, { skip: step - epoch * perEpoch })) {
        try {
          if (step >= total) break;
          const lr = learningRate({
            lr: c.optim.lr,
            totalSteps: total,
            warmupSteps: Math.round(c.schedule.warmup_epochs * perEpoch),
            kind: c.schedule.decay as "cosine" | "step",
            milestones: c.schedule.milestones,
            stepsPerEpoch: perEpoch,
          }, step);
          opt.setLr(lr);
          if (ddp.active) ddp.syncBuffers();
          const loss = scope(() => {
            const logits = net.widths.map((w) =>
              net.withWidth(w, () => net.forward(batch.views[0]))
            );
            const l = slimmableClassificationLoss(logits, batch.labels, {
              inplaceDistill: c.model.inplace_distill,
              mixed: false,
              reduce: "sum",
            });
            opt.zeroGrad();
            l.backward();
            if (ddp.active) ddp.allReduceGradients();
            if (c.optim.clip_grad > 0) clipGradNorm(net.parameters(), c.optim.clip_grad);
            opt.step();
            return l.item();
          });
          step++;
          progress?.update(step, step / perEpoch, { loss, lr }, step * c.data.batch_size);
          if (step % 10 === 0) {
            metrics?.write({ kind: "train", step, epoch: step / perEpoch, loss, lr });
          }
        } finally {
          batch.dispose();
        }
      }
      if (rank === 0) {
        await ckpts.save(Math.floor(step / perEpoch), step, {
          model: modelRecord(net),
          optimizer: optimizerRecord(opt),
        });
      }
    }
    progress?.done();
    if (rank !== 0) return null;
    const rows = widthRows(net, c.data.image_size, probeAccuracy(net, testSplit));
    console.log(formatTable(rows, "top-1"));
    await saveModel(join(runDir, "model.pt"), net);
    return await writeSummary(runDir, {
      task: "supervised",
      dataset: train.name,
      widths: rows,
      steps: step,
      wall_seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
      config: c,
    }, "top-1 (%)");
  } finally {
    metrics?.close();
    loader.dispose();
    opt.dispose();
    net.dispose();
    train.dispose();
    disposeSplits(testSplit);
    test.dispose();
    group?.destroy();
  }
}

async function restore(path: string, net: SlimmableResNet, opt: SGD): Promise<number> {
  const rec = await readCheckpoint(path);
  const model = (rec.model as Record<string, unknown>).state_dict as Map<string, RawTensor>;
  scope(() => net.loadStateDict(new Map([...model].map(([k, r]) => [k, fromRaw(r)]))));
  loadOptimizerRecord(opt, rec.optimizer);
  return Number(rec.step);
}

if (import.meta.main) {
  try {
    const path = await supervised(Deno.args);
    if (path) console.log(path);
  } catch (e) {
    console.error(`supervised: ${(e as Error).message}`);
    Deno.exit(e instanceof ConfigError ? 2 : 1);
  }
}
