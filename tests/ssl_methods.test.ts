/**
 * One training step of MoCo v2, MoCo v3 and SimCLR, slimmable (widths 1/0.75/0.5) and plain, on
 * a tiny slimmable ResNet-18 with weights and inputs shared with PyTorch (fixtures from
 * tests/fixtures/make_ssl_fixtures.py): per-width losses, top-1, the gradient norm of every
 * parameter, gradient diagnostics, the queue after the enqueue, batch-norm statistics, and
 * slow-start gating.
 */
import assert from "node:assert/strict";
import { cuda, Generator, noGrad, randn, scope, type Tensor } from "../mod.ts";
import { fromRaw, loadSafetensors } from "../lib/serialize/mod.ts";
import { loadModel, saveModel } from "../lib/models/model_file.ts";
import {
  type GradDiagnostics,
  MoCoV2,
  MoCoV3,
  SimCLR,
  type SlimSSLMethod,
  type StepMetrics,
} from "../lib/ssl/mod.ts";
import { assertClose, leakFree, readFixture, type TensorJSON } from "./_helpers.ts";

interface Expected {
  loss: number;
  widths: {
    width: number;
    weight: number;
    contrastive: number;
    distill: number | null;
    loss: number;
    top1: number;
  }[];
  gradNorms: Record<string, number>;
  grad?: Omit<GradDiagnostics, "widths">;
  momentum?: number;
  queue?: TensorJSON;
  queue_ptr?: number;
  bn_q_width1_running_mean?: TensorJSON;
  bn_k_running_mean?: TensorJSON;
}

// deno-lint-ignore no-explicit-any
const NETS: any = readFixture(new URL("./fixtures/ssl/nets.json", import.meta.url));
const RAW = (await loadSafetensors(new URL("./fixtures/ssl/nets.safetensors", import.meta.url)))
  .tensors;
const T = new Map<string, Tensor>([...RAW].map(([k, r]) => [k, fromRaw(r).keep()]));
const ENCODER = {
  arch: "resnet18" as const,
  stem: "small" as const,
  inChannels: NETS.in_channels,
  baseWidth: NETS.base,
};
const CTX = { epoch: 5, step: 0 };

/** The fixture tensor for one of the method's state-dict keys. */
function source(method: string, key: string): Tensor | undefined {
  const [, encoder, rest] =
    key.match(/^(encoder_q|encoder_k|base_encoder|momentum_encoder)\.(.*)$/) ??
      [];
  if (key === "queue") return T.get("mocov2.queue");
  if (key.startsWith("predictor.")) return T.get(`mocov3.${key}`);
  if (!encoder) return undefined;
  return rest.startsWith("fc.") ? T.get(`${method}.${rest}`) : T.get(`trunk.${rest}`);
}

/** Loads the fixture weights; momentum encoders start as `key_scale`× the trained encoder. */
function load<M extends SlimSSLMethod>(m: M, name: string): M {
  const sd = new Map<string, Tensor>();
  for (const [k, own] of m.stateDict()) sd.set(k, source(name, k) ?? own);
  m.loadStateDict(sd);
  const momentum = m instanceof MoCoV2
    ? m.encoderK
    : m instanceof MoCoV3
    ? m.momentumEncoder
    : null;
  if (momentum) noGrad(() => momentum.parameters().forEach((p) => p.mul_(NETS.key_scale)));
  return m;
}

function near(got: number, want: number, what: string, rtol = 2e-4, atol = 1e-5) {
  assert.ok(
    Math.abs(got - want) <= atol + rtol * Math.abs(want),
    `${what}: got ${got}, expected ${want}`,
  );
}

/** Tolerances: the defaults compare CPU with CPU; CUDA runs convolutions in TF32. */
interface Tol {
  rtol: number;
  grad: number;
  top1: number;
  diagnostics: boolean;
}
const CPU: Tol = { rtol: 2e-4, grad: 2e-3, top1: 1e-4, diagnostics: true };
const GPU: Tol = { rtol: 2e-2, grad: 5e-2, top1: 12.5, diagnostics: false };

