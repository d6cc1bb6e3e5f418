/**
 * Short training runs of each method (slimmable, widths 1/0.5, SEED distillation, scheme 5) on a
 * handful of fixed random images with SGD: the loss falls, live handles stay flat across steps,
 * the gradient diagnostics run on their interval and agree with the accumulated gradients, and
 * the parameter groups cover the trainable parameters.
 */
import assert from "node:assert/strict";
import { manualSeed, noGrad, randn, scope, SGD, type Tensor } from "../mod.ts";
import {
  MoCoV2,
  MoCoV3,
  SimCLR,
  type SlimSSLMethod,
  type SlimSSLOptions,
  type StepMetrics,
} from "../lib/ssl/mod.ts";
import { workerHandles } from "./_helpers.ts";

const COMMON: SlimSSLOptions = {
  encoder: {
    arch: "resnet18",
    stem: "small",
    inChannels: 1,
    baseWidth: 4,
    zeroInitResidual: false,
  },
  widths: [1, 0.5],
  distill: { kind: "seed", alpha: 0.5 },
  lossWeighting: 5,
};

/** Eight images that differ in brightness and contrast, and two fixed noisy views of them. */
function views(): [Tensor, Tensor] {
  return scope(() => {
    const x = randn([8, 1, 8, 8]).mul(randn([8, 1, 1, 1]).mul(0.5).exp()).add(randn([8, 1, 1, 1]));
    return [x.add(randn([8, 1, 8, 8]).mul(0.1)), x.add(randn([8, 1, 8, 8]).mul(0.1))];
  });
}

/**
 * MoCo v2's head at N(0, 0.01) (the reference's init) leaves tiny pre-normalisation outputs on a
 * 32-d head, which stalls training at this size (PyTorch does the same); use N(0, 1/fan_in).
 */
function widenMoCoHead(m: MoCoV2): MoCoV2 {
  noGrad(() => {
    for (const p of m.encoderQ.fc!.parameters()) {
      if (p.ndim === 2) p.normal_(0, 1 / Math.sqrt(p.shape[1]));
    }
  });
  m.syncKeyEncoder();
  return m;
}

interface Run {
  losses: number[];
  metrics: StepMetrics[];
  handles: number[];
}

function train(m: SlimSSLMethod, lr: number, steps: number): Run {
  const [a, b] = views();
  const opt = new SGD(m.trainableParameters(), { lr, momentum: 0.9 });
  const run: Run = { losses: [], metrics: [], handles: [] };
  for (let step = 0; step < steps; step++) {
    const metrics = scope(() => {
      const { loss, metrics } = m.trainingStep(a, b, { epoch: step / steps, step });
      opt.zeroGrad();
      loss.backward();
      opt.step();
      return metrics;
    });
    run.losses.push(metrics.loss);
    run.metrics.push(metrics);
    run.handles.push(workerHandles());
  }
  opt.dispose();
  a.dispose();
  b.dispose();
  return run;
}

const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

function assertLearns(run: Run, from: number, what: string) {
  const early = mean(run.losses.slice(from, from + 4));
  const late = mean(run.losses.slice(-4));
  assert.ok(late < 0.8 * early, `${what}: loss ${early.toFixed(3)} → ${late.toFixed(3)}`);
  assert.ok(run.losses.every(Number.isFinite), `${what}: non-finite loss`);
  // Handles are flat across steps (the first step creates the optimizer state inside the shim).
  const settled = run.handles.slice(1);
  assert.ok(settled.every((h) => h === settled[0]), `${what}: live handles ${settled}`);
}

Deno.test("MoCo v2 (slimmable): the loss falls on a handful of images; handles stay flat", () => {
  manualSeed(2);
  const m = widenMoCoHead(new MoCoV2({ ...COMMON, dim: 16, queueSize: 32, temperature: 0.2 }));
  const run = train(m, 0.03, 40);
  // The first steps compare against a random queue; measure once it holds real keys.
  assertLearns(run, 4, "MoCo v2");
  assert.ok(run.metrics.every((x) => x.momentum === 0.999 && x.widths.length === 2));
  m.dispose();
});

