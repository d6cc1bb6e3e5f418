/**
 * Data feed against a training step: the 224-px two-view MoCo v2 JPEG pipeline (decode,
 * RandomResizedCrop, colour jitter, grayscale, blur, flip, normalise, two views) of an ImageFolder
 * and of the same images packed into an LMDB, on the shim's worker threads, delivered to
 * `--device`. A consumer that takes `--step-ms` per batch of `--batch` images (the GPU step's time,
 * e.g. from `ssl_bench.ts`) pulls `--batches` batches; the JSON line per source gives the pipeline's
 * images/s alone, the step's images/s, their ratio (≥ 1: the pipeline keeps up) and how long the
 * consumer waited per batch while stepping (target: 0).
 *
 *   deno run -A benches/feed_bench.ts --root DIR [--threads N] [--batch 64] [--step-ms 120]
 *     [--batches 40] [--device cuda]
 *
 * DIR holds `train/<class>/*.JPEG`; `DIR/train_lmdb` and `DIR/train_list.json` are written by
 * `folderToLmdb` when absent (the layout of `deno task data:folder2lmdb`).
 */
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import * as D from "../lib/data/mod.ts";
import { lmdbPaths } from "../lib/data/lmdb.ts";
import { cuda, type Device, setNumThreads } from "../mod.ts";
import { loadAverage } from "./_harness.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    root: { type: "string" },
    threads: { type: "string", default: String(navigator.hardwareConcurrency) },
    batch: { type: "string", default: "64" },
    "step-ms": { type: "string", default: "0" },
    batches: { type: "string", default: "40" },
    device: { type: "string", default: "cpu" },
  },
});
if (!values.root) {
  console.error("bench:feed: --root DIR is required (DIR/train/<class>/*.JPEG)");
  Deno.exit(2);
}
const root = values.root;
const threads = Number(values.threads);
const batch = Number(values.batch);
const stepMs = Number(values["step-ms"]);
const batches = Number(values.batches);
const device = values.device as Device;
if (device !== "cpu" && !cuda.isAvailable()) {
  console.error(`bench:feed: --device ${device} but this LibTorch has no usable CUDA device`);
  Deno.exit(2);
}
setNumThreads(threads);

const round = (x: number) => Number(x.toPrecision(4));
const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** Blocks this thread for `ms` (the shim's workers keep producing meanwhile). */
const busy = (ms: number) => {
  if (ms > 0) Atomics.wait(sleeper, 0, 0, ms);
};

/**
 * Pulls `n` batches after two warm-up batches, consuming each for `consumeMs`; returns images/s
 * and the mean wait per batch in ms.
 */
function pull(ds: D.Dataset, consumeMs: number, n: number): { rate: number; waitMs: number } {
  using loader = new D.Loader(ds, {
    batchSize: batch,
    recipe: "mocov2",
    size: 224,
    seed: 0,
    threads,
    device,
    prefetch: 4,
  });
  const it = loader.epoch(0);
  let t0 = 0, images = 0, wait = 0;
  try {
    for (let i = 0; i < n + 2; i++) {
      const w0 = performance.now();
      const r = it.next();
      if (r.done) break;
      using b = r.value;
      if (device !== "cpu") cuda.synchronize();
      if (i === 2) t0 = performance.now();
      if (i >= 2) {
        wait += performance.now() - w0;
        images += b.labels.shape[0];
      }
      busy(consumeMs);
    }
  } finally {
    it.return(undefined as never);
  }
  const pulled = Math.max(1, Math.min(n, Math.floor(images / batch)));
  return { rate: images / ((performance.now() - t0) / 1000), waitMs: wait / pulled };
}

function bench(name: string, ds: D.Dataset): void {
  const alone = pull(ds, 0, batches);
  const fed = stepMs > 0 ? pull(ds, stepMs, batches) : null;
  const stepRate = stepMs > 0 ? (1000 * batch) / stepMs : null;
  console.log(JSON.stringify({
    bench: `feed_${name}_mocov2_224`,
    images: ds.size,
    threads,
    batch,
    device,
    pipeline_images_per_s: round(alone.rate),
    step_ms: stepMs || null,
    step_images_per_s: stepRate === null ? null : round(stepRate),
    pipeline_over_step: stepRate === null ? null : round(alone.rate / stepRate),
    wait_ms_per_step: fed === null ? null : round(fed.waitMs),
    target: "pipeline_over_step >= 1 and wait_ms_per_step ~ 0",
    load: loadAverage(),
  }));
}

const folder = new D.ImageFolder(`${root}/train`);
try {
  bench("imagefolder", folder);
} finally {
  folder.dispose();
}
if (!existsSync(lmdbPaths(root, "train").db)) {
  const t0 = performance.now();
  const n = D.folderToLmdb(root, "train");
  console.error(`bench:feed: packed ${n} images into LMDB in ${(performance.now() - t0) / 1000} s`);
}
const lmdb = new D.LmdbImageFolder(root, { split: "train" });
try {
  bench("lmdb", lmdb);
} finally {
  lmdb.dispose();
}