function checkMetrics(got: StepMetrics, want: Expected, what: string, tol = CPU) {
  near(got.loss, want.loss, `${what} loss`, tol.rtol);
  assert.equal(got.widths.length, want.widths.length, `${what}: widths`);
  got.widths.forEach((g, i) => {
    const w = want.widths[i];
    const at = `${what} width ${w.width}`;
    assert.equal(g.width, w.width);
    near(g.weight, w.weight, `${at} λ`, 0, 1e-12);
    near(g.contrastive, w.contrastive, `${at} contrastive`, tol.rtol);
    near(g.loss, w.loss, `${at} weighted`, tol.rtol);
    near(g.top1, w.top1, `${at} top-1`, 0, tol.top1);
    if (w.distill === null) assert.equal(g.distill, null, `${at} distill`);
    else near(g.distill!, w.distill, `${at} distill`, tol.rtol);
  });
  if (want.grad && tol.diagnostics) {
    assert.ok(got.grad, `${what}: diagnostics missing`);
    want.grad.magnitude.forEach((m, i) =>
      near(got.grad!.magnitude[i], m, `${what} ‖g_${i}‖`, 1e-3)
    );
    want.grad.meanLayerMagnitude.forEach((m, i) =>
      near(got.grad!.meanLayerMagnitude[i], m, `${what} mean layer ‖g_${i}‖`, 1e-3)
    );
    want.grad.cosine.forEach((c, i) => {
      if (c === null) assert.equal(got.grad!.cosine[i], null);
      else near(got.grad!.cosine[i]!, c, `${what} cos_${i}`, 1e-2, 1e-4);
    });
  }
}

function checkGradNorms(
  m: SlimSSLMethod,
  want: Record<string, number>,
  what: string,
  tol = CPU,
) {
  const got = new Map<string, number>();
  for (const [name, p] of m.namedParameters()) {
    const g = p.grad;
    if (g) got.set(name, g.norm().item());
  }
  assert.deepEqual(
    [...got.keys()].sort(),
    Object.keys(want).sort(),
    `${what}: parameters with a gradient`,
  );
  for (const [name, n] of got) near(n, want[name], `${what} ‖∂/∂${name}‖`, tol.grad, 1e-6);
}

/** Runs one step and checks it against the fixture; returns the metrics. */
function step(m: SlimSSLMethod, want: Expected, what: string, ctx = CTX, tol = CPU): StepMetrics {
  const onGpu = tol === GPU;
  const [a, b] = ["input.a", "input.b"].map((k) => onGpu ? T.get(k)!.to("cuda") : T.get(k)!);
  const { loss, metrics } = m.trainingStep(a, b, ctx);
  checkMetrics(metrics, want, what, tol);
  loss.backward();
  checkGradNorms(m, want.gradNorms, what, tol);
  return metrics;
}

const distillOf = (c: { distill: Record<string, unknown> }) => {
  const { full, ...d } = c.distill;
  return { ...d, full: full as boolean } as MoCoV2["distill"];
};

function mocoV2(widths: number[], slowStart?: number) {
  const c = NETS.mocov2.config;
  return load(
    new MoCoV2({
      encoder: ENCODER,
      widths,
      dim: NETS.dim,
      queueSize: NETS.queue,
      momentum: c.momentum,
      temperature: c.temperature,
      distill: distillOf(c),
      lossWeighting: c.scheme,
      slowStart: slowStart === undefined ? undefined : { startEpoch: slowStart },
      gradDiagnostics: { every: 1 },
    }),
    "mocov2",
  );
}

Deno.test("MoCo v2 (slimmable, SEED + full distillation): step matches PyTorch", () => {
  const m = mocoV2(NETS.widths);
  leakFree(() => {
    const want: Expected = NETS.mocov2.slim;
    const metrics = step(m, want, "mocov2");
    assert.equal(metrics.momentum, 0.999);
    assertClose(m.queue, want.queue!, 1e-5, 1e-6, "queue after enqueue");
    assert.equal(m.queuePtr.item(), want.queue_ptr);
    const q = m.encoderQ.bn1 as unknown as { bn: { runningMean: Tensor }[] };
    assertClose(q.bn[1].runningMean, want.bn_q_width1_running_mean!, 1e-4, 1e-6, "query BN (0.75)");
    const k = m.encoderK.bn1 as unknown as { bn: { runningMean: Tensor }[] };
    assertClose(k.bn[0].runningMean, want.bn_k_running_mean!, 1e-4, 1e-6, "key BN (1.0)");
  });
  m.dispose();
});

Deno.test("MoCo v2 plain (widths [1]): step matches PyTorch", () => {
  const m = mocoV2([1]);
  leakFree(() => void step(m, NETS.mocov2.plain, "mocov2 plain"));
  m.dispose();
});

