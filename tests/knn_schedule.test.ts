import assert from "node:assert/strict";
import { liveHandles, scope, tensor } from "../mod.ts";
import { knnAccuracy, knnPredict } from "../lib/eval/knn.ts";
import { learningRate } from "../lib/train/schedule.ts";

Deno.test("weighted kNN: votes weighted by exp(sim/t) decide, as computed by hand", () => {
  const before = liveHandles().handles;
  scope(() => {
    // Train bank on the unit circle: class 0 at angles 0°, 10°; class 1 at 40°, 45°, 50°.
    const deg = [0, 10, 40, 45, 50].map((d) => (d * Math.PI) / 180);
    const train = tensor(deg.flatMap((a) => [Math.cos(a), Math.sin(a)]), [5, 2]);
    const labels = tensor(new BigInt64Array([0n, 0n, 1n, 1n, 1n]));
    // Query at 22°: with k=5 and a small t, the two near class-0 points outweigh three far ones.
    const q = tensor([Math.cos(0.384), Math.sin(0.384)], [1, 2]);
    const w = (a: number) => Math.exp(Math.cos(0.384 - a) / 0.05);
    const c0 = w(deg[0]) + w(deg[1]);
    const c1 = w(deg[2]) + w(deg[3]) + w(deg[4]);
    assert.ok(c0 > c1);
    assert.deepEqual(knnPredict(train, labels, q, 2, { k: 5, t: 0.05 }).toList(), [0]);
    // With a large t the vote becomes a plain majority: class 1.
    assert.deepEqual(knnPredict(train, labels, q, 2, { k: 5, t: 100 }).toList(), [1]);
    // k=1 picks the nearest neighbour (10°, class 0).
    assert.deepEqual(knnPredict(train, labels, q, 2, { k: 1 }).toList(), [0]);
    const acc = knnAccuracy(train, labels, train, labels, 2, { k: 1, chunk: 2 });
    assert.equal(acc, 1);
  });
  assert.equal(liveHandles().handles, before);
});

Deno.test("learning rate: linear warm-up, cosine decay, step decay, floor", () => {
  const o = { lr: 0.2, totalSteps: 1000, warmupSteps: 100 };
  assert.ok(Math.abs(learningRate(o, 0) - 1e-8) < 1e-12);
  assert.ok(Math.abs(learningRate(o, 50) - (0.5 * (0.2 - 1e-8) + 1e-8)) < 1e-12);
  assert.equal(learningRate(o, 100), 0.2);
  assert.ok(Math.abs(learningRate(o, 550) - 0.1) < 1e-12);
  assert.equal(learningRate(o, 1000), 1e-8);
  const s = {
    lr: 60,
    totalSteps: 100,
    kind: "step" as const,
    milestones: [60, 80],
    stepsPerEpoch: 1,
  };
  assert.equal(learningRate(s, 59), 60);
  assert.ok(Math.abs(learningRate(s, 60) - 6) < 1e-9);
  assert.ok(Math.abs(learningRate(s, 85) - 0.6) < 1e-9);
});
