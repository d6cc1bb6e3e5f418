/**
 * The background loader: every sample once per epoch per rank, shuffling, drop_last, two views,
 * agreement with the synchronous augmentation, skipped and strict corrupt images, no leaks.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as D from "../lib/data/mod.ts";
import { cuda, fromBytes, liveHandles, scope } from "../mod.ts";
import { numbers } from "./_helpers.ts";

const FOLDER = fileURLToPath(new URL("./fixtures/data/imagefolder/train", import.meta.url));

/** N gray 6×6 images whose pixels all equal their index; label = index % 4. */
function indexed(n: number): D.TensorDataset {
  const px = new Uint8Array(n * 36).map((_, k) => Math.floor(k / 36));
  const labels = Int32Array.from({ length: n }, (_, i) => i % 4);
  return new D.TensorDataset("indexed", fromBytes(px, "uint8", [n, 1, 6, 6]), labels, [
    "a",
    "b",
    "c",
    "d",
  ]);
}

/** The source indices and labels of every batch of an epoch. */
function run(loader: D.Loader, epoch: number): { idx: number[][]; labels: number[][] } {
  const out = { idx: [] as number[][], labels: [] as number[][] };
  for (using b of loader.epoch(epoch)) {
    out.idx.push(numbers(b.indices));
    out.labels.push(numbers(b.labels));
  }
  return out;
}

function leakCheck(fn: () => void): void {
  const before = liveHandles().handles;
  fn();
  assert.equal(liveHandles().handles, before, "live tensor handles changed");
}

Deno.test("each rank yields each of its samples once per epoch; ranks cover the dataset", () => {
  const ds = indexed(23);
  try {
    leakCheck(() => {
      const seen: number[] = [];
      for (let rank = 0; rank < 3; rank++) {
        using l = new D.Loader(ds, {
          batchSize: 4,
          recipe: "eval_small",
          size: 6,
          seed: 5,
          rank,
          worldSize: 3,
          dropLast: false,
          threads: 2,
        });
        const { idx, labels } = run(l, 0);
        const flat = idx.flat();
        assert.equal(flat.length, 8, "ceil(23 / 3) samples per rank");
        assert.equal(new Set(flat).size, 8, `rank ${rank} repeats a sample`);
        assert.deepEqual(labels.flat(), flat.map((i) => i % 4), "labels follow their samples");
        assert.deepEqual(idx.map((b) => b.length), [4, 4]);
        assert.equal(l.batchesPerEpoch, 2);
        seen.push(...flat);
      }
      assert.deepEqual(
        [...new Set(seen)].sort((a, b) => a - b),
        Array.from({ length: 23 }, (_, i) => i),
      );
      assert.equal(seen.length, 24, "one sample padded, as DistributedSampler does");
    });
  } finally {
    ds.dispose();
  }
});

