/** Autograd controls: grad mode and `autograd.grad`. */
import { raw, type Tensor, wrap } from "./tensor.ts";

/** Runs `fn` with gradient recording off (as `torch.no_grad()`). Synchronous only. */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Runs `fn` with gradient recording on (as `torch.enable_grad()`). Synchronous only. */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}

function withGradMode<T>(on: boolean, fn: () => T): T {
  const prev = raw().set_grad_enabled(on);
  try {
    const r = fn();
    if (r instanceof Promise) {
      throw new TypeError("noGrad()/enableGrad() take a synchronous function");
    }
    return r;
  } finally {
    raw().set_grad_enabled(prev);
  }
}

/** Whether gradient recording is on. */
export function isGradEnabled(): boolean {
  return raw().is_grad_enabled();
}

/** A `using` guard that turns gradient recording off until disposed. */
export function noGradGuard(): Disposable {
  const prev = raw().set_grad_enabled(false);
  return { [Symbol.dispose]: () => void raw().set_grad_enabled(prev) };
}

/** Options of `grad`. */
export interface GradOptions {
  gradOutputs?: readonly Tensor[];
  retainGraph?: boolean;
  createGraph?: boolean;
  /** Return null for inputs the outputs do not depend on instead of failing. */
  allowUnused?: boolean;
}

/** Gradients of `outputs` with respect to `inputs` (as `torch.autograd.grad`). */
export function grad(
  outputs: readonly Tensor[],
  inputs: readonly Tensor[],
  o: GradOptions = {},
): (Tensor | null)[] {
  const hs = raw().autograd_grad(
    outputs.map((t) => t.ptr),
    inputs.map((t) => t.ptr),
    (o.gradOutputs ?? []).map((t) => t.ptr),
    o.retainGraph ?? (o.createGraph ?? false),
    o.createGraph ?? false,
    o.allowUnused ?? false,
  );
  return hs.map((h) => (h ? wrap(h) : null));
}
