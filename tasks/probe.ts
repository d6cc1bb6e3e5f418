/**
 * `deno task probe --model RUN/model.pt [--out DIR] [--resume PATH|auto] [--section.key value …]`:
 * linear evaluation of every width of a pretrained slimmable network (frozen backbone in eval mode,
 * a linear head per width, optional in-place distillation), then top-1 per width on the test
 * split. Writes `probe.json` and the probe network (`probe_model.pt`) into the output folder, and
 * checkpoints of the heads into its `probe_checkpoints/` every `probe.ckpt_every` epochs and at the
 * end; SIGINT/SIGTERM saves one and stops (exit code 130), `--resume auto` continues exactly. A
 * folder holding an earlier probe is refused. `--test-only --model PATH` evaluates a saved probe
 * network (`probe_model.pt`, or a run folder holding one) on the test split instead.
 */
import { join } from "node:path";
import { commandHelp, parseCommandLine } from "../lib/config/cli.ts";
import { ConfigError, type ConfigOf, f, type Schema } from "../lib/config/schema.ts";
import {
  dataSection,
  decayFields,
  deviceField,
  seedField,
  threadsField,
  validateSchedule,
} from "../lib/config/sections.ts";
import { applyThreadsSetting } from "../lib/device.ts";
import { loadModel, saveModel } from "../lib/models/model_file.ts";
import { modelHome, resolveModelPath } from "../lib/models/model_source.ts";
import type { SlimmableResNet } from "../lib/models/slimmable_resnet.ts";
import type { Dataset } from "../lib/data/mod.ts";
import type { Device } from "../lib/dtype.ts";
import { manualSeed } from "../lib/random.ts";
import { DistributedDataParallel, initDistributed, rankDevice } from "../lib/dist/mod.ts";
import { arange } from "../lib/tensor.ts";
import { disposeSplits, type LabeledSplit } from "../lib/train/source.ts";
import { atomicWriteFile } from "../lib/serialize/fs.ts";
import { labeledSplit, openDataset, taskLoader } from "../lib/train/data.ts";
import { resolveDevice } from "../lib/train/device.ts";
import { assertClassifier, assertInputChannels } from "../lib/train/eval_setup.ts";
import { probeNetwork, top1PerWidth } from "../lib/train/probe.ts";
import { backboneFingerprint, type ProbeIdentity } from "../lib/train/probe_checkpoint.ts";
import {
  assertNewProbe,
  type ProbeCheckpoint,
  probeCheckpoints,
  probeMetrics,
  type ProbeRunResult,
  readProbeCheckpoint,
  runProbe,
} from "../lib/train/probe_run.ts";
import type { CheckpointManager } from "../lib/train/checkpoint.ts";
import type { MetricsLog } from "../lib/log/progress.ts";
import { formatTable, widthRows } from "../lib/train/summary.ts";

/** Settings of `deno task probe`. */
export const PROBE_SCHEMA = {
  data: dataSection("linear_small", 256),
  probe: {
    epochs: f.num(10, "epochs", { min: 0.001 }),
    lr: f.num(0.5, "peak learning rate (60 for the paper's MoCo v2 ImageNet probe)", { min: 0 }),
    momentum: f.num(0.9, "SGD momentum", { min: 0, max: 1 }),
    weight_decay: f.num(0, "weight decay", { min: 0 }),
    ...decayFields(),
    inplace_distill: f.bool(true, "sub-width heads learn from the full width's predictions"),
    mixed: f.bool(true, "with inplace_distill: average distillation and label losses"),
    reduce: f.str("sum", "combine per-width losses", ["sum", "mean"]),
    cache_features: f.bool(true, "compute frozen features once (no augmentation; fast on CPUs)"),
    ckpt_every: f.num(1, "checkpoint every N epochs (fractional allowed; 0: only at the end)", {
      min: 0,
    }),
    keep_last: f.int(2, "checkpoints kept", { min: 1 }),
    max_steps: f.int(0, "stop after N steps with a checkpoint (0: run the schedule)", { min: 0 }),
    log_every: f.int(50, "a train row in probe_metrics.jsonl every N steps", { min: 1 }),
  },
  run: {
    seed: seedField(),
    device: deviceField(),
    threads: threadsField(),
  },
} as const satisfies Schema;

const USAGE =
  "deno task probe --model PATH [--out DIR] [--resume PATH|auto] [--test-only] [--section.key value ...]";
const TASK_HELP =
  `  --model PATH        a model file (a run's model.pt), a checkpoint (supervised, or pretraining:
                      its query/base encoder), an official .pth.tar or a run folder (its
                      model.pt, else its newest checkpoint)
  --out DIR           where to write probe.json, probe_model.pt, probe_metrics.jsonl and
                      probe_checkpoints/ (default: beside the model); a folder holding an earlier
                      probe is refused
  --resume PATH|auto  continue a probe from a checkpoint ("auto": the newest in the out folder's
                      probe_checkpoints/, or a new probe when there is none); the --model must be
                      the backbone it was trained on
  --test-only         evaluate a trained probe (--model: its probe_model.pt, or the folder that
                      holds it) on the test split, per width, without training or writing
  --help              this text`;

