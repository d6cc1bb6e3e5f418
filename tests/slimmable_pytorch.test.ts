/**
 * Slimmable forward passes against PyTorch: the fixtures hold random weights, an input and the
 * outputs of every width computed independently by tests/fixtures/make_slim_fixtures.py.
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
          assert.deepEqual(ours.shape, expected.shape);
          const err = ours.sub(expected).abs().max().item();
          assert.ok(ours.allclose(expected, 1e-4, 1e-5), `${mode} width ${w}: max error ${err}`);
        }
      }
    });
    assert.equal(liveHandles().handles, before);
    net.dispose();
  });
}