Deno.test("shuffling is seeded per epoch; drop_last drops the partial batch", () => {
  const ds = indexed(10);
  try {
    leakCheck(() => {
      using l = new D.Loader(ds, {
        batchSize: 3,
        recipe: "eval_small",
        size: 6,
        seed: 1,
        threads: 1,
      });
      const e0 = run(l, 0).idx, e0b = run(l, 0).idx, e1 = run(l, 1).idx;
      assert.deepEqual(e0.map((b) => b.length), [3, 3, 3]);
      assert.deepEqual(e0, e0b, "same epoch, same order");
      const resumed: number[][] = [];
      for (using b of l.epoch(0, { skip: 2 })) resumed.push(numbers(b.indices));
      assert.deepEqual(resumed, e0.slice(2), "skip resumes mid-epoch");
      assert.notDeepEqual(e0, e1, "the next epoch reshuffles");
      assert.equal(l.summaries.length, 4);
      using plain = new D.Loader(ds, {
        batchSize: 4,
        recipe: "eval_small",
        size: 6,
        shuffle: false,
        dropLast: false,
      });
      assert.deepEqual(run(plain, 0).idx, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
    });
  } finally {
    ds.dispose();
  }
});

Deno.test("two views per sample; batches equal the synchronous augmentation", () => {
  const ds = indexed(12);
  try {
    leakCheck(() => {
      const recipe = D.recipe("mocov2_small", { size: 5 });
      // Pixels encode the index, so a view of the wrong sample would show.
      using l = new D.Loader(ds, { batchSize: 4, recipe, seed: 9, threads: 2, prefetch: 2 });
      using l1 = new D.Loader(ds, { batchSize: 4, recipe, seed: 9, threads: 1, prefetch: 1 });
      const other = [...l1.epoch(2)];
      let k = 0;
      for (using b of l.epoch(2)) {
        using o = other[k++];
        assert.equal(b.views.length, 2);
        assert.deepEqual(b.views[0].shape, [4, 1, 5, 5]);
        assert.ok(!b.views[0].equal(b.views[1]), "the two views differ");
        assert.ok(
          b.views[0].equal(o.views[0]) && b.views[1].equal(o.views[1]),
          "thread count changes nothing",
        );
        scope(() => {
          const seed = D.epochSeed(9, 2, 0);
          const keys = numbers(b.indices);
          const imgs = ds.images.indexSelect(0, b.indices);
          for (const v of [0, 1]) {
            const want = D.augment(imgs, recipe.views[v], { seed, keys, view: v });
            assert.ok(b.views[v].equal(want), `view ${v} equals augment() of the same samples`);
          }
        });
      }
      assert.equal(k, 3);
    });
  } finally {
    ds.dispose();
  }
});

Deno.test("JPEG/PNG files: undecodable images are skipped, logged and counted", () => {
  const ds = new D.ImageFolder(FOLDER);
  try {
    leakCheck(() => {
      const logs: string[] = [];
      using l = new D.Loader(ds, {
        batchSize: 3,
        recipe: "linear",
        size: 16,
        seed: 0,
        dropLast: false,
        log: (m) => logs.push(m),
      });
      let samples = 0;
      for (using b of l.epoch(0)) {
        samples += b.views[0].shape[0];
        assert.equal(b.views[0].shape[1], 3);
        assert.equal(b.labels.shape[0], b.views[0].shape[0]);
      }
      const s = l.summaries[0];
      assert.equal(samples, 6);
      assert.equal(s.skipped, 2);
      assert.equal(s.samples, 6);
      assert.ok(s.skippedPaths.some((p) => /g_truncated\.jpg: corrupt JPEG/.test(p)));
      assert.ok(s.skippedPaths.some((p) => /h_not_an_image\.png: not a JPEG or PNG image/.test(p)));
      assert.ok(logs.some((m) => /skipped .*g_truncated\.jpg/.test(m)));
      assert.ok(logs.some((m) => /epoch 0: skipped 2 undecodable image\(s\) of 8/.test(m)));
      assert.ok(s.waitMs >= 0 && l.totalWaitMs >= s.waitMs);
    });
  } finally {
    ds.dispose();
  }
});

Deno.test("JPEG/PNG files: strict mode makes an undecodable image an error naming it", () => {
  const ds = new D.ImageFolder(FOLDER);
  try {
    leakCheck(() => {
      using l = new D.Loader(ds, {
        batchSize: 8,
        recipe: "linear",
        size: 16,
        strict: true,
        dropLast: false,
      });
      assert.throws(() => {
        for (using _ of l.epoch(0)) { /* consume */ }
      }, /undecodable image \(strict mode\): .*(g_truncated\.jpg|h_not_an_image\.png)/);
    });
  } finally {
    ds.dispose();
  }
});

Deno.test("decoded files through the loader equal decode + augment (exact without fast decode)", () => {
  const ds = new D.ImageFolder(FOLDER);
  try {
    leakCheck(() => {
      const cfg = { ...D.recipe("simclr", { size: 12 }).views[0], fastDecode: false };
      const recipe = { name: "exact", views: [cfg] };
      using l = new D.Loader(ds, {
        batchSize: 2,
        recipe,
        seed: 4,
        shuffle: false,
        dropLast: false,
      });
      for (using b of l.epoch(0)) {
        scope(() => {
          numbers(b.indices).forEach((i, k) => {
            const img = ds.image(i).unsqueeze(0);
            const want = D.augment(img, cfg, { seed: D.epochSeed(4, 0, 0), keys: [i] });
            assert.ok(b.views[0].narrow(0, k, 1).allclose(want, 0, 1e-6), `sample ${i}`);
          });
        });
      }
      // Fast decode (DCT downscale + region of interest) stays close to the exact path.
      using fast = new D.Loader(ds, {
        batchSize: 8,
        recipe: "simclr",
        size: 12,
        seed: 4,
        shuffle: false,
        dropLast: false,
      });
      using exact = new D.Loader(ds, {
        batchSize: 8,
        recipe,
        seed: 4,
        shuffle: false,
        dropLast: false,
      });
      const [fa] = [...fast.epoch(0)], [ex] = [...exact.epoch(0)];
      using _a = fa, _b = ex;
      scope(() => assert.ok(fa.views[0].sub(ex.views[0]).abs().max().item() < 0.15));
    });
  } finally {
    ds.dispose();
  }
});

Deno.test("an early exit drains the queue; bad options are errors", () => {
  const ds = indexed(40);
  try {
    leakCheck(() => {
      using l = new D.Loader(ds, { batchSize: 2, recipe: "eval_small", size: 6, prefetch: 4 });
      for (using b of l.epoch(0)) {
        assert.equal(b.views[0].shape[0], 2);
        break;
      }
      assert.equal(l.summaries[0].batches, 1);
      assert.throws(
        () => new D.Loader(ds, { batchSize: 2, recipe: "eval_small", rank: 2, worldSize: 2 }),
        /rank must be in \[0, 2\)/,
      );
      if (!cuda.isAvailable()) {
        assert.throws(
          () => new D.Loader(ds, { batchSize: 2, recipe: "eval_small", device: "cuda" }),
          /device cuda requested, but CUDA is not available/,
        );
      }
      using zero = new D.Loader(ds, { batchSize: 0, recipe: "eval_small" });
      assert.throws(() => [...zero.epoch(0)], /batchSize must be a positive integer/);
    });
  } finally {
    ds.dispose();
  }
});
