/**
 * Slimmable forward passes against PyTorch: the fixtures hold random weights, an input and the
 * outputs of every width computed independently in float64 by tests/fixtures/make_slim_fixtures.py,
 * each with its float32 error bound. The bound is derived from the computation, not tuned on a
 * CPU: the script reruns the float64 forward with every operation perturbed as float32 rounding
 * perturbs it (a sum of K products by u·√K times their root-sum-square, an elementwise result by
 * u relative) and keeps 4× the largest deviation of 8 such runs. Train-mode batch norm amplifies
 * rounding by 1/σ of the batch, so its bounds are wider than eval mode's; oneDNN's kernels on any
 * x86-64 CPU (AMX, AVX-512, AVX2) sum in other orders but stay far inside (the script prints the
 * error of PyTorch's own float32 forward: 6–40× below the model's deviation).
 */
import assert from "node:assert/strict";
import { liveHandles, models, noGrad, scope, serialize, type Tensor } from "../mod.ts";

const CASES = [
  {
    file: "resnet18_small",
    arch: "resnet18",
    baseWidth: 4,
    inChannels: 1,
    numClasses: 10,
    stem: "small",
  },
  {
    file: "resnet50_imagenet",
    arch: "resnet50",
    baseWidth: 4,
    inChannels: 3,
    numClasses: 5,
    stem: "imagenet",
  },
] as const;

/** Python's repr of a float (1 → "1.0"), as the fixture keys spell widths. */
const pyFloat = (w: number) => (Number.isInteger(w) ? w.toFixed(1) : String(w));

for (const c of CASES) {
  Deno.test(`slimmable ${c.file} equals PyTorch at every width (eval and train BN)`, async () => {
    const { tensors } = await serialize.loadSafetensors(
      new URL(`./fixtures/slim/${c.file}.safetensors`, import.meta.url).pathname,
    );
    const net = new models.SlimmableResNet({ ...c, head: "supervised" });
    const before = liveHandles().handles;
    scope(() => {
      const weights = new Map<string, Tensor>();
      for (const [k, r] of tensors) {
        if (k.startsWith("weights.")) weights.set(k.slice(8), serialize.fromRaw(r));
      }
      net.loadStateDict(weights);
      const x = serialize.fromRaw(tensors.get("input")!);
      for (const mode of ["eval", "train"] as const) {
        for (const w of net.widths) {
          // Train mode updates running statistics: restore them before each width.
          net.loadStateDict(weights);
          net.train(mode === "train");
          const ours = noGrad(() => net.withWidth(w, () => net.forward(x)));
          const expected = serialize.fromRaw(tensors.get(`expected.${mode}.${pyFloat(w)}`)!);
          const bound = serialize.fromRaw(tensors.get(`bound.${mode}.${pyFloat(w)}`)!).item();
          assert.deepEqual(ours.shape, expected.shape);
          const err = ours.to("float64").sub(expected).abs().max().item();
          assert.ok(err <= bound, `${mode} width ${w}: max error ${err} over the bound ${bound}`);
          // The bound has teeth: every other width's output lies far outside it.
          for (const v of net.widths.filter((v) => v !== w)) {
            const other = serialize.fromRaw(tensors.get(`expected.${mode}.${pyFloat(v)}`)!);
            const gap = other.sub(expected).abs().max().item();
            assert.ok(gap > 10 * bound, `${mode} width ${w}: width ${v} is only ${gap} away`);
          }
        }
      }
    });
    assert.equal(liveHandles().handles, before);
    net.dispose();
  });
}
