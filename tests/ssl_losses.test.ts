/**
 * SlimCLR losses against PyTorch on fixed embeddings and logits (fixtures from
 * tests/fixtures/make_ssl_fixtures.py, which implements the reference math on its own): MoCo v2
 * InfoNCE, MoCo v3, NT-Xent, SEED KD, MSE, the per-width composition for every distillation
 * variant (values and gradients), the re-weighting schemes, the momentum schedule, slow start.
 */
import assert from "node:assert/strict";
import { scalar, type Tensor } from "../mod.ts";
import {
  composeSlimLoss,
  contrastiveTop1,
  cosineMomentum,
  type DistillKind,
  infoNCE,
  kdCrossEntropy,
  lossWeights,
  mocoV2Labels,
  mocoV2Logits,
  mocoV3Labels,
  mocoV3Logits,
  mocoV3Loss,
  mseDistill,
  ntXent,
  ntXentLabels,
  ntXentLogits,
  pyRound,
  slimEnabled,
  slowStartBaseLr,
  type WidthOutput,
} from "../lib/ssl/mod.ts";
import { assertClose, fromJSON, leakFree, readFixture, type TensorJSON } from "./_helpers.ts";
import { cat } from "../mod.ts";

interface ComposeCase {
  kind: DistillKind;
  full: boolean;
  alpha: number;
  scheme: number;
  studentT: number;
  teacherT: number;
  slim: boolean;
  weights: number[];
  total: number;
  terms: number[];
  distill: (number | null)[];
  grad_emb: (TensorJSON | null)[];
  grad_logits: (TensorJSON | null)[];
  grad_loss: (number | null)[];
}

// deno-lint-ignore no-explicit-any
const FIX: any = readFixture(new URL("./fixtures/ssl/losses.json", import.meta.url));

const near = (got: number, want: number, what: string, rtol = 1e-5, atol = 1e-6) =>
  assert.ok(
    Math.abs(got - want) <= atol + rtol * Math.abs(want),
    `${what}: got ${got}, expected ${want}`,
  );

Deno.test("MoCo v2: un-scaled logits, InfoNCE at τ and top-1 match PyTorch", () => {
  leakFree(() => {
    const c = FIX.mocov2;
    const logits = mocoV2Logits(fromJSON(c.q), fromJSON(c.k), fromJSON(c.queue));
    assertClose(logits, c.logits, 1e-5, 1e-6, "logits");
    const labels = mocoV2Labels(6);
    near(infoNCE(logits, labels, c.temperature).item(), c.loss, "loss");
    near(contrastiveTop1(logits, labels).item(), c.top1, "top1");
  });
});

Deno.test("MoCo v3: CE(q·kᵀ/τ, arange + N·rank)·2τ matches PyTorch", () => {
  leakFree(() => {
    const c = FIX.mocov3;
    const logits = mocoV3Logits(fromJSON(c.q), fromJSON(c.k), c.temperature);
    assertClose(logits, c.logits, 1e-5, 1e-6, "logits");
    near(mocoV3Loss(logits, mocoV3Labels(6, 0), c.temperature).item(), c.loss_rank0, "rank 0");
    near(mocoV3Loss(logits, mocoV3Labels(6, 1), c.temperature).item(), c.loss_rank1, "rank 1");
    near(contrastiveTop1(logits, mocoV3Labels(6, 0)).item(), c.top1_rank0, "top1");
  });
});

Deno.test("NT-Xent: 2N views, diagonal removed, labels [arange(N)+N−1, arange(N)]", () => {
  leakFree(() => {
    const c = FIX.ntxent;
    const logits = ntXentLogits(cat([fromJSON(c.z1), fromJSON(c.z2)]));
    assertClose(logits, c.logits, 1e-5, 1e-6, "logits");
    const labels = ntXentLabels(5);
    assert.deepEqual(Array.from(labels.toArray() as BigInt64Array, Number), c.labels.data);
    near(ntXent(logits, labels, c.temperature).item(), c.loss, "loss");
    near(contrastiveTop1(logits, labels).item(), c.top1, "top1");
  });
});

Deno.test("SEED KD T_s²·CE(softmax(t/T_t), log_softmax(s/T_s)) and MSE match PyTorch", () => {
  leakFree(() => {
    const c = FIX.kd;
    const s = fromJSON(c.student);
    const t = fromJSON(c.teacher);
    for (const k of c.cases) {
      near(
        kdCrossEntropy(s, t, k.studentT, k.teacherT).item(),
        k.loss,
        `kd ${k.studentT}/${k.teacherT}`,
      );
    }
    near(mseDistill(s, t).item(), c.mse, "mse");
  });
});

function checkGrad(got: Tensor | null, want: TensorJSON | null, what: string) {
  if (want === null) {
    assert.ok(got === null || got.abs().max().item() === 0, `${what}: expected no gradient`);
    return;
  }
  assert.ok(got, `${what}: missing gradient`);
  assertClose(got, want, 1e-4, 1e-6, what);
}

