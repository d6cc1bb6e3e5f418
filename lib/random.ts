/** Seedable random number generators and random tensor creation. */
import type { DType } from "./dtype.ts";
import { deviceCode, DTYPE_CODES } from "./dtype.ts";
import type { Handle } from "./ffi/library.ts";
import { raw, type Tensor, type TensorOptions, wrap } from "./tensor.ts";

const generators = new FinalizationRegistry<Handle>((h) => {
  try {
    raw().generator_free(h);
  } catch { /* shutting down */ }
});

/** A CPU random number generator with its own seed and state (as `torch.Generator`). */
export class Generator {
  #h: Handle | null;
  constructor(seed: number | bigint = 0) {
    this.#h = raw().generator_new(Number(seed));
    generators.register(this, this.#h, this);
  }
  /** @internal */
  get ptr(): Handle {
    if (!this.#h) throw new Error("Generator was used after it was disposed");
    return this.#h;
  }
  /** The full state as a uint8 tensor (for checkpoints). */
  getState(): Tensor {
    return wrap(raw().generator_get_state(this.ptr));
  }
  /** Restores a state from `getState()`. */
  setState(state: Tensor): void {
    raw().generator_set_state(this.ptr, state.ptr);
  }
  dispose(): void {
    if (!this.#h) return;
    generators.unregister(this);
    raw().generator_free(this.#h);
    this.#h = null;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Options of random tensor creation. */
export interface RandomOptions extends TensorOptions {
  generator?: Generator | null;
}

function opts(o: RandomOptions, fallback: DType = "float32"): [Handle | null, number, number] {
  return [
    o.generator?.ptr ?? null,
    DTYPE_CODES[o.dtype ?? fallback],
    deviceCode(o.device ?? "cpu"),
  ];
}

function finish(t: Tensor, o: RandomOptions): Tensor {
  if (o.requiresGrad) t.requiresGrad = true;
  return t;
}

/** Seeds the global generators (CPU and CUDA), as `torch.manual_seed`. */
export function manualSeed(seed: number): void {
  raw().manual_seed(seed);
}

/** Standard normal samples. */
export function randn(shape: readonly number[], o: RandomOptions = {}): Tensor {
  return finish(wrap(raw().randn(shape, ...opts(o))), o);
}
/** U[0, 1) samples. */
export function rand(shape: readonly number[], o: RandomOptions = {}): Tensor {
  return finish(wrap(raw().rand(shape, ...opts(o))), o);
}
/** Integers in [low, high), int64 by default. */
export function randint(
  low: number,
  high: number,
  shape: readonly number[],
  o: RandomOptions = {},
): Tensor {
  return wrap(raw().randint(low, high, shape, ...opts(o, "int64")));
}
/** A random permutation of 0..n-1, int64 by default. */
export function randperm(n: number, o: RandomOptions = {}): Tensor {
  return wrap(raw().randperm(n, ...opts(o, "int64")));
}

/** The default CPU generator's state (for checkpoints). */
export function defaultGeneratorState(): Tensor {
  return wrap(raw().default_generator_state());
}
/** Restores the default CPU generator's state. */
export function setDefaultGeneratorState(state: Tensor): void {
  raw().set_default_generator_state(state.ptr);
}