Deno.test("MoCo v3 (slimmable): the loss falls; the momentum follows the cosine schedule", () => {
  manualSeed(2);
  const m = new MoCoV3({ ...COMMON, dim: 16, mlpDim: 32, temperature: 0.2, epochs: 1 });
  const run = train(m, 0.02, 30);
  assertLearns(run, 0, "MoCo v3");
  const ms = run.metrics.map((x) => x.momentum!);
  assert.equal(ms[0], 0.99);
  assert.ok(ms.every((x, i) => i === 0 || x > ms[i - 1]), "momentum increases");
  m.dispose();
});

Deno.test("SimCLR (slimmable): the loss falls; contrastive top-1 rises", () => {
  manualSeed(3);
  const m = new SimCLR({ ...COMMON, dim: 16, mlpDim: 32 });
  const run = train(m, 0.02, 30);
  assertLearns(run, 0, "SimCLR");
  const top1 = run.metrics.map((x) => x.widths[1].top1);
  assert.ok(mean(top1.slice(-4)) > mean(top1.slice(0, 4)), `top-1 ${top1}`);
  m.dispose();
});

Deno.test("gradient diagnostics: every N steps; magnitudes equal those of the summed gradient", () => {
  manualSeed(4);
  const m = new MoCoV3({ ...COMMON, dim: 8, mlpDim: 16, epochs: 1, gradDiagnostics: { every: 3 } });
  const [a, b] = views();
  for (let step = 0; step < 4; step++) {
    scope(() => {
      const { loss, metrics } = m.trainingStep(a, b, { epoch: 0, step });
      assert.equal(metrics.grad !== undefined, step % 3 === 0, `step ${step}`);
      m.zeroGrad();
      loss.backward();
      if (!metrics.grad) return;
      const g = metrics.grad;
      assert.deepEqual(g.widths, [1, 0.5]);
      assert.equal(g.cosine[0], null);
      assert.ok(Math.abs(g.cosine[1]!) <= 1);
      // The in-step magnitudes come from Σ_w ∂L_w/∂θ; after backward, .grad holds the same sum.
      const after = m.gradientMagnitudes();
      g.magnitude.forEach((x, i) =>
        assert.ok(
          Math.abs(x - after.magnitude[i]) <= 1e-4 * x + 1e-7,
          `‖g_${i}‖ ${x} vs ${after.magnitude[i]}`,
        )
      );
      // Width 0.5 uses a subset of the weights, so its restricted norm is smaller.
      assert.ok(after.magnitude[1] < after.magnitude[0]);
    });
  }
  // The diagnosed layers are the encoder's and the predictor's conv/linear weights.
  const names = m.diagnosedLayers.map((l) => l.name);
  assert.ok(names.includes("base_encoder.conv1.weight") && names.includes("predictor.3.weight"));
  assert.ok(!names.some((n) => n.includes("momentum_encoder") || n.includes(".bn")));
  a.dispose();
  b.dispose();
  m.dispose();
});

Deno.test("parameter groups: weights decay, biases and norms do not (or one group, as the reference)", () => {
  const m = new SimCLR({ ...COMMON, dim: 8, mlpDim: 16 });
  const [decay, none] = m.parameterGroups(1e-4);
  assert.ok(decay.params.every((p) => p.ndim > 1) && none.params.every((p) => p.ndim <= 1));
  assert.equal(decay.params.length + none.params.length, m.trainableParameters().length);
  assert.deepEqual([decay.options, none.options], [{ weight_decay: 1e-4 }, { weight_decay: 0 }]);
  const single = m.parameterGroups(1e-4, false);
  assert.equal(single.length, 1);
  assert.equal(single[0].params.length, m.trainableParameters().length);
  assert.equal(m.baseLr(0.3, 10), 0.3);
  m.afterOptimizerStep();
  m.dispose();
});