Deno.test("per-width composition: each distillation variant, full distillation, α, λ, slow start", () => {
  const c = FIX.compose;
  for (const k of c.cases as ComposeCase[]) {
    const name = `${k.kind}${k.full ? "+full" : ""} α=${k.alpha} scheme ${k.scheme}${
      k.slim ? "" : " (before slow start)"
    }`;
    leakFree(() => {
      const weights = lossWeights(c.widths, k.scheme);
      assert.deepEqual(weights, k.weights, `${name}: weights`);
      const outs: WidthOutput[] = c.widths.map((width: number, i: number) => ({
        width,
        embedding: fromJSON(c.embeddings[i], true),
        logits: fromJSON(c.logits[i], true),
        contrastive: scalar(c.contrastive[i], { requiresGrad: true }),
        labels: mocoV2Labels(4),
      }));
      const distill = {
        kind: k.kind,
        alpha: k.alpha,
        studentT: k.studentT,
        teacherT: k.teacherT,
        full: k.full,
      };
      const r = composeSlimLoss(outs, weights, distill, k.slim);
      near(r.total.item(), k.total, `${name}: total`, 1e-5);
      assert.equal(r.terms.length, k.terms.length);
      r.terms.forEach((t, i) => near(t.item(), k.terms[i], `${name}: term ${i}`, 1e-5));
      r.distill.forEach((d, i) => {
        const want = k.distill[i];
        if (want === null) assert.equal(d, null, `${name}: distill ${i}`);
        else near(d!.item(), want, `${name}: distill ${i}`, 1e-5);
      });
      r.total.backward();
      outs.forEach((o, i) => {
        checkGrad(o.embedding.grad, k.grad_emb[i], `${name}: ∂/∂embedding ${i}`);
        checkGrad(o.logits.grad, k.grad_logits[i], `${name}: ∂/∂logits ${i}`);
        const gl = o.contrastive.grad;
        if (k.grad_loss[i] === null) assert.equal(gl, null);
        else near(gl!.item(), k.grad_loss[i]!, `${name}: ∂/∂ℓ ${i}`, 1e-6);
      });
    });
  }
});

Deno.test("loss re-weighting: schemes 0–8 match the reference function on several width lists", () => {
  for (const c of FIX.lossWeights) {
    assert.deepEqual(
      lossWeights(c.widths, c.scheme),
      c.weights,
      `[${c.widths}] scheme ${c.scheme}`,
    );
  }
});

Deno.test("loss re-weighting: every value of the spec §3.3 table", () => {
  const a = [1, 0.5, 0.25];
  const b = [1, 0.75, 0.5, 0.25];
  const table: [number, number[], number[]][] = [
    [0, [1, 1, 1], [1, 1, 1, 1]],
    [4, [1, 1, 1], [1, 1, 1, 1]],
    [1, [0.571, 0.286, 0.143], [0.4, 0.3, 0.2, 0.1]],
    [2, [1, 0.5, 0.25], [1, 0.75, 0.5, 0.25]],
    [3, [1.714, 0.857, 0.429], [1.6, 1.2, 0.8, 0.4]],
    [5, [1.75, 1, 1], [2.5, 1, 1, 1]],
    [6, [1.312, 0.938, 0.75], [1.538, 1.077, 0.769, 0.615]],
    [7, [1.5, 1, 1], [1.75, 1, 1, 1]],
  ];
  for (const [scheme, wa, wb] of table) {
    assert.deepEqual(lossWeights(a, scheme), wa, `scheme ${scheme} on [${a}]`);
    assert.deepEqual(lossWeights(b, scheme), wb, `scheme ${scheme} on [${b}]`);
  }
  assert.deepEqual(lossWeights([1], 5), [1]);
});

Deno.test("pyRound rounds exact ties to even, like Python's round", () => {
  assert.equal(pyRound(1.3125, 3), 1.312);
  assert.equal(pyRound(0.9375, 3), 0.938);
  assert.equal(pyRound(0.0625, 3), 0.062);
  assert.equal(pyRound(2.5, 0), 2);
  assert.equal(pyRound(-0.0625, 3), -0.062);
  assert.equal(pyRound(0.5714285714, 3), 0.571);
  assert.equal(pyRound(1.0769230769, 3), 1.077);
});

Deno.test("MoCo v3 momentum schedule: 0.99, 0.99146, 0.995, 1.0 at e = 0, E/4, E/2, E", () => {
  const m = (e: number) => cosineMomentum(e, 300, 0.99);
  near(m(0), 0.99, "e=0", 0, 1e-12);
  near(m(75), 0.99146, "e=E/4", 0, 5e-6);
  near(m(150), 0.995, "e=E/2", 0, 1e-12);
  near(m(300), 1.0, "e=E", 0, 1e-12);
  for (const c of FIX.momentum) {
    near(cosineMomentum(c.epoch, c.epochs, c.base), c.m, `e=${c.epoch}`);
  }
});

Deno.test("slow start: sub-networks from the (fractional) start epoch; LR reset only when asked", () => {
  assert.equal(slimEnabled(0), true);
  assert.equal(slimEnabled(99.99, { startEpoch: 100 }), false);
  assert.equal(slimEnabled(100, { startEpoch: 100 }), true);
  // Default: the schedule is unchanged (the reference's 1e-4 reset, spec §7 D1, is not applied).
  assert.equal(slowStartBaseLr(0.2, 150, { startEpoch: 100 }), 0.2);
  assert.equal(slowStartBaseLr(1.2, 149.5, { startEpoch: 150, slimStartLr: 3.2 }), 1.2);
  assert.equal(slowStartBaseLr(1.2, 150, { startEpoch: 150, slimStartLr: 3.2 }), 3.2);
  assert.equal(slowStartBaseLr(1.2, 150, { slimStartLr: 3.2 }), 1.2);
});
