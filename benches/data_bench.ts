/**
 * `deno task bench:data`: throughput of the data pipeline. Prints one JSON line per benchmark.
 *
 * (a) `data_mocov2_small_vs_train_step`: the two-view mocov2_small loader on Fashion-MNIST
 *     (batch 256, the shim's worker threads) in samples/s, against the SlimCLR training step's
 *     samples/s (slimmable ResNet-18, small stem, base width 16, 1 channel, forward + backward of
 *     all four widths). Target: pipeline / training ≥ 5. It also runs the two together and
 *     reports how long the training loop waited for data per step.
 * (b) `data_imagefolder_rrc224_vs_torchvision`: JPEG decode + RandomResizedCrop(224) + flip +
 *     normalise of an ImageFolder, against torchvision + PIL (a DataLoader with as many workers as
 *     we use threads) on the same images. Target: speed-up ≥ 1.5. The Python side needs Pillow
 *     and torchvision (`--python` picks the interpreter); without them it reports null and why.
 *
 * Run as `flock /tmp/slimclr-bench.lock deno task bench:data [-- --python /path/to/python]`.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PROJECT_ROOT } from "../lib/ffi/paths.ts";
import * as D from "../lib/data/mod.ts";
import {
  F,
  getNumThreads,
  manualSeed,
  models,
  randint,
  randn,
  scope,
  setNumThreads,
  SGD,
} from "../mod.ts";
import { loadAverage, report } from "./_harness.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    threads: { type: "string", default: String(navigator.hardwareConcurrency) },
    python: { type: "string", default: Deno.env.get("SLIMCLR_BENCH_PYTHON") ?? "python3" },
    /** An ImageFolder of JPEGs for (b); by default synthetic ones are made (needs Pillow). */
    images: { type: "string" },
    count: { type: "string", default: "256" },
    "step-batch": { type: "string", default: "64" },
    only: { type: "string" },
  },
});
const threads = Number(values.threads);
setNumThreads(threads);
manualSeed(0);

const round = (x: number) => Number(x.toPrecision(4));

/** Samples per second of `n` batches of a loader epoch (after one warm-up batch). */
function loaderRate(loader: D.Loader, epoch: number, n: number): number {
  const it = loader.epoch(epoch);
  let t0 = 0, samples = 0;
  for (let i = 0; i <= n; i++) {
    const r = it.next();
    if (r.done) break;
    using b = r.value;
    if (i === 0) t0 = performance.now();
    else samples += b.indices.shape[0];
  }
  it.return(undefined as never);
  return samples / ((performance.now() - t0) / 1000);
}

/** (a) The loader against a slimmable training step. */
async function benchSmall(): Promise<void> {
  let ds: D.TensorDataset;
  try {
    const p = await D.provideFashionMnist({ url: null, log: () => {} });
    ds = await D.loadMnist(p.dir, { split: "train" });
  } catch (e) {
    console.error(`bench: Fashion-MNIST unavailable (${(e as Error).message}); (a) skipped`);
    return;
  }
  const batch = 256;
  using loader = new D.Loader(ds, { batchSize: batch, recipe: "mocov2_small", seed: 0, threads });
  loaderRate(loader, 0, 3);
  const pipeline = loaderRate(loader, 1, 60);

  const net = new models.SlimmableResNet({
    arch: "resnet18",
    stem: "small",
    inChannels: 1,
    baseWidth: 16,
    numClasses: 10,
  });
  const opt = new SGD(net.parameters(), { lr: 0.01, momentum: 0.9 });
  const sb = Number(values["step-batch"]);
  const step = (x: D.Batch["views"][number], y: D.Batch["labels"]) =>
    scope(() => {
      opt.zeroGrad();
      for (const w of net.widths) {
        net.withWidth(w, () => F.crossEntropy(net.forward(x), y).backward());
      }
      opt.step();
    });
  const x = randn([sb, 1, 28, 28]).keep(), y = randint(0, 10, [sb]).keep();
  step(x, y);
  step(x, y);
  const t0 = performance.now();
  const iters = 4;
  for (let i = 0; i < iters; i++) step(x, y);
  const stepMs = (performance.now() - t0) / iters;
  const train = sb / (stepMs / 1000);
  x.dispose(), y.dispose();

  // Together: the loader feeds real batches (first view) to the training step.
  using fed = new D.Loader(ds, { batchSize: sb, recipe: "mocov2_small", seed: 0, threads });
  const it = fed.epoch(0);
  let steps = 0;
  const t1 = performance.now();
  for (const b of it) {
    using _ = b;
    step(b.views[0], b.labels);
    if (++steps === 4) break;
  }
  const fedMs = (performance.now() - t1) / steps;
  const waitPerStep = fed.totalWaitMs / steps;
  report("data_mocov2_small_vs_train_step", (1000 * batch) / pipeline, null, {
    pipeline_samples_per_s: round(pipeline),
    train_samples_per_s: round(train),
    pipeline_over_train: round(pipeline / train),
    target: ">= 5",
    step_batch: sb,
    fed_step_ms: round(fedMs),
    wait_ms_per_step: round(waitPerStep),
    threads,
  });
  net.dispose?.();
  ds.dispose();
}

