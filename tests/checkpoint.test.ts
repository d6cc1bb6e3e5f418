import assert from "node:assert/strict";
import { join } from "node:path";
import { CheckpointManager, configMismatches, readCheckpoint } from "../lib/train/checkpoint.ts";
import { serialize } from "../mod.ts";

Deno.test("checkpoints are atomic, the last K are kept, the newest is found", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const m = new CheckpointManager(join(dir, "ckpt"), 2);
    assert.equal(m.latest(), null);
    for (let e = 1; e <= 4; e++) await m.save(e, e * 10, { note: `epoch ${e}`, best: 0.5 });
    assert.deepEqual(m.list().map((c) => c.epoch), [3, 4]);
    const rec = await readCheckpoint(m.latest()!.path);
    assert.equal(rec.note, "epoch 4");
    assert.equal(rec.step, 40);
    // No temporary files are left behind.
    assert.deepEqual(
      [...Deno.readDirSync(join(dir, "ckpt"))].filter((e) => e.name.startsWith(".")),
      [],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a truncated or foreign checkpoint is an error naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const m = new CheckpointManager(dir, 1);
    const path = await m.save(1, 5, { x: 1 });
    const bytes = await Deno.readFile(path);
    const broken = join(dir, "ckpt_e0002_s9.pt");
    await Deno.writeFile(broken, bytes.subarray(0, bytes.length - 100));
    await assert.rejects(
      () => readCheckpoint(broken),
      new RegExp(`${broken}: unreadable checkpoint`),
    );
    const foreign = join(dir, "foreign.pt");
    await serialize.saveTorchFile(foreign, { epoch: 3 });
    await assert.rejects(() => readCheckpoint(foreign), /not a slimclr training checkpoint/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("configMismatches names the keys; a key an older checkpoint lacks is its default", () => {
  const now = { run: { seed: 0, knn_holdout: 0 }, data: { subset: 0 } };
  const keys = ["run.seed", "run.knn_holdout", "data.subset"];
  assert.deepEqual(
    configMismatches({ run: { seed: 1, knn_holdout: 0 }, data: { subset: 0 } }, now, keys),
    [
      "run.seed is 1 there, 0 here",
    ],
  );
  // Written before run.knn_holdout existed: it ran without one, which is the default.
  const older = { run: { seed: 0 }, data: { subset: 0 } };
  assert.deepEqual(configMismatches(older, now, keys, now), []);
  assert.deepEqual(
    configMismatches(older, { ...now, run: { seed: 0, knn_holdout: 5 } }, keys, now),
    [
      "run.knn_holdout is 0 there, 5 here",
    ],
  );
  // Without defaults a missing key is a mismatch.
  assert.deepEqual(configMismatches(older, now, keys), [
    "run.knn_holdout is undefined there, 0 here",
  ]);
});
