/**
 * `deno task probe --model RUN/model.pt [--section.key value …]`: linear evaluation of every width
 * of a pretrained slimmable network (frozen backbone in eval mode, a linear head per width, optional
 * in-place distillation), then top-1 per width on the test split. Writes `probe.json` and the
 * probe network (`probe_model.pt`) into the run folder.
 */
import { dirname, join } from "node:path";
import { commandHelp, parseCommandLine } from "../lib/config/cli.ts";
import { ConfigError, f, type Schema } from "../lib/config/schema.ts";
import { dataSection, seedField, threadsField } from "../lib/config/sections.ts";
import { setNumThreads } from "../lib/device.ts";
import { loadModel, saveModel } from "../lib/models/model_file.ts";
import { manualSeed } from "../lib/random.ts";
import { DistributedDataParallel, initDistributed } from "../lib/dist/mod.ts";
import { arange } from "../lib/tensor.ts";
import { disposeSplits, type LabeledSplit } from "../lib/train/source.ts";
import { atomicWriteFile } from "../lib/serialize/fs.ts";
import { labeledSplit, openDataset, taskLoader } from "../lib/train/data.ts";
import { probeAccuracy, probeNetwork, trainProbe } from "../lib/train/probe.ts";
import { formatTable, widthRows } from "../lib/train/summary.ts";

/** Settings of `deno task probe`. */
export const PROBE_SCHEMA = {
  data: dataSection("linear_small", 256),
  probe: {
    epochs: f.num(10, "epochs", { min: 0.001 }),
    lr: f.num(0.5, "peak learning rate (60 for the paper's MoCo v2 ImageNet probe)", { min: 0 }),
    momentum: f.num(0.9, "SGD momentum", { min: 0, max: 1 }),
    weight_decay: f.num(0, "weight decay", { min: 0 }),
    decay: f.str("cosine", "learning-rate decay", ["cosine", "step"]),
    milestones: f.nums([], "step decay epochs", { min: 0 }),
    inplace_distill: f.bool(true, "sub-width heads learn from the full width's predictions"),
    mixed: f.bool(true, "with inplace_distill: average distillation and label losses"),
    reduce: f.str("sum", "combine per-width losses", ["sum", "mean"]),
    cache_features: f.bool(true, "compute frozen features once (no augmentation; fast on CPUs)"),
  },
  run: {
    seed: seedField(),
    threads: threadsField(),
  },
} as const satisfies Schema;

const USAGE = "deno task probe --model PATH [--out DIR] [--section.key value ...]";
const TASK_HELP =
  `  --model PATH        a model file (model.pt of a run), a checkpoint or an official .pth.tar
  --out DIR           where to write probe.json and the heads (default: beside the model)
  --help              this text`;

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

/** Runs the linear probe; returns the JSON written. */
export async function probe(args: string[]): Promise<Record<string, unknown> | null> {
  const { config: c, flags } = parseCommandLine(PROBE_SCHEMA, args, {
    model: "string",
    out: "string",
    help: "boolean",
  });
  if (flags.help) {
    console.log(commandHelp(USAGE, TASK_HELP, PROBE_SCHEMA));
    return null;
  }
  if (!flags.model) throw new ConfigError("--model is required (see --help)");
  if (c.run.threads) setNumThreads(c.run.threads);
  manualSeed(c.run.seed);
  const pretrained = await loadModel(flags.model as string);
  const train = await openDataset(c.data, "train");
  const test = await openDataset(c.data, "test");
  const net = probeNetwork(pretrained, train.classes.length);
  // Under the launcher: each rank trains on its shard, the heads' gradients are averaged, and rank
  // 0 evaluates and writes (the frozen backbone's buffers never change, so none are synced).
  const group = initDistributed();
  const rank = group?.rank ?? 0;
  const worldSize = group?.worldSize ?? 1;
  const ddp = new DistributedDataParallel(net, group, { broadcastBuffers: false });
  const afterBackward = ddp.active ? () => ddp.allReduceGradients() : undefined;
  pretrained.dispose();
  const testSplit = labeledSplit(test, 0, c.data.image_size);
  const outDir = (flags.out as string | undefined) ?? dirname(flags.model as string);
  const o = {
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
  };
  const started = performance.now();
  try {
    const log = (e: number, loss: number) =>
      console.error(`probe: epoch ${e + 1} loss ${loss.toFixed(4)}`);
    if (c.probe.cache_features) {
      const cached = shard(labeledSplit(train, 0, c.data.image_size), rank, worldSize);
      try {
        trainProbe(net, o, { cached }, log, afterBackward);
      } finally {
        disposeSplits(cached);
      }
    } else {
      const loader = taskLoader(train, c.data, { seed: c.run.seed, rank, worldSize });
      try {
        trainProbe(net, o, { loader, dataset: train }, log, afterBackward);
      } finally {
        loader.dispose();
      }
    }
    if (rank !== 0) return null;
    const acc = probeAccuracy(net, testSplit);
    const rows = widthRows(net, c.data.image_size, acc);
    console.log(formatTable(rows, "probe top-1"));
    const out = {
      model: flags.model,
      dataset: train.name,
      protocol: c.probe.cache_features
        ? "linear probe on cached frozen features"
        : `linear probe, ${c.data.recipe}`,
      widths: rows,
      backbone_unchanged: true,
      seconds: Number(((performance.now() - started) / 1000).toFixed(1)),
      config: c,
    };
    await Deno.mkdir(outDir, { recursive: true });
    await atomicWriteFile(
      join(outDir, "probe.json"),
      new TextEncoder().encode(JSON.stringify(out, null, 2) + "\n"),
    );
    await saveModel(join(outDir, "probe_model.pt"), net);
    return out;
  } finally {
    disposeSplits(testSplit);
    net.dispose();
    group?.destroy();
    train.dispose();
    test.dispose();
  }
}

if (import.meta.main) {
  try {
    await probe(Deno.args);
  } catch (e) {
    console.error(`probe: ${(e as Error).message}`);
    Deno.exit(e instanceof ConfigError ? 2 : 1);
  }
}