Deno.test("slow start: before the start only the full width runs, unweighted, sub-widths untouched", () => {
  const m = mocoV2(NETS.widths, 10);
  const subBns = m.encoderQ.namedModules().flatMap(([path, mod]) =>
    /\.bn\.[12]$/.test(path) ? [[path, mod] as const] : []
  );
  assert.ok(subBns.length > 0);
  const before = subBns.map(([, bn]) => bn.stateDict().get("running_mean")!.clone().keep());
  leakFree(() => {
    const metrics = step(m, NETS.mocov2.slowStart, "before the slow start", {
      epoch: 9.99,
      step: 0,
    });
    assert.equal(metrics.slimEnabled, false);
    assert.equal(metrics.widths[0].weight, 1);
    for (const [path, bn] of subBns) {
      for (const [n, p] of bn.namedParameters()) {
        assert.equal(p.grad, null, `${path}.${n} has a gradient`);
      }
      assert.equal(bn.stateDict().get("num_batches_tracked")!.item(), 0, `${path} ran`);
    }
    subBns.forEach(([path, bn], i) =>
      assert.ok(bn.stateDict().get("running_mean")!.equal(before[i]), `${path} statistics moved`)
    );
  });
  before.forEach((t) => t.dispose());
  // From the start epoch on, every width runs and λ₀ applies.
  leakFree(() => {
    m.zeroGrad();
    const { metrics } = m.trainingStep(T.get("input.a")!, T.get("input.b")!, {
      epoch: 10,
      step: 1,
    });
    assert.equal(metrics.slimEnabled, true);
    assert.deepEqual(metrics.widths.map((w) => w.weight), [2.25, 1, 1]);
  });
  m.dispose();
});

function mocoV3(widths: number[]) {
  const c = NETS.mocov3.config;
  return load(
    new MoCoV3({
      encoder: ENCODER,
      widths,
      dim: NETS.dim,
      mlpDim: NETS.mlp,
      temperature: c.temperature,
      momentum: c.momentum,
      epochs: c.epochs,
      distill: distillOf(c),
      lossWeighting: c.scheme,
      gradDiagnostics: { every: 1 },
    }),
    "mocov3",
  );
}

Deno.test("MoCo v3 (slimmable, symmetric, cosine momentum): step matches PyTorch", () => {
  const m = mocoV3(NETS.widths);
  leakFree(() => {
    const want: Expected = NETS.mocov3.slim;
    const metrics = step(m, want, "mocov3", { epoch: NETS.mocov3.config.epoch, step: 0 });
    near(metrics.momentum!, want.momentum!, "momentum", 0, 1e-12);
  });
  m.dispose();
});

Deno.test("MoCo v3 plain (widths [1]): step matches PyTorch", () => {
  const m = mocoV3([1]);
  leakFree(() => void step(m, NETS.mocov3.plain, "mocov3 plain", { epoch: 2.5, step: 1 }));
  m.dispose();
});

function simclr(widths: number[]) {
  const c = NETS.simclr.config;
  return load(
    new SimCLR({
      encoder: ENCODER,
      widths,
      dim: NETS.dim,
      mlpDim: NETS.mlp,
      temperature: c.temperature,
      distill: distillOf(c),
      lossWeighting: c.scheme,
      gradDiagnostics: { every: 1 },
    }),
    "simclr",
  );
}

Deno.test("SimCLR (slimmable, MSE on logits): step matches PyTorch", () => {
  const m = simclr(NETS.widths);
  leakFree(() => void step(m, NETS.simclr.slim, "simclr"));
  m.dispose();
});

Deno.test("SimCLR plain (widths [1]): step matches PyTorch", () => {
  const m = simclr([1]);
  leakFree(() => void step(m, NETS.simclr.plain, "simclr plain", { epoch: 0, step: 1 }));
  m.dispose();
});