/** The JSON of a probe run (or of a `--test-only` evaluation). */
type ProbeReport = Record<string, unknown>;
/** A resolved probe config. */
type ProbeConfig = ConfigOf<typeof PROBE_SCHEMA>;

/** Rank `rank`'s rows (every `worldSize`-th) of a split; the split itself is freed. */
function shard(s: LabeledSplit, rank: number, worldSize: number): LabeledSplit {
  if (worldSize === 1) return s;
  using idx = arange(rank, s.images.shape[0], worldSize);
  const out = {
    ...s,
    images: s.images.indexSelect(0, idx).keep(),
    labels: s.labels.indexSelect(0, idx).keep(),
  };
  disposeSplits(s);
  return out;
}

/**
 * `--test-only`: top-1 per width of a saved probe network on the test split. The network must be
 * a classifier over the dataset's classes (a probe's or supervised run's), not an SSL encoder.
 */
async function testOnly(c: ProbeConfig, modelPath: string): Promise<ProbeReport> {
  const device = resolveDevice(c.run.device);
  const file = resolveModelPath(modelPath, ["probe_model.pt"]);
  const net = await loadModel(file);
  let test: Dataset | null = null;
  let split: LabeledSplit | null = null;
  try {
    test = await openDataset(c.data, "test");
    assertInputChannels(net, file, c.data.dataset, test);
    assertClassifier(net, file, test, "pass the probe_model.pt a probe run wrote");
    split = labeledSplit(test, 0, c.data.image_size);
    if (device !== "cpu") net.to(device);
    const rows = widthRows(net, c.data.image_size, top1PerWidth(net, split));
    console.log(formatTable(rows, "probe top-1 (test only)"));
    return { model: file, dataset: test.name, device, protocol: "test only", widths: rows };
  } finally {
    disposeSplits(split);
    net.dispose();
    test?.dispose();
  }
}

/**
 * Runs the linear probe (or `--test-only` evaluation); returns the JSON written. A probe stopped
 * by a signal or `probe.max_steps` writes a checkpoint only and returns its `status`, `steps`,
 * `checkpoint` and `out` folder (continue it with `--resume auto`).
 */
export async function probe(args: string[]): Promise<ProbeReport | null> {
  const { config: c, flags } = parseCommandLine(PROBE_SCHEMA, args, {
    model: "string",
    out: "string",
    resume: "string",
    "test-only": "boolean",
    help: "boolean",
  });
  if (flags.help) {
    console.log(commandHelp(USAGE, TASK_HELP, PROBE_SCHEMA));
    return null;
  }
  if (!flags.model) throw new ConfigError("--model is required (see --help)");
  validateSchedule({ ...c.probe, warmup_epochs: 0 }, "probe");
  applyThreadsSetting(c.run.threads);
  if (flags["test-only"]) return await testOnly(c, flags.model as string);
  const outDir = (flags.out as string | undefined) ?? modelHome(flags.model as string);
  const checkpoints = probeCheckpoints(outDir, c.probe.keep_last);
  const resume = flags.resume === "auto"
    ? checkpoints.latest()?.path
    : flags.resume as string | undefined;
  assertNewProbe(outDir, Boolean(resume));
  manualSeed(c.run.seed);
  const file = resolveModelPath(flags.model as string);
  const pretrained = await loadModel(file);
  let net: SlimmableResNet | null = null;
  let train: Dataset | null = null;
  let test: Dataset | null = null;
  let testSplit: LabeledSplit | null = null;
  let metrics: MetricsLog | null = null;
  // Under the launcher: each rank trains on its shard, the heads' gradients are averaged, and rank
  // 0 evaluates and writes (the frozen backbone's buffers never change, so none are synced).
  const group = initDistributed();
  try {
    const rank = group?.rank ?? 0;
    const worldSize = group?.worldSize ?? 1;
    const device = resolveDevice(c.run.device, group ? rankDevice() : "cuda");
    train = await openDataset(c.data, "train");
    assertInputChannels(pretrained, file, c.data.dataset, train);
    test = await openDataset(c.data, "test");
    net = probeNetwork(pretrained, train.classes.length, file);
    pretrained.dispose();
    const identity = { config: c, model: file, fingerprint: backboneFingerprint(net), worldSize };
    // A checkpoint of another backbone or other data is refused before any data is prepared.
    const resumed = resume ? await readProbeCheckpoint(resume, identity) : undefined;
    if (device !== "cpu") net.to(device);
    const ddp = new DistributedDataParallel(net, group, { broadcastBuffers: false });
    const afterBackward = ddp.active ? () => ddp.allReduceGradients() : undefined;
    const anyRank = ddp.active ? (flag: boolean) => ddp.anyRank(flag) : undefined;
    const started = performance.now();
    if (rank === 0) metrics = probeMetrics(outDir, resumed ? Number(resumed.record.step) : 0);
    const result = await trainHeads(c, net, train, {
      metrics,
      rank,
      device,
      afterBackward,
      anyRank,
      identity,
      checkpoints,
      resume: resumed,
    });
    // Every rank stopped after the same step; each exits 130, rank 0 tells how to continue.
    if (result.status !== "completed") {
      const why = result.status === "interrupted"
        ? "stopped by a signal"
        : "reached probe.max_steps";
      if (rank === 0) {
        console.error(
          `probe: ${why} at step ${result.step} of ${result.totalSteps}; checkpoint ` +
            `${result.checkpoint}. Continue with --resume auto --out ${outDir}`,
        );
      }
      return {
        status: result.status,
        steps: result.step,
        total_steps: result.totalSteps,
        checkpoint: result.checkpoint,
        out: outDir,
      };
    }
    if (rank !== 0) return null;
    testSplit = labeledSplit(test, 0, c.data.image_size);
    const rows = widthRows(net, c.data.image_size, top1PerWidth(net, testSplit));
    console.log(formatTable(rows, "probe top-1"));
    metrics?.write({
      kind: "test",
      step: result.step,
      epoch: result.epoch,
      ...Object.fromEntries(rows.map((r) => [`top1/w${r.width}`, r.top1])),
    });
    const report: ProbeReport = {
      status: result.status,
      model: file,
      backbone_sha256: identity.fingerprint,
      dataset: train.name,
      device,
      protocol: c.probe.cache_features
        ? "linear probe on cached frozen features"
        : `linear probe, ${c.data.recipe}`,
      widths: rows,
      backbone_unchanged: true,
      steps: result.step,
      checkpoint: result.checkpoint,
      resumed_from: resume ?? null,
      seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
      config: c,
    };
    await Deno.mkdir(outDir, { recursive: true });
    await atomicWriteFile(
      join(outDir, "probe.json"),
      new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"),
    );
    await saveModel(join(outDir, "probe_model.pt"), net);
    return report;
  } finally {
    metrics?.close();
    pretrained.dispose(); // idempotent: freed once the probe network holds its weights
    disposeSplits(testSplit);
    net?.dispose();
    group?.destroy();
    train?.dispose();
    test?.dispose();
  }
}

