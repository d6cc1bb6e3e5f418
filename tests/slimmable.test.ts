import assert from "node:assert/strict";
import {
  F,
  grad,
  liveHandles,
  manualSeed,
  models,
  nn,
  noGrad,
  randn,
  scope,
  type Tensor,
} from "../mod.ts";

const { SlimmableResNet, exportDense, channelPlan } = models;

Deno.test("channel plan follows int(c·w) of the reference (S-ResNet-50)", () => {
  const plan = channelPlan("resnet50", [1, 0.75, 0.5, 0.25]);
  assert.deepEqual(plan.stem, [64, 48, 32, 16]);
  assert.deepEqual(plan.blocks[0][0].mid, [64, 48, 32, 16]);
  assert.deepEqual(plan.blocks[0][0].out, [256, 192, 128, 64]);
  assert.deepEqual(plan.blocks[3][0].out, [2048, 1536, 1024, 512]);
});

Deno.test("non-overlapping channel bands match the reference", () => {
  assert.deepEqual(nn.channelRanges([128, 64, 32], false), [[0, 128], [32, 96], [0, 32]]);
  assert.deepEqual(nn.channelRanges([8, 8], false), [[0, 8], [0, 8]]);
  assert.throws(() => nn.channelRanges([64, 48, 32, 16], false), /at most twice the largest/);
});

Deno.test("an unknown width is an error naming the allowed widths", () => {
  const net = new SlimmableResNet({
    arch: "resnet18",
    stem: "small",
    inChannels: 1,
    baseWidth: 8,
    numClasses: 10,
  });
  assert.throws(
    () => net.setWidth(0.3),
    /unknown width 0\.3; this network supports \[1, 0\.75, 0\.5, 0\.25\]/,
  );
  net.dispose();
});

Deno.test("each width equals its exported dense twin (train and eval BN)", () => {
  manualSeed(1);
  const net = new SlimmableResNet({
    arch: "resnet18",
    stem: "small",
    inChannels: 1,
    baseWidth: 8,
    numClasses: 10,
  });
  const before = liveHandles().handles;
  scope(() => {
    const x = randn([4, 1, 16, 16]);
    // One training pass per width so every switchable BN has its own running statistics.
    noGrad(() => net.forwardWidths(x));
    net.eval();
    for (const w of net.widths) {
      const dense = exportDense(net, w).eval();
      const ours = net.withWidth(w, () => net.forward(x));
      const twin = dense.forward(x);
      assert.deepEqual(ours.shape, [4, 10]);
      assert.ok(ours.allclose(twin, 1e-5, 1e-6), `width ${w} differs from its dense twin`);
      dense.dispose();
    }
  });
  assert.equal(liveHandles().handles, before);
  net.dispose();
});

Deno.test("slimmable ResNet-50 parameter counts per width match the reference", () => {
  const net = new SlimmableResNet({ arch: "resnet50", numClasses: 1000 });
  // Stored parameters of the whole slimmable network (all private BNs).
  assert.ok(net.numParameters() > 25_557_032);
  for (const [w, expected] of [[1, 25_557_032], [0.5, 6_917_640], [0.25, 1_993_976]] as const) {
    const dense = exportDense(net, w);
    assert.equal(dense.numParameters(), expected, `width ${w}`);
    dense.dispose();
  }
  net.dispose();
});

Deno.test("weight slices accumulate the same gradients as narrow, in backward() and grad()", () => {
  manualSeed(3);
  scope(() => {
    const w = randn([6, 4, 3, 3]).requiresGrad_();
    const b = randn([6]).requiresGrad_();
    const ref = w.detach().clone().requiresGrad_();
    const refB = b.detach().clone().requiresGrad_();
    const blocks = [[0, 6, 0, 4], [0, 4, 0, 3], [1, 3, 2, 2], [0, 2, 0, 1]] as const;
    const coefs = blocks.map(([, ol, , il]) => randn([ol, il, 3, 3]));
    const biasCoefs = blocks.map(([, ol]) => randn([ol]));
    const loss = (
      sliced: (t: Tensor, o0: number, ol: number, i0?: number, il?: number) => Tensor,
    ) =>
      blocks.map(([o0, ol, i0, il], k) =>
        sliced(w, o0, ol, i0, il).square().mul(coefs[k]).sum()
          .add(sliced(b, o0, ol).mul(biasCoefs[k]).sum())
      ).reduce((a, t) => a.add(t));
    const narrowed = (t: Tensor, o0: number, ol: number, i0 = 0, il = 0) => {
      const src = t === w ? ref : refB;
      const v = src.narrow(0, o0, ol);
      return src.ndim > 1 ? v.narrow(1, i0, il) : v;
    };
    // Twice, so that the second backward adds into an existing .grad.
    for (let k = 0; k < 2; k++) {
      loss(F.weightSlice).backward();
      loss(narrowed).backward();
    }
    assert.ok(w.grad!.allclose(ref.grad!, 1e-5, 1e-6), "weight .grad differs from narrow's");
    assert.ok(b.grad!.allclose(refB.grad!, 1e-5, 1e-6), "bias .grad differs from narrow's");
    // grad() captures instead of accumulating: the result is the full-size gradient and .grad
    // stays as it was.
    const before = w.grad!.clone();
    const [gw] = grad([loss(F.weightSlice)], [w]);
    const [gr] = grad([loss(narrowed)], [ref]);
    assert.ok(gw!.allclose(gr!, 1e-5, 1e-6), "grad() differs from narrow's");
    assert.ok(w.grad!.equal(before), "grad() changed .grad");
  });
});
