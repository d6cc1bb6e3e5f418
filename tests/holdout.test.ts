import assert from "node:assert/strict";
import { join } from "node:path";
import { subset, TensorDataset } from "../lib/data/mod.ts";
import { ConfigError } from "../lib/config/schema.ts";
import { readMetrics } from "../lib/log/progress.ts";
import { randint } from "../lib/random.ts";
import { labeledSplit, withHoldout } from "../lib/train/data.ts";
import { disposeSplits } from "../lib/train/source.ts";
import { pretrain } from "../tasks/pretrain.ts";

/** 50 random 6×6 grey images, labelled by index mod 5. */
function dataset(): TensorDataset {
  const images = randint(0, 256, [50, 1, 6, 6], { dtype: "uint8" });
  const labels = Int32Array.from({ length: 50 }, (_, i) => i % 5);
  return new TensorDataset("toy", images, labels, ["a", "b", "c", "d", "e"]);
}

Deno.test("withHoldout: a seeded held-out part and the rest, disjoint and complete", () => {
  const ds = dataset();
  const { train, heldOut } = withHoldout(ds, 12);
  const indices = (d: { size: number; sourceIndex(i: number): number }) =>
    Array.from({ length: d.size }, (_, i) => d.sourceIndex(i));
  const held = indices(heldOut!);
  const rest = indices(train);
  assert.equal(held.length, 12);
  assert.equal(rest.length, 38);
  assert.deepEqual([...held, ...rest].sort((a, b) => a - b), indices(ds));
  // The same images whatever else happens: the split depends on the dataset's size only.
  assert.deepEqual(indices(withHoldout(dataset(), 12).heldOut!), held);
  assert.equal(withHoldout(ds, 0).heldOut, null);
  assert.throws(() => withHoldout(dataset(), 50), (e: Error) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /^'run\.knn_holdout' holds out 50 images but toy has 50/);
    return true;
  });
  train.dispose();
});

Deno.test("labeledSplit of a subset of in-memory images equals those rows of the whole split", () => {
  const ds = dataset();
  const part = subset(subset(ds, { count: 30, seed: 3 }), { count: 9, seed: 4 });
  const whole = labeledSplit(ds);
  const some = labeledSplit(part);
  try {
    const rows = Array.from({ length: 9 }, (_, i) => part.sourceIndex(i));
    assert.deepEqual(
      some.images.toFloat32Array(),
      Float32Array.from(rows.flatMap((r) => [...whole.images.narrow(0, r, 1).toFloat32Array()])),
    );
    assert.deepEqual(
      [...some.labels.toArray() as BigInt64Array].map(Number),
      rows.map((r) => r % 5),
    );
  } finally {
    disposeSplits(whole, some);
    ds.dispose();
  }
});

Deno.test("pretrain with run.knn_holdout: trains without the held-out images and monitors on them", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = await pretrain([
      "--config",
      new URL("../configs/demo_fashion_mnist.yaml", import.meta.url).pathname,
      "--run.out",
      dir,
      "--run.name",
      "held",
      "--quiet",
      "--model.base_width=4",
      "--model.widths=1,0.5",
      "--data.subset=320",
      "--data.batch_size=64",
      "--ssl.queue=128",
      "--schedule.epochs=1",
      "--slim.start_epoch=0.5",
      "--run.bn_recalibrate=0",
      "--run.knn_every=0.5",
      "--run.knn_holdout=64",
    ]);
    const summary = JSON.parse(await Deno.readTextFile(out!.summaryPath));
    // 256 images left to train on: 4 batches of 64 per epoch.
    assert.equal(summary.dataset, "fashion-mnist/train[320][256]");
    assert.equal(summary.steps, 4);
    assert.match(summary.monitor, /^kNN on 64 training images held out of pretraining/);
    assert.match(summary.protocol, /, 256 bank images/);
    const evals = readMetrics(join(dir, "held", "metrics.jsonl")).filter((r) => r.kind === "eval");
    assert.deepEqual(evals.map((r) => `${r.split}@${r.step}`), [
      "holdout@2",
      "holdout@4",
      "test@4",
    ]);
    assert.ok("knn_holdout/w0.5" in evals[0] && !("knn/w1" in evals[0]));
    // The summary's accuracy is the test split's; the best is the monitor's.
    assert.equal(summary.widths[0].top1, Number((evals[2]["knn/w1"] as number).toFixed(2)));
    assert.equal(summary.best.metric, "knn_holdout/w1");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