async function python(args: string[]): Promise<Record<string, unknown>> {
  const script = join(PROJECT_ROOT, "benches", "python", "data_bench.py");
  try {
    const out = await new Deno.Command(values.python, {
      args: [script, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
    if (out.success && text.startsWith("{")) return JSON.parse(text);
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").pop();
    return { error: `${values.python} data_bench.py failed: ${err || text}` };
  } catch (e) {
    return { error: `${values.python}: ${(e as Error).message}` };
  }
}

/** (b) ImageFolder JPEG decode + RRC(224) + flip against torchvision + PIL. */
async function benchFolder(): Promise<void> {
  let dir = values.images;
  let made = "";
  if (!dir) {
    dir = join(await Deno.makeTempDir({ prefix: "slimclr-bench-jpeg-" }), "train");
    made = dir;
    const r = await python(["--make-images", dir, "--count", values.count]);
    if (r.error) {
      report("data_imagefolder_rrc224_vs_torchvision", NaN, null, { reason: r.error });
      return;
    }
  }
  try {
    const ds = new D.ImageFolder(dir);
    const n = ds.size;
    const batch = 32;
    const rate = (fastDecode: boolean) => {
      const r = D.recipe("linear");
      const recipe = { name: "linear", views: [{ ...r.views[0], fastDecode }] };
      using l = new D.Loader(ds, { batchSize: batch, recipe, seed: 0, threads, dropLast: false });
      loaderRate(l, 0, 2);
      return loaderRate(l, 1, Math.floor(n / batch) - 1);
    };
    const ours = rate(true);
    const oursFull = rate(false);
    ds.dispose();
    const tv = await python([
      "--time",
      dir,
      "--workers",
      String(threads),
      "--batch",
      String(batch),
    ]);
    const theirs = typeof tv.images_per_s === "number" ? tv.images_per_s : null;
    report("data_imagefolder_rrc224_vs_torchvision", 1000 / ours, theirs ? 1000 / theirs : null, {
      ours_images_per_s: round(ours),
      ours_full_decode_images_per_s: round(oursFull),
      torchvision_images_per_s: theirs === null ? null : round(theirs),
      speedup: theirs === null ? null : round(ours / theirs),
      speedup_full_decode: theirs === null ? null : round(oursFull / theirs),
      target: ">= 1.5",
      images: n,
      threads,
      ...(theirs === null
        ? { reason: tv.error }
        : { torchvision: tv.torchvision, pillow: tv.pillow }),
    });
  } finally {
    if (made) await Deno.remove(join(made, ".."), { recursive: true });
  }
}

console.error(`bench:data on ${getNumThreads()} threads, load ${loadAverage()}`);
if (values.only !== "folder") await benchSmall();
if (values.only !== "small") await benchFolder();
