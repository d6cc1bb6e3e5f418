/**
 * Shared test helpers: tensors from JSON fixtures, tolerance comparisons with readable failure
 * messages, and a leak check around a scoped test body.
 */
import assert from "node:assert/strict";
import { OPS } from "../ffi/ops.ts";
import { type DType, liveHandles, models, raw, scope, type Tensor, tensor } from "../mod.ts";

/** A tensor as the fixture scripts write it: shape, dtype and flat row-major values. */
export interface TensorJSON {
  shape: number[];
  dtype?: string;
  data: number[];
}

/** Expected values: a fixture tensor, or any shape plus flat values. */
export interface Expected {
  shape: readonly number[];
  dtype?: string;
  data: ArrayLike<number>;
}

/**
 * Reads a JSON fixture. The generated fixtures are compact JSON behind a leading
 * `// deno-fmt-ignore-file` line (so that `deno fmt` leaves them alone); leading `//` comment
 * lines are skipped.
 */
export function readFixture<T>(url: URL): T {
  const text = Deno.readTextFileSync(url).replace(/^(\s*\/\/[^\n]*\n)+/, "");
  return JSON.parse(text) as T;
}

/** Builds a tensor from its fixture form (float32 unless the fixture names a dtype). */
export function fromJSON(t: TensorJSON, requiresGrad = false): Tensor {
  const dtype = (t.dtype ?? "float32") as DType;
  return tensor(t.data, t.shape, { dtype, requiresGrad });
}

/** The values of a tensor as plain numbers (int64 and bool included). */
export function numbers(t: Tensor): number[] {
  return Array.from(t.toArray() as ArrayLike<number | bigint>, Number);
}

const fmt = (xs: readonly number[]) => `[${xs.join(", ")}]`;

/**
 * Asserts that `actual` has the expected shape (and dtype, when given) and that every element
 * satisfies |a - e| <= atol + rtol·|e| (NaN matches NaN only; infinities must match exactly).
 * With rtol = atol = 0 the comparison is exact.
 */
export function assertClose(
  actual: Tensor,
  expected: Expected,
  rtol = 1e-5,
  atol = 1e-8,
  what = "tensor",
): void {
  const shape = actual.shape;
  if (shape.length !== expected.shape.length || shape.some((s, i) => s !== expected.shape[i])) {
    assert.fail(
      `${what}: shape ${fmt(shape)}, expected ${fmt([...expected.shape])}`,
    );
  }
  if (expected.dtype !== undefined && actual.dtype !== expected.dtype) {
    assert.fail(`${what}: dtype ${actual.dtype}, expected ${expected.dtype}`);
  }
  const got = numbers(actual);
  const want = expected.data;
  if (got.length !== want.length) {
    assert.fail(`${what}: ${got.length} elements, expected ${want.length}`);
  }
  // fixture floats are the shortest decimals that round-trip to float32: round them back
  const round = actual.dtype === "float32" ? Math.fround : (x: number) => x;
  let worst = -1;
  let worstExcess = 0;
  let bad = 0;
  for (let i = 0; i < got.length; i++) {
    const a = got[i];
    const e = round(want[i]);
    let ok: boolean;
    let excess = 0;
    if (Number.isNaN(e) || Number.isNaN(a)) ok = Number.isNaN(e) && Number.isNaN(a);
    else if (!Number.isFinite(e) || !Number.isFinite(a)) ok = a === e;
    else {
      excess = Math.abs(a - e) - (atol + rtol * Math.abs(e));
      ok = excess <= 0;
    }
    if (!ok) {
      bad++;
      if (worst < 0 || excess > worstExcess || !Number.isFinite(excess)) {
        worst = i;
        worstExcess = excess;
      }
    }
  }
  if (bad > 0) {
    const e = round(want[worst]);
    const a = got[worst];
    const idx = unravel(worst, expected.shape);
    assert.fail(
      `${what}: ${bad} of ${got.length} elements differ (rtol ${rtol}, atol ${atol}); worst at ` +
        `${fmt(idx)}: got ${a}, expected ${e} (|diff| ${Math.abs(a - e)}, ` +
        `rel ${Math.abs(a - e) / Math.max(Math.abs(e), Number.MIN_VALUE)})`,
    );
  }
}

function unravel(flat: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = flat % shape[d];
    flat = Math.floor(flat / shape[d]);
  }
  return idx;
}

/** Asserts two tensors are equal in shape, dtype and every element. */
export function assertTensorEqual(actual: Tensor, expected: Tensor, what = "tensor"): void {
  assertClose(
    actual,
    { shape: expected.shape, dtype: expected.dtype, data: numbers(expected) },
    0,
    0,
    what,
  );
}

// ---- leak checks ----
//
// `liveHandles()` counts every handle of the process, and `deno test --parallel` (the `test`
// task) runs test modules as workers of one process, so a before/after comparison of it is
// disturbed by whatever the other modules allocate meanwhile. The check below therefore counts
// the handles of this worker itself, by wrapping the raw ops that return or free handles; it
// falls back to the process-wide count if the raw op table cannot be wrapped.

let workerLive = 0;
let counting: boolean | null = null;

function installCounter(): boolean {
  if (counting !== null) return counting;
  try {
    const r = raw() as unknown as Record<string, (...a: unknown[]) => unknown>;
    for (const [name, spec] of Object.entries(OPS)) {
      const f = r[name];
      if (typeof f !== "function") throw new Error(`raw op '${name}' is missing`);
      if (name === "free") {
        r[name] = (h: unknown) => {
          const out = f(h);
          if (h) workerLive--;
          return out;
        };
      } else if (spec.ret === "T" || spec.ret === "T?") {
        r[name] = (...a: unknown[]) => {
          const h = f(...a);
          if (h) workerLive++;
          return h;
        };
      } else if (spec.ret === "T[]") {
        r[name] = (...a: unknown[]) => {
          const hs = f(...a) as unknown[];
          for (const h of hs) if (h) workerLive++;
          return hs;
        };
      }
    }
    counting = true;
  } catch {
    counting = false;
  }
  return counting;
}

/** Live tensor handles created (and not yet freed) by this worker since the count started. */
export function workerHandles(): number {
  return installCounter() ? workerLive : liveHandles().handles;
}

/**
 * Runs `fn` inside `scope()` and asserts that the number of live native handles is the same
 * afterwards: nothing leaked, nothing freed twice. Handles are counted per worker (see above),
 * so the check holds under `deno test --parallel` too; run alone, it agrees with
 * `liveHandles().handles`, which is checked as well when no other worker allocated meanwhile.
 */
export function leakFree(fn: () => void): void {
  installCounter();
  const before = workerHandles();
  const globalBefore = liveHandles().handles;
  scope(fn);
  const after = workerHandles();
  if (after !== before) {
    assert.fail(`live tensor handles of this worker went from ${before} to ${after}`);
  }
  const globalAfter = liveHandles().handles;
  if (!counting && globalAfter !== globalBefore) {
    assert.fail(`live tensor handles went from ${globalBefore} to ${globalAfter}`);
  }
}

/**
 * A tiny slimmable MoCo v2 encoder (ResNet-18, 1-channel input, base width 4, widths 1 and 0.5,
 * 8-dimensional head) for tests; `options` override any of it.
 */
export function tinyEncoder(
  options: Partial<models.SlimmableResNetOptions> = {},
): models.SlimmableResNet {
  return new models.SlimmableResNet({
    arch: "resnet18",
    stem: "small",
    inChannels: 1,
    baseWidth: 4,
    widths: [1, 0.5],
    head: "mocov2_slim",
    numClasses: 8,
    ...options,
  });
}
