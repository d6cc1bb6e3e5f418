import assert from "node:assert/strict";
import { F, liveHandles, manualSeed, models, noGrad, randn, scope } from "../mod.ts";
import { Generator, randint } from "../lib/random.ts";
import { leakFree, tinyEncoder, workerHandles } from "./_helpers.ts";
import { probe } from "../tasks/probe.ts";
import { loadOptimizerRecord, optimizerRecord } from "../lib/train/checkpoint.ts";
import {
  probeNetwork,
  type ProbeOptions,
  ProbeTrainer,
  slimmableClassificationLoss,
  softCrossEntropy,
  top1PerWidth,
  trainProbe,
} from "../lib/train/probe.ts";

Deno.test("probe loss: CE at full width plus ½(softCE to the full width + CE) per sub-width", () => {
  scope(() => {
    const g = new Generator(4);
    const logits = [randn([5, 3], { generator: g }), randn([5, 3], { generator: g })];
    const y = randint(0, 3, [5], { generator: g });
    const t = logits[0].softmax(1);
    const expected = F.crossEntropy(logits[0], y).item() +
      0.5 * (softCrossEntropy(logits[1], t).item() + F.crossEntropy(logits[1], y).item());
    const got = slimmableClassificationLoss(logits, y, {
      inplaceDistill: true,
      mixed: true,
      reduce: "sum",
    }).item();
    assert.ok(Math.abs(got - expected) < 1e-6);
    // Soft CE against a one-hot target is plain CE.
    const onehot = y.oneHot(3).to("float32");
    assert.ok(
      Math.abs(softCrossEntropy(logits[1], onehot).item() - F.crossEntropy(logits[1], y).item()) <
        1e-6,
    );
    const plain = slimmableClassificationLoss(logits, y, {
      inplaceDistill: false,
      mixed: false,
      reduce: "mean",
    })
      .item();
    assert.ok(
      Math.abs(
        plain - (F.crossEntropy(logits[0], y).item() + F.crossEntropy(logits[1], y).item()) / 2,
      ) < 1e-6,
    );
    g.dispose();
  });
});

Deno.test("probe trains the heads only, leaves every backbone weight and BN statistic alone", () => {
  manualSeed(2);
  const pretrained = tinyEncoder({ baseWidth: 8 });
  // Give the BNs non-trivial statistics first.
  scope(() => void noGrad(() => pretrained.forwardWidths(randn([16, 1, 8, 8]))));
  const net = probeNetwork(pretrained, 2);
  pretrained.dispose();
  const before = liveHandles().handles;
  scope(() => {
    // Two classes told apart by the sign of the mean pixel.
    const g = new Generator(9);
    const y = randint(0, 2, [64], { generator: g });
    const x = randn([64, 1, 8, 8], { generator: g }).mul(0.3).add(
      y.to("float32").mul(2).sub(1).view(64, 1, 1, 1),
    );
    const split = { images: x, labels: y, numClasses: 2 };
    const loss = trainProbe(net, {
      epochs: 20,
      lr: 0.5,
      momentum: 0.9,
      weightDecay: 0,
      decay: "cosine",
      milestones: [],
      inplaceDistill: true,
      mixed: true,
      reduce: "sum",
      batchSize: 16,
      seed: 0,
    }, { cached: split });
    assert.ok(Number.isFinite(loss));
    const acc = top1PerWidth(net, split);
    for (const [w, a] of acc) assert.ok(a > 0.9, `width ${w}: ${a}`);
    g.dispose();
  });
  assert.equal(liveHandles().handles, before);
  // trainProbe throws if anything outside fc.* changed; also check the frozen flags.
  for (const [name, p] of net.namedParameters()) {
    assert.equal(p.requiresGrad, name.startsWith("fc."), name);
  }
  net.dispose();
});

Deno.test("a pretrained network without backbone weights is an error naming its file, leaking nothing", () => {
  const real = tinyEncoder();
  // Everything a probe network needs from its source, but no weights at all.
  const hollow = {
    slimOptions: real.slimOptions,
    widths: real.widths,
    stateDict: () => new Map(),
  } as unknown as models.SlimmableResNet;
  const before = workerHandles();
  assert.throws(
    () => probeNetwork(hollow, 3, "runs/x/model.pt"),
    /^Error: runs\/x\/model\.pt lacks backbone keys: conv1\.weight, bn1\.bn\.0\.weight/,
  );
  assert.equal(workerHandles(), before);
  real.dispose();
});

Deno.test("probe: an impossible schedule is an error naming the probe's keys", async () => {
  await assert.rejects(
    () => probe(["--model", "unused.pt", "--probe.decay", "step"]),
    /'probe\.decay': step needs 'probe\.milestones'/,
  );
  await assert.rejects(
    () => probe(["--model", "unused.pt", "--probe.epochs", "90", "--probe.milestones", "30,100"]),
    /'probe\.milestones' \[30,100\] apply to 'probe\.decay': step only/,
  );
});

Deno.test("ProbeTrainer: steps cut short and continued in a new trainer end on the same heads", () => {
  manualSeed(3);
  const pretrained = tinyEncoder();
  const [whole, cut] = [probeNetwork(pretrained, 3), probeNetwork(pretrained, 3)];
  pretrained.dispose();
  cut.loadStateDict(whole.stateDict()); // the same initial heads
  const o: ProbeOptions = {
    epochs: 2.5,
    lr: 0.5,
    momentum: 0.9,
    weightDecay: 1e-4,
    decay: "cosine",
    milestones: [],
    inplaceDistill: true,
    mixed: true,
    reduce: "sum",
    batchSize: 16,
    seed: 5,
  };
  const heads = (net: models.SlimmableResNet) =>
    [...net.stateDict()].filter(([k]) => k.startsWith("fc."));
  try {
    leakFree(() => {
      const g = new Generator(1);
      const split = {
        images: randn([40, 1, 8, 8], { generator: g }),
        labels: randint(0, 3, [40], { generator: g }),
        numClasses: 3,
      };
      g.dispose();
      const losses: number[] = [];
      {
        using t = new ProbeTrainer(whole, o, { cached: split });
        assert.equal(t.totalSteps, 5); // 2 steps per epoch (the last batch is dropped)
        for (const s of t.steps()) losses.push(s.loss);
      }
      // Three steps, then the heads and optimizer state move to a fresh trainer on another network
      // (as a checkpoint carries them) and it continues from step 3, in the third epoch.
      let state: unknown;
      {
        using t = new ProbeTrainer(cut, o, { cached: split });
        for (const s of t.steps()) if (s.step === 3) break;
        state = optimizerRecord(t.optimizer);
      }
      const saved = heads(cut).map(([k, v]) => [k, v.clone()] as const);
      for (const [, v] of heads(cut)) noGrad(() => v.zero_());
      cut.loadStateDict(new Map(saved), false);
      using t = new ProbeTrainer(cut, o, { cached: split });
      loadOptimizerRecord(t.optimizer, state);
      const rest = [...t.steps(3)];
      assert.deepEqual(rest.map((s) => [s.step, s.epoch]), [[4, 1], [5, 2]]);
      assert.deepEqual(rest.map((s) => s.loss), losses.slice(3));
      for (const [[k, a], [, b]] of heads(whole).map((e, i) => [e, heads(cut)[i]])) {
        assert.ok(a.equal(b), k);
      }
    });
  } finally {
    whole.dispose();
    cut.dispose();
  }
});
