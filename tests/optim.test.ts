/**
 * Optimizers against torch.optim (and MoCo v3's LARS): parameter trajectories over six steps with
 * fixed gradients and one learning-rate change, lazily created state, state dicts in torch's
 * layout, the stateDict()/loadStateDict() round trip, and the EMA update. Fixtures come from
 * tests/fixtures/make_optim_fixtures.py.
 */
import assert from "node:assert/strict";
import {
  AdamW,
  type AdamWOptions,
  emaUpdate,
  LARS,
  type LARSOptions,
  type Optimizer,
  type OptimizerStateDict,
  SGD,
  type SGDOptions,
  type Tensor,
  tensor,
} from "../mod.ts";
import { WeightEma } from "../lib/train/weight_ema.ts";
import {
  assertClose,
  assertTensorEqual,
  fromJSON,
  leakFree,
  readFixture,
  type TensorJSON,
} from "./_helpers.ts";

type Named<T> = Record<string, T>;

interface TorchState {
  state: Record<string, Named<TensorJSON>>;
  param_groups: Named<unknown>[];
}

interface Run {
  kind: "sgd" | "adamw" | "lars";
  options: Named<number | boolean>;
  trajectory: Named<TensorJSON>[];
  states: Record<string, TorchState>;
}

interface EmaCase {
  k: TensorJSON[];
  q: TensorJSON[][];
  m: number[];
  after: TensorJSON[][];
}

const FIX = readFixture<{
  torch: string;
  names: string[];
  init: Named<TensorJSON>;
  grads: Named<TensorJSON | null>[];
  lr_step: number;
  lr_factor: number;
  runs: Named<Run>;
  ema: Named<EmaCase>;
}>(new URL("./fixtures/optim/optim.json", import.meta.url));

const RTOL = 1e-10;
const ATOL = 1e-13;

// deno-lint-ignore no-explicit-any
type AnyOptimizer = Optimizer<any>;

function makeOptimizer(run: Run, params: Tensor[], lrOverride?: number): AnyOptimizer {
  const o = { ...run.options, ...(lrOverride === undefined ? {} : { lr: lrOverride }) };
  switch (run.kind) {
    case "sgd":
      return new SGD(params, o as Partial<SGDOptions> & { lr: number });
    case "adamw":
      return new AdamW(params, o as Partial<AdamWOptions>);
    case "lars":
      return new LARS(params, o as Partial<LARSOptions> & { lr: number });
  }
}

/** Fresh float64 leaf parameters with the fixture's initial values. */
function initialParams(): Tensor[] {
  return FIX.names.map((n) => fromJSON(FIX.init[n], true));
}

/** One training step as torch does it: clear, set this step's gradients, maybe change lr, step. */
function step(opt: AnyOptimizer, params: Tensor[], s: number): void {
  opt.zeroGrad();
  FIX.names.forEach((n, i) => {
    const g = FIX.grads[s][n];
    if (g) params[i].grad = fromJSON(g);
  });
  if (s === FIX.lr_step) opt.groups[0].lr = opt.groups[0].lr * FIX.lr_factor;
  opt.step();
}

function assertParams(params: Tensor[], expected: Named<TensorJSON>, what: string): void {
  FIX.names.forEach((n, i) => assertClose(params[i], expected[n], RTOL, ATOL, `${what} ${n}`));
}

/** Our state dict against torch's: same parameters with state, same keys, same values. */
function assertStateDict(ours: OptimizerStateDict, torch: TorchState, what: string): void {
  const ids = (o: object) => Object.keys(o).map(Number).sort();
  assert.deepEqual(ids(ours.state), ids(torch.state), `${what}: parameters with state`);
  for (const [id, entry] of Object.entries(torch.state)) {
    const mine = ours.state[Number(id)];
    assert.deepEqual(
      Object.keys(mine).sort(),
      Object.keys(entry).sort(),
      `${what}: state keys of parameter ${id}`,
    );
    for (const [k, e] of Object.entries(entry)) {
      assertClose(mine[k], e, RTOL, ATOL, `${what}: state[${id}].${k}`);
    }
  }
  assert.equal(ours.param_groups.length, torch.param_groups.length);
  ours.param_groups.forEach((g, gi) => {
    const tg = torch.param_groups[gi];
    assert.deepEqual(g.params, tg.params, `${what}: param_groups[${gi}].params`);
    for (const [k, v] of Object.entries(g)) {
      if (k === "params") continue;
      assert.ok(k in tg, `${what}: param_groups[${gi}] has '${k}', torch does not`);
      assert.deepEqual(v, tg[k], `${what}: param_groups[${gi}].${k}`);
    }
  });
}

