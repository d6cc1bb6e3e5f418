/**
 * Gradient accumulation and clipping in the pretraining loop (issue item 3, spec D8): the loss is
 * divided by the micro-batch count, the optimizer steps once per `optim.grad_accum` micro-batches
 * (not after the first), the LR schedule counts optimizer steps, and clipping bounds the global norm.
 */
import assert from "node:assert/strict";
import { liveHandles, manualSeed, randn, scope, type Tensor } from "../mod.ts";
import { clipGradNorm } from "../lib/optim.ts";
import { getNumThreads, setNumThreads } from "../lib/device.ts";
import { buildMethod, buildOptimizer } from "../lib/train/build.ts";
import { runPretrain } from "../lib/train/pretrain.ts";
import type { TwoViews, TwoViewSource } from "../lib/train/source.ts";
import { readMetrics } from "../lib/log/progress.ts";
import { tinyConfig } from "./fixtures/tiny_pretrain.ts";
import { join } from "node:path";

/** The same two views, `steps` times per epoch. */
class RepeatedViews implements TwoViewSource {
  readonly batchSize: number;
  waitSeconds = 0;
  #left = 0;
  constructor(readonly a: Tensor, readonly b: Tensor, readonly stepsPerEpoch: number) {
    this.batchSize = a.shape[0];
  }
  startEpoch(_epoch: number, skip: number): void {
    this.#left = this.stepsPerEpoch - skip;
  }
  next(): Promise<TwoViews | null> {
    if (this.#left-- <= 0) return Promise.resolve(null);
    return Promise.resolve({ a: this.a.clone().keep(), b: this.b.clone().keep() });
  }
  close(): void {}
}

/** Trains SimCLR (no queue, no momentum encoder) on the repeated batch; returns its weights. */
async function train(dir: string, accum: number, extra: string[] = []): Promise<Tensor[]> {
  // One thread: the micro-batches and the whole batch then reduce in the same order. The count is
  // restored afterwards: it is process-wide, and later in-process runs must not inherit it.
  const threads = getNumThreads();
  setNumThreads(1);
  const config = tinyConfig([
    "--method=simclr",
    "--model.widths=1",
    "--slim.start_epoch=-1",
    "--schedule.warmup_epochs=0",
    "--run.knn_every=0",
    `--optim.grad_accum=${accum}`,
    ...extra,
  ]);
  manualSeed(7);
  const a = randn([8, 1, 8, 8]).keep();
  const b = randn([8, 1, 8, 8]).keep();
  manualSeed(0);
  const method = buildMethod(config);
  const optimizer = buildOptimizer(config, method);
  try {
    await runPretrain({
      config,
      runDir: dir,
      method,
      optimizer,
      source: new RepeatedViews(a, b, accum * 4),
      progress: false,
    });
    return scope(() => method.trainableParameters().map((p) => p.detach().clone())).map((t) =>
      t.keep()
    );
  } finally {
    optimizer.dispose();
    method.dispose();
    a.dispose();
    b.dispose();
    setNumThreads(threads);
  }
}

Deno.test("two micro-batches accumulate to exactly one batch's step; the LR counts optimizer steps", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const before = liveHandles().handles;
    // Identical micro-batches: the mean of their gradients is the batch's gradient, bit for bit.
    const one = await train(join(dir, "one"), 1, ["--run.max_steps=3"]);
    const two = await train(join(dir, "two"), 2, ["--run.max_steps=3"]);
    assert.equal(one.length, two.length);
    one.forEach((p, i) => assert.ok(p.equal(two[i]), `parameter ${i} differs`));
    // Without the division (or with a step per micro-batch) the weights would move further.
    const changed = await train(join(dir, "plain"), 1, ["--run.max_steps=6"]);
    assert.ok(changed.some((p, i) => !p.equal(two[i])), "the check cannot tell steps apart");
    for (const t of [...one, ...two, ...changed]) t.dispose();
    assert.equal(liveHandles().handles, before);

    // A whole accumulated run: 4 optimizer steps per epoch of 8 micro-batches, and the cosine LR
    // falls to its end without rising again (the reference's schedule ran past it, D8).
    for (const t of await train(join(dir, "whole"), 2)) t.dispose();
    const rows = readMetrics(join(dir, "whole", "metrics.jsonl")).filter((r) => r.kind === "train");
    assert.deepEqual(rows.map((r) => r.step), [1, 2, 3, 4, 5, 6, 7, 8]);
    const lrs = rows.map((r) => r.lr as number);
    lrs.slice(1).forEach((lr, i) => assert.ok(lr < lrs[i], `LR rose at step ${i + 2}: ${lrs}`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("gradient clipping scales every gradient so the global norm is the bound", () => {
  const before = liveHandles().handles;
  manualSeed(3);
  scope(() => {
    const params = [randn([4, 3]), randn([5])].map((t) => t.requiresGrad_(true));
    params.forEach((p, i) => p.mul(p).sum().mul(i + 1).backward());
    const grads = params.map((p) => p.grad!.clone());
    const norm = (ts: Tensor[]) => Math.sqrt(ts.reduce((s, t) => s + t.mul(t).sum().item(), 0));
    const total = norm(grads);
    const returned = clipGradNorm(params, total / 4);
    assert.ok(Math.abs(returned - total) < 1e-4 * total, `${returned} vs ${total}`);
    assert.ok(Math.abs(norm(params.map((p) => p.grad!)) - total / 4) < 1e-4 * total);
    // Directions are kept: each clipped gradient is the original times the same factor.
    params.forEach((p, i) => assert.ok(p.grad!.mul(4).allclose(grads[i], 1e-5, 1e-5)));
    // Under the bound nothing changes.
    const again = params.map((p) => p.grad!.clone());
    clipGradNorm(params, total);
    params.forEach((p, i) => assert.ok(p.grad!.equal(again[i])));
  });
  assert.equal(liveHandles().handles, before);
});
