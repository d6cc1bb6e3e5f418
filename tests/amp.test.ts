import assert from "node:assert/strict";
import {
  autocast,
  cpuHasNativeBf16,
  F,
  GradScaler,
  randn,
  resolveAmp,
  scope,
  SGD,
  tensor,
} from "../mod.ts";

Deno.test("autocast runs matmuls and convolutions in bf16 on the CPU, then restores fp32", () => {
  scope(() => {
    const a = randn([4, 8]);
    const b = randn([8, 3]);
    const inside = autocast("cpu", "bfloat16", () => a.matmul(b));
    assert.equal(inside.dtype, "bfloat16");
    assert.equal(a.matmul(b).dtype, "float32");
    const x = randn([1, 2, 5, 5]);
    const w = randn([3, 2, 3, 3]);
    assert.equal(autocast("cpu", "bfloat16", () => F.conv2d(x, w)).dtype, "bfloat16");
    // Close to fp32 within bf16 precision.
    const ref = a.matmul(b);
    assert.ok(inside.to("float32").allclose(ref, 0.05, 0.05));
  });
});

Deno.test("the grad scaler unscales, skips inf steps and adapts the scale", () => {
  scope(() => {
    const p = tensor([1, 2], [2], { requiresGrad: true });
    const opt = new SGD([p], { lr: 0.1 });
    const scaler = new GradScaler({ initScale: 8, growthInterval: 2 });
    scaler.scaleLoss(p.mul(p).sum()).backward(); // grad 2p·8
    assert.equal(scaler.step(opt, [p]), true);
    assert.deepEqual(p.toList(), [1 - 0.2, 2 - 0.4].map((v) => Math.fround(v)));
    p.grad = tensor([Infinity, 1]);
    assert.equal(scaler.step(opt, [p]), false);
    assert.equal(scaler.scale, 4);
    p.grad = tensor([4, 4]);
    scaler.step(opt, [p]);
    p.grad = tensor([4, 4]);
    scaler.step(opt, [p]);
    assert.equal(scaler.scale, 8, "grows after growthInterval good steps");
    opt.dispose();
  });
});

Deno.test("amp 'auto' is fp16 on CUDA, bf16 only on a CPU with native bf16; explicit settings stay", () => {
  assert.equal(resolveAmp("auto", "cuda"), "fp16");
  assert.equal(resolveAmp("auto", "cpu"), cpuHasNativeBf16() ? "bf16" : "none");
  for (const s of ["none", "bf16", "fp16"] as const) assert.equal(resolveAmp(s, "cpu"), s);
  let flags = "";
  try {
    flags = Deno.readTextFileSync("/proc/cpuinfo");
  } catch { /* not Linux: the detector answers false */ }
  assert.equal(cpuHasNativeBf16(), /\b(amx_bf16|avx512_bf16)\b/.test(flags));
});