for (const [name, run] of Object.entries(FIX.runs)) {
  Deno.test(`optim ${name}: trajectory and state dicts match torch ${FIX.torch}`, () => {
    leakFree(() => {
      const params = initialParams();
      using opt = makeOptimizer(run, params);
      for (let s = 0; s < FIX.grads.length; s++) {
        step(opt, params, s);
        assertParams(params, run.trajectory[s], `${name} after step ${s + 1}:`);
        const snapshot = run.states[String(s + 1)];
        if (snapshot) assertStateDict(opt.stateDict(), snapshot, `${name} after step ${s + 1}`);
      }
    });
  });

  Deno.test(`optim ${name}: stateDict()/loadStateDict() round trip`, () => {
    leakFree(() => {
      const half = 3;
      const pa = initialParams();
      using a = makeOptimizer(run, pa);
      for (let s = 0; s < half; s++) step(a, pa, s);
      // a fresh optimizer on copies of the parameters, built with another lr: loading restores
      // the hyperparameters as well as the per-parameter state
      const pb = pa.map((p) => p.detach().clone().requiresGrad_(true));
      using b = makeOptimizer(run, pb, 123);
      const sd = a.stateDict();
      b.loadStateDict(sd);
      assert.equal(b.groups[0].lr, a.groups[0].lr, `${name}: lr after loadStateDict`);
      assertStateDict(b.stateDict(), run.states[String(half)], `${name} loaded`);
      for (let s = half; s < FIX.grads.length; s++) {
        step(a, pa, s);
        step(b, pb, s);
      }
      FIX.names.forEach((n, i) => assertTensorEqual(pb[i], pa[i], `${name} ${n}`));
      assertParams(pb, run.trajectory[FIX.grads.length - 1], `${name} resumed:`);
    });
  });
}

Deno.test("optim: a parameter gets state only at its first gradient", () => {
  leakFree(() => {
    for (const [name, run] of Object.entries(FIX.runs)) {
      const params = initialParams();
      using opt = makeOptimizer(run, params);
      const stateful = run.states["6"] && Object.keys(run.states["6"].state).length > 0;
      for (let s = 0; s < FIX.grads.length; s++) {
        step(opt, params, s);
        const sd = opt.stateDict();
        const hasC = 2 in sd.state;
        assert.equal(hasC, Boolean(stateful) && s >= 2, `${name} after step ${s + 1}: state of c`);
      }
      // AdamW counts steps per parameter: c has seen four gradients
      if (run.kind === "adamw") {
        const sd = opt.stateDict();
        assert.equal(sd.state[0].step.item(), 6);
        assert.equal(sd.state[2].step.item(), 4);
        assert.equal(sd.state[0].step.dtype, "float32");
      }
    }
  });
});

Deno.test("optim: AdamW stateDict has torch's layout", () => {
  leakFree(() => {
    const run = FIX.runs.adamw;
    const params = initialParams();
    using opt = makeOptimizer(run, params);
    for (let s = 0; s < FIX.grads.length; s++) step(opt, params, s);
    const sd = opt.stateDict();
    for (const id of [0, 1, 2]) {
      assert.deepEqual(Object.keys(sd.state[id]).sort(), ["exp_avg", "exp_avg_sq", "step"]);
      assert.deepEqual(sd.state[id].step.shape, []);
      assert.deepEqual(sd.state[id].exp_avg.shape, params[id].shape);
      assert.deepEqual(sd.state[id].exp_avg_sq.shape, params[id].shape);
    }
    const g = sd.param_groups[0];
    assert.deepEqual(g.params, [0, 1, 2]);
    assert.deepEqual(g.betas, [0.9, 0.999]);
    assert.equal(g.eps, 1e-8);
    assert.equal(g.weight_decay, 0.05);
    assert.equal(g.lr, 0.01 * FIX.lr_factor);
  });
});

for (const [dtype, c] of Object.entries(FIX.ema)) {
  Deno.test(`emaUpdate matches k = m·k + (1−m)·q (${dtype})`, () => {
    leakFree(() => {
      const k = c.k.map((t) => fromJSON(t));
      const [rtol, atol] = dtype === "float64" ? [1e-12, 1e-15] : [1e-6, 1e-7];
      c.q.forEach((qs, s) => {
        const q = qs.map((t) => fromJSON(t));
        emaUpdate(k, q, c.m[s]);
        k.forEach((t, i) => assertClose(t, c.after[s][i], rtol, atol, `ema step ${s} [${i}]`));
        // the sources are left alone
        q.forEach((t, i) => assertClose(t, qs[i], 0, 0, `ema source ${i}`));
      });
    });
  });
}

Deno.test("emaUpdate rejects lists of different lengths", () => {
  leakFree(() => {
    const k = [fromJSON(FIX.init.w), fromJSON(FIX.init.b)];
    assert.throws(() => emaUpdate(k, [fromJSON(FIX.init.w)], 0.9), /target list has 2/);
  });
});

Deno.test("WeightEma: decay min(d, (1+n)/(10+n)) per update, copied into the model, no leaks", () => {
  leakFree(() => {
    const p = tensor([1, 2], [2]);
    using ema = new WeightEma([p], 0.5);
    let want = [1, 2];
    for (let n = 0; n < 4; n++) {
      p.copy_(tensor([10 * (n + 1), -n], [2]));
      ema.update();
      const d = Math.min(0.5, (1 + n) / (10 + n));
      const now = [10 * (n + 1), -n];
      want = want.map((a, i) => d * a + (1 - d) * now[i]);
    }
    assert.equal(ema.updates, 4);
    ema.copyTo();
    const got = Array.from(p.toFloat32Array());
    got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 1e-5, `${got} vs ${want}`));
    p.dispose();
  });
});
