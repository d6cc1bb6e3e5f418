/** Momentum (key) encoders: initial copy, EMA update, and MoCo v3's cosine momentum schedule. */
import { noGrad } from "../autograd.ts";
import type { Module } from "../nn/module.ts";
import { emaUpdate } from "../optim.ts";

/**
 * MoCo v3's momentum at fractional epoch `e` of `E`: `m(e) = 1 − ½(1+cos(π·e/E))·(1−m₀)`
 * (spec §3.7). For m₀ = 0.99, E = 300: 0.99 at 0, 0.99146 at 75, 0.995 at 150, 1 at 300.
 */
export function cosineMomentum(epoch: number, totalEpochs: number, base: number): number {
  return 1 - 0.5 * (1 + Math.cos((Math.PI * epoch) / totalEpochs)) * (1 - base);
}

function pairedParameters(target: Module, source: Module) {
  const t = target.parameters();
  const s = source.parameters();
  if (t.length !== s.length) {
    throw new RangeError(
      `momentum encoder has ${t.length} parameters but its source has ${s.length}`,
    );
  }
  return [t, s] as const;
}

/**
 * Initialises a momentum encoder: copies every parameter of `source` into `target` and freezes
 * `target` (requiresGrad off). Buffers are not copied, as in the reference.
 */
export function initMomentumEncoder(target: Module, source: Module): void {
  const [t, s] = pairedParameters(target, source);
  noGrad(() => t.forEach((p, i) => p.copy_(s[i])));
  for (const p of t) p.requiresGrad = false;
}

/** `θ_target ← m·θ_target + (1−m)·θ_source` over all parameters, in one FFI call. */
export function momentumUpdate(target: Module, source: Module, m: number): void {
  const [t, s] = pairedParameters(target, source);
  emaUpdate(t, s, m);
}