Deno.test("state dicts: reference layout with queue, queue_ptr and the momentum encoders", () => {
  const v2 = new MoCoV2({
    encoder: ENCODER,
    widths: [1, 0.5],
    dim: NETS.dim,
    queueSize: NETS.queue,
  });
  const sd = v2.stateDict();
  assert.deepEqual([...sd.keys()].slice(0, 2), ["queue", "queue_ptr"]);
  assert.deepEqual(sd.get("queue")!.shape, [NETS.dim, NETS.queue]);
  assert.deepEqual(sd.get("queue_ptr")!.shape, [1]);
  assert.equal(sd.get("queue_ptr")!.dtype, "int64");
  for (const k of ["encoder_q.conv1.weight", "encoder_k.conv1.weight", "encoder_q.fc.2.weight"]) {
    assert.ok(sd.has(k), k);
  }
  assert.equal(v2.trainableParameters().length, v2.encoderQ.parameters().length);
  v2.dispose();
  const v3 = new MoCoV3({ encoder: ENCODER, widths: [1, 0.5], dim: 8, mlpDim: 16, epochs: 1 });
  const keys = [...v3.stateDict().keys()];
  for (
    const k of [
      "base_encoder.fc.0.weight",
      "base_encoder.fc.4.bn.1.running_var",
      "momentum_encoder.fc.3.weight",
      "predictor.0.weight",
      "predictor.1.bn.1.weight",
      "predictor.3.weight",
    ]
  ) assert.ok(keys.includes(k), k);
  // The momentum encoder is frozen; the predictor trains.
  const trainable = new Set(v3.trainableParameters());
  assert.ok(v3.momentumEncoder.parameters().every((p) => !trainable.has(p)));
  assert.ok(v3.predictor.parameters().every((p) => trainable.has(p)));
  v3.dispose();
});

Deno.test("a MoCo v2 projector with a hidden width of its own saves and loads as one", async () => {
  const v2 = new MoCoV2({ encoder: ENCODER, widths: [1, 0.5], dim: 8, queueSize: 16, mlpDim: 32 });
  const dir = await Deno.makeTempDir();
  try {
    const feat = v2.encoderQ.featureChannels[0];
    const sd = v2.encoderQ.stateDict();
    assert.deepEqual(sd.get("fc.0.weight")!.shape, [32, feat]);
    assert.deepEqual(sd.get("fc.2.weight")!.shape, [8, 32]);
    const path = `${dir}/model.pt`;
    await saveModel(path, v2.encoderQ);
    const back = await loadModel(path);
    v2.encoderQ.eval();
    back.eval();
    scope(() => {
      const x = randn([2, NETS.in_channels, 16, 16]);
      for (const w of [1, 0.5]) {
        const [a, b] = [v2.encoderQ, back].map((n) => n.withWidth(w, () => n.forward(x)));
        assert.deepEqual(b.shape, [2, 8]);
        assert.ok(b.equal(a), `width ${w}`);
      }
    });
    back.dispose();
  } finally {
    v2.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "CUDA: each method's step matches PyTorch's (TF32 tolerances); shuffle with a CPU generator",
  ignore: !cuda.isAvailable(),
  fn() {
    const v2 = mocoV2(NETS.widths).to("cuda");
    const v3 = mocoV3(NETS.widths).to("cuda");
    const sc = simclr(NETS.widths).to("cuda");
    leakFree(() => {
      step(v2, NETS.mocov2.slim, "mocov2 cuda", CTX, GPU);
      assertClose(v2.queue.to("cpu"), NETS.mocov2.slim.queue, 2e-2, 2e-3, "queue (cuda)");
      assert.equal(v2.queuePtr.item(), NETS.mocov2.slim.queue_ptr);
      step(v3, NETS.mocov3.slim, "mocov3 cuda", { epoch: NETS.mocov3.config.epoch, step: 0 }, GPU);
      step(sc, NETS.simclr.slim, "simclr cuda", CTX, GPU);
      // Diagnostics run on the device too (values are checked on the CPU).
      assert.ok(
        v2.trainingStep(randn([8, 1, 8, 8]).to("cuda"), randn([8, 1, 8, 8]).to("cuda"), CTX)
          .metrics.grad,
      );
    });
    for (const m of [v2, v3, sc]) m.dispose();
    const split = new MoCoV2({
      encoder: ENCODER,
      widths: [1, 0.5],
      dim: 8,
      queueSize: 16,
      keyBatchSplits: 2,
      generator: new Generator(1),
    }).to("cuda");
    leakFree(() => {
      const k = split.keys(randn([8, 1, 8, 8]).to("cuda"));
      assert.equal(k.device, "cuda:0");
      assert.ok(k.norm(2, 1).sub(1).abs().max().item() < 1e-4);
    });
    split.dispose();
  },
});

Deno.test("explicit loss weights replace the scheme; a wrong count is an error", () => {
  const make = (lossWeighting: number[]) =>
    new MoCoV2({
      encoder: ENCODER,
      widths: [1, 0.5],
      dim: NETS.dim,
      queueSize: NETS.queue,
      lossWeighting,
    });
  const m = make([4, 0.5]);
  assert.deepEqual(m.weights, [4, 0.5]);
  m.dispose();
  assert.throws(() => make([4, 1, 1]), /one non-negative λ per width \[1, 0\.5\]/);
  assert.throws(() => make([0, 1]), /the widest positive/);
});
