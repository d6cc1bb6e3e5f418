/**
 * CUDA-only tests (ignored on CPU builds and machines without a GPU; `benches/gpu/check.sh` runs
 * them on a lent GPU): mixed-precision steps, memory statistics, and the loader's device copies.
 */
import assert from "node:assert/strict";
import { autocast, GradScaler } from "../lib/amp.ts";
import * as D from "../lib/data/mod.ts";
import { MoCoV2 } from "../lib/ssl/mod.ts";
import { cuda, manualSeed, randn, scope, SGD } from "../mod.ts";
import { leakFree, workerHandles } from "./_helpers.ts";

const ignore = !cuda.isAvailable();

function tinyMoco(): MoCoV2 {
  manualSeed(0);
  return new MoCoV2({
    encoder: { arch: "resnet18", stem: "small", inChannels: 3, baseWidth: 8 },
    widths: [1, 0.5],
    dim: 16,
    queueSize: 64,
    distill: { kind: "seed", alpha: 0.5, studentT: 5, teacherT: 5 },
  }).to("cuda");
}

Deno.test({
  name: "CUDA: fp16 and bf16 autocast steps with loss scaling train, and handles stay flat",
  ignore,
  fn() {
    for (const dtype of ["float16", "bfloat16"] as const) {
      const m = tinyMoco();
      const params = m.trainableParameters();
      const opt = new SGD(params, { lr: 0.05, momentum: 0.9 });
      const scaler = dtype === "float16" ? new GradScaler() : null;
      const a = randn([16, 3, 16, 16], { device: "cuda" }).keep();
      const b = randn([16, 3, 16, 16], { device: "cuda" }).keep();
      const losses: number[] = [];
      const s0 = scaler?.scale ?? 0;
      let taken = 0;
      const w0 = params[0].to("cpu").keep();
      const step = () =>
        scope(() => {
          const { loss, metrics } = autocast("cuda", dtype, () =>
            m.trainingStep(a, b, { epoch: 0, step: 0 }));
          opt.zeroGrad();
          (scaler ? scaler.scaleLoss(loss) : loss).backward();
          // fp16 may overflow at the initial scale (2^16): such a step is skipped and the scale
          // halves, as torch.amp.GradScaler does
          if (!scaler) {
            opt.step();
            taken++;
          } else if (scaler.step(opt, params)) {
            taken++;
          } else assert.ok(scaler.scale < s0, `${dtype}: a skipped step backs the scale off`);
          losses.push(metrics.loss);
        });
      step();
      const before = workerHandles();
      // The scale halves on every overflow: 20 steps reach 2^-3 from 2^16, far below any scale
      // a healthy fp16 step needs.
      for (let i = 0; i < 20 && taken < 4; i++) step();
      assert.equal(workerHandles(), before, `${dtype}: live handles grew across steps`);
      assert.ok(losses.every(Number.isFinite), `${dtype}: losses ${losses}`);
      assert.ok(params.every((p) => p.device === "cuda:0"));
      assert.ok(taken >= 3, `${dtype}: only ${taken} of ${losses.length} steps were taken`);
      assert.ok(scope(() => !params[0].to("cpu").equal(w0)), `${dtype}: the weights did not move`);
      w0.dispose();
      for (const t of [a, b]) t.dispose();
      opt.dispose();
      m.dispose();
    }
  },
});

Deno.test({
  name: "CUDA: memory statistics follow allocations; the peak resets",
  ignore,
  fn() {
    cuda.synchronize();
    const base = cuda.memoryStats().allocated;
    cuda.resetPeakStats();
    const big = randn([16, 1024, 1024], { device: "cuda" }); // 64 MiB of float32
    const s = cuda.memoryStats();
    assert.ok(s.allocated - base >= 64 * 2 ** 20, `allocated grew by ${s.allocated - base}`);
    assert.ok(s.peakAllocated >= s.allocated);
    assert.ok(s.reserved >= s.allocated);
    big.dispose();
    assert.ok(cuda.memoryStats().allocated <= base + 2 ** 20);
    cuda.resetPeakStats();
    assert.ok(cuda.memoryStats().peakAllocated < s.peakAllocated, "the peak did not reset");
  },
});

Deno.test({
  name: "CUDA: the loader's pinned, non-blocking copies equal the CPU loader's batches",
  ignore,
  fn() {
    manualSeed(0);
    const images = scope(() => randn([24, 1, 12, 12]).mul(64).add(128).clamp(0, 255).to("uint8"))
      .keep();
    const labels = Int32Array.from({ length: 24 }, (_, i) => i % 3);
    const ds = new D.TensorDataset("tiny", images, labels, ["a", "b", "c"]);
    const open = (device: "cpu" | "cuda") =>
      new D.Loader(ds, { batchSize: 8, recipe: "mocov2_small", seed: 3, threads: 2, device });
    leakFree(() => {
      using cpu = open("cpu");
      using gpu = open("cuda");
      const [ic, ig] = [cpu.epoch(0), gpu.epoch(0)];
      for (let i = 0; i < 3; i++) {
        using bc = ic.next().value as D.Batch;
        using bg = ig.next().value as D.Batch;
        assert.equal(bg.views[0].device, "cuda:0");
        for (let v = 0; v < 2; v++) {
          assert.ok(bg.views[v].to("cpu").sub(bc.views[v]).abs().max().item() < 1e-6, `view ${v}`);
        }
        assert.ok(bg.labels.to("cpu").equal(bc.labels));
      }
      ic.return(undefined as never);
      ig.return(undefined as never);
    });
    ds.dispose();
  },
});