/** Trains (or continues) the heads on this rank's data: cached features or the loader. */
async function trainHeads(
  c: ProbeConfig,
  net: SlimmableResNet,
  train: Dataset,
  r: {
    rank: number;
    device: Device;
    afterBackward?: () => void;
    anyRank?: (flag: boolean) => boolean;
    identity: ProbeIdentity;
    checkpoints: CheckpointManager;
    resume?: ProbeCheckpoint;
    metrics: MetricsLog | null;
  },
): Promise<ProbeRunResult> {
  const run = {
    net,
    options: {
      epochs: c.probe.epochs,
      lr: c.probe.lr,
      momentum: c.probe.momentum,
      weightDecay: c.probe.weight_decay,
      decay: c.probe.decay as "cosine" | "step",
      milestones: c.probe.milestones,
      inplaceDistill: c.probe.inplace_distill,
      mixed: c.probe.mixed,
      reduce: c.probe.reduce as "sum" | "mean",
      batchSize: c.data.batch_size,
      seed: c.run.seed,
    },
    identity: r.identity,
    checkpoints: r.checkpoints,
    ckptEvery: c.probe.ckpt_every,
    maxSteps: c.probe.max_steps,
    resume: r.resume,
    isMain: r.rank === 0,
    device: r.device,
    afterBackward: r.afterBackward,
    anyRank: r.anyRank,
    metrics: r.metrics ?? undefined,
    logEvery: c.probe.log_every,
    onEpoch: (e: number, loss: number) =>
      r.rank === 0 && console.error(`probe: epoch ${e + 1} loss ${loss.toFixed(4)}`),
  };
  const worldSize = r.identity.worldSize;
  if (c.probe.cache_features) {
    const cached = shard(labeledSplit(train, 0, c.data.image_size), r.rank, worldSize);
    try {
      return await runProbe({ ...run, data: { cached } });
    } finally {
      disposeSplits(cached);
    }
  }
  const loader = taskLoader(train, c.data, {
    seed: c.run.seed,
    rank: r.rank,
    worldSize,
    device: r.device,
  });
  try {
    return await runProbe({ ...run, data: { loader, dataset: train } });
  } finally {
    loader.dispose();
  }
}

if (import.meta.main) {
  try {
    const report = await probe(Deno.args);
    if (report?.status === "interrupted") Deno.exit(130);
  } catch (e) {
    console.error(`probe: ${(e as Error).message}`);
    Deno.exit(e instanceof ConfigError ? 2 : 1);
  }
}
