import assert from "node:assert/strict";
import { manualSeed, noGrad, randn, stack, type Tensor } from "../mod.ts";
import { BatchNorm, BatchNorm2d } from "../lib/nn/layers.ts";
import { recalibrateBatchNorm, withRecalibratedBatchNorm } from "../lib/eval/bn_recalibration.ts";
import { SlimmableResNet } from "../lib/models/slimmable_resnet.ts";
import { convertSyncBatchNorm, type SyncBatchNorm } from "../lib/dist/sync_bn.ts";
import type { ProcessGroup } from "../lib/dist/group.ts";
import { assertClose, assertTensorEqual, leakFree, numbers } from "./_helpers.ts";

/** Asserts `actual` ≈ `expected` elementwise within an absolute tolerance. */
const close = (actual: Tensor, expected: Tensor, atol: number, what: string) =>
  assertClose(actual, { shape: expected.shape, data: numbers(expected) }, 0, atol, what);

const norms = (net: SlimmableResNet) =>
  net.namedModules().filter(([, m]) => m instanceof BatchNorm) as [string, BatchNorm][];

function tinyNet(): SlimmableResNet {
  return new SlimmableResNet({
    arch: "resnet18",
    stem: "small_s2",
    inChannels: 1,
    baseWidth: 8,
    widths: [1, 0.5],
    head: "mocov3_slim",
    numClasses: 8,
    mlpDim: 16,
  });
}

Deno.test("BatchNorm momentum null: running statistics are the plain average of batch statistics (PyTorch's None)", () => {
  leakFree(() => {
    manualSeed(1);
    const bn = new BatchNorm2d(3, { momentum: null });
    const batches = [0, 1, 2].map((i) => randn([4, 3, 5, 5]).mul(i + 1).add(i));
    noGrad(() => batches.forEach((x) => bn.forward(x)));
    const perChannel = (x: Tensor) => x.transpose(0, 1).flatten(1);
    const means = stack(batches.map((x) => perChannel(x).mean(1))).mean(0);
    const vars = stack(batches.map((x) => perChannel(x).var(1))).mean(0);
    close(bn.runningMean!, means, 1e-5, "running_mean");
    close(bn.runningVar!, vars, 1e-4, "running_var");
    assert.equal(bn.numBatchesTracked!.item(), 3);
    bn.dispose();
  });
});

Deno.test("recalibrated BatchNorm: eval mode reproduces the training-mode features of the calibration batch at every width", () => {
  leakFree(() => {
    manualSeed(2);
    const net = tinyNet();
    const images = randn([48, 1, 28, 28]).mul(0.8).add(0.3);
    // Statistics from training differ from the calibration images' statistics.
    for (const [, bn] of norms(net)) noGrad(() => bn.runningMean!.fill_(0.5));
    const head = norms(net).filter(([k]) => k.startsWith("fc"));
    assert.ok(head.length > 0, "the projector has BatchNorms");
    const headBefore = head.map(([, bn]) => bn.runningVar!.clone());
    const tracked = head.map(([, bn]) => bn.numBatchesTracked!.item());
    const weights = net.parameters().map((p) => p.clone());
    // Mean |eval − train| over mean |train| of the pooled features at width w.
    const gap = (w: number) =>
      net.withWidth(w, () => {
        const evalFeatures = noGrad(() => net.eval().features(images));
        const trainFeatures = noGrad(() => net.train().features(images));
        net.eval();
        return evalFeatures.sub(trainFeatures).abs().mean().item() /
          trainFeatures.abs().mean().item();
      });
    const stale = net.widths.map(gap);
    recalibrateBatchNorm(net, images, { batch: 48 });
    assert.equal(net.training, false, "the mode is restored");
    net.widths.forEach((w, i) => {
      // Equal up to the unbiased/biased variance factor (2×2 maps in the last stage: 192
      // values per channel), against a gap of a third or more before.
      assert.ok(stale[i] > 0.3, `width ${w}: gap before ${stale[i]}`);
      assert.ok(gap(w) < 0.02, `width ${w}: gap after ${gap(w)}`);
    });
    // The stem's statistics, exactly: those of its convolution's output over the batch.
    const stem = norms(net).find(([k]) => k === "bn1.bn.0")![1];
    const conv = noGrad(() => net.withWidth(1, () => net.conv1.forward(images)));
    const perChannel = conv.transpose(0, 1).flatten(1);
    close(stem.runningMean!, perChannel.mean(1), 1e-5, "stem running_mean");
    close(stem.runningVar!, perChannel.var(1), 1e-4, "stem running_var");
    // The head's BatchNorms are out of the backbone's reach: untouched, counter included.
    head.forEach(([k, bn], i) => {
      assertTensorEqual(bn.runningVar!, headBefore[i], k);
      assert.equal(bn.numBatchesTracked!.item(), tracked[i], k);
    });
    for (const [, bn] of norms(net)) assert.equal(bn.momentum, 0.1);
    net.parameters().forEach((p, i) => assertTensorEqual(p, weights[i], "weight"));
    net.dispose();
  });
});

Deno.test("withRecalibratedBatchNorm evaluates on recalibrated statistics and restores the old ones", () => {
  leakFree(() => {
    manualSeed(3);
    const net = tinyNet();
    const images = randn([40, 1, 28, 28]);
    const before = new Map([...net.stateDict()].map(([k, t]) => [k, t.clone()]));
    const plain = noGrad(() => net.eval().features(images));
    const recal = withRecalibratedBatchNorm(
      net,
      images,
      { samples: 33, batch: 16 },
      () => noGrad(() => net.features(images)),
    );
    assert.ok(recal.sub(plain).abs().max().item() > 1e-3, "recalibration changed the features");
    for (const [k, t] of net.stateDict()) assertTensorEqual(t, before.get(k)!, k);
    // A last batch of one image joins the one before (batch 16, 33 images: 16 + 17).
    recalibrateBatchNorm(net, images, { samples: 33, batch: 16 });
    const stem = norms(net).find(([k]) => k.startsWith("bn1"))!;
    assert.equal(stem[1].numBatchesTracked!.item(), 2);
    assert.throws(() => recalibrateBatchNorm(net, images, { samples: 1 }), /at least 2 images/);
    net.dispose();
  });
});

Deno.test("recalibration on one rank runs no collective: SyncBatchNorm works locally, then syncs again", () => {
  leakFree(() => {
    manualSeed(4);
    const net = tinyNet();
    const group = {
      worldSize: 2,
      get ptr(): never {
        throw new Error("a collective ran");
      },
    } as unknown as ProcessGroup;
    convertSyncBatchNorm(net, group);
    recalibrateBatchNorm(net, randn([20, 1, 28, 28]));
    for (const [k, bn] of norms(net)) assert.equal((bn as SyncBatchNorm).group, group, k);
    net.dispose();
  });
});
