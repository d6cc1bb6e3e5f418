/**
 * `Module`: named parameters, buffers and children with PyTorch's dotted state-dict names,
 * train/eval mode, strict loading, freezing and deterministic disposal.
 */
import { noGrad } from "../autograd.ts";
import type { Device, DType } from "../dtype.ts";
import { keep, scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";

/** Result of a non-strict `loadStateDict`. */
export interface LoadResult {
  missing: string[];
  unexpected: string[];
}

/** A state dict: dotted names to tensors (a Map or a plain object). */
export type StateDict = Map<string, Tensor> | Record<string, Tensor>;

/** Thrown by strict `loadStateDict` when keys or shapes do not fit. */
export class StateDictError extends Error {
  constructor(
    readonly missing: string[],
    readonly unexpected: string[],
    readonly mismatched: string[],
  ) {
    const parts = [];
    if (missing.length) parts.push(`missing keys: ${missing.join(", ")}`);
    if (unexpected.length) parts.push(`unexpected keys: ${unexpected.join(", ")}`);
    if (mismatched.length) parts.push(`shape mismatches: ${mismatched.join("; ")}`);
    super(`state dict does not fit the module: ${parts.join("; ")}`);
    this.name = "StateDictError";
  }
}

/** Base class of every layer and network. */
export abstract class Module {
  /** Training mode (batch statistics, dropout) versus evaluation mode. */
  training = true;
  readonly #params = new Map<string, Tensor | null>();
  readonly #buffers = new Map<string, Tensor | null>();
  readonly #children = new Map<string, Module>();
  readonly #persistent = new Set<string>();

  /** Computes the output. */
  abstract forward(...inputs: Tensor[]): Tensor;

  /** Registers a trainable parameter; it leaves any scope and requires grad. */
  protected param(name: string, t: Tensor | null): Tensor {
    if (t) {
      keep(t);
      if (!t.requiresGrad) t.requiresGrad = true;
    }
    this.#params.set(name, t);
    return t as Tensor;
  }

  /** Registers a buffer (saved in the state dict unless `persistent` is false). */
  protected buffer(name: string, t: Tensor | null, persistent = true): Tensor {
    if (t) keep(t);
    this.#buffers.set(name, t);
    if (persistent) this.#persistent.add(name);
    return t as Tensor;
  }

  /** Registers a child module under `name`. */
  protected child<M extends Module>(name: string, m: M): M {
    this.#children.set(name, m);
    return m;
  }

  /** The current tensor registered as parameter or buffer `name` (null if registered empty). */
  protected get_(name: string): Tensor | null {
    if (this.#params.has(name)) return this.#params.get(name)!;
    if (this.#buffers.has(name)) return this.#buffers.get(name)!;
    throw new Error(`no parameter or buffer named '${name}'`);
  }

  /** Replaces a registered parameter or buffer tensor, disposing the old one. */
  protected replaceTensor(name: string, t: Tensor): void {
    const table = this.#params.has(name)
      ? this.#params
      : this.#buffers.has(name)
      ? this.#buffers
      : null;
    if (!table) throw new Error(`no parameter or buffer named '${name}'`);
    const old = table.get(name);
    keep(t);
    table.set(name, t);
    if (old && old !== t) old.dispose();
  }

  /** Direct children, in registration order. */
  namedChildren(): [string, Module][] {
    return [...this.#children];
  }

  /** This module and every descendant with dotted names ("" for this one). */
  namedModules(prefix = ""): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, c] of this.#children) out.push(...c.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  /** Every parameter with its dotted name. */
  namedParameters(prefix = ""): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [n, t] of m.#params) if (t) out.push([path ? `${path}.${n}` : n, t]);
    }
    return out;
  }

  /** Every parameter. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Every buffer with its dotted name (persistent ones only by default). */
  namedBuffers(prefix = "", all = false): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules(prefix)) {
      for (const [n, t] of m.#buffers) {
        if (t && (all || m.#persistent.has(n))) out.push([path ? `${path}.${n}` : n, t]);
      }
    }
    return out;
  }

  /** Parameters and persistent buffers by dotted name, in PyTorch's order (module by module). */
  stateDict(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [path, m] of this.namedModules()) {
      const name = (n: string) => (path ? `${path}.${n}` : n);
      for (const [n, t] of m.#params) if (t) out.set(name(n), t);
      for (const [n, t] of m.#buffers) if (t && m.#persistent.has(n)) out.set(name(n), t);
    }
    return out;
  }

  /**
   * Copies tensors from `sd` into this module. Strict mode (the default) throws a
   * `StateDictError` naming every missing key, unexpected key and shape mismatch.
   */
  loadStateDict(sd: StateDict, strict = true): LoadResult {
    const source = sd instanceof Map ? sd : new Map(Object.entries(sd));
    const own = this.stateDict();
    const missing = [...own.keys()].filter((k) => !source.has(k));
    const unexpected = [...source.keys()].filter((k) => !own.has(k));
    const mismatched: string[] = [];
    for (const [k, t] of own) {
      const s = source.get(k);
      if (s && s.shape.join(",") !== t.shape.join(",")) {
        mismatched.push(`${k}: checkpoint [${s.shape}] vs module [${t.shape}]`);
      }
    }
    if (mismatched.length || (strict && (missing.length || unexpected.length))) {
      throw new StateDictError(strict ? missing : [], strict ? unexpected : [], mismatched);
    }
    noGrad(() => {
      for (const [k, t] of own) {
        const s = source.get(k);
        if (!s) continue;
        if (s.dtype === t.dtype) t.copy_(s);
        else {
          using c = s.to(t.dtype);
          t.copy_(c);
        }
      }
    });
    return { missing, unexpected };
  }

  /** Sets training mode here and in every descendant. */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  /** Sets evaluation mode here and in every descendant. */
  eval(): this {
    return this.train(false);
  }

  /** Turns gradient tracking of every parameter on or off (freezing). */
  requiresGrad_(on: boolean): this {
    for (const p of this.parameters()) p.requiresGrad = on;
    return this;
  }

  /** Clears every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.parameters()) p.grad = null;
  }

  /** Moves or casts every parameter and buffer in place (floating tensors only for a dtype). */
  to(target: Device | DType): this {
    for (const [, m] of this.namedModules()) {
      for (const table of [m.#params, m.#buffers]) {
        for (const [n, t] of table) {
          if (!t) continue;
          const isDType = !String(target).startsWith("cpu") && !String(target).startsWith("cuda");
          if (isDType && !t.dtype.startsWith("float") && t.dtype !== "bfloat16") continue;
          const moved = noGrad(() => scope(() => t.to(target).detach()));
          keep(moved);
          if (table === m.#params) moved.requiresGrad = t.requiresGrad;
          table.set(n, moved);
          t.dispose();
        }
      }
    }
    return this;
  }

  /** Number of parameter elements. */
  numParameters(): number {
    return this.parameters().reduce((a, p) => a + p.numel, 0);
  }

  /** Frees every parameter and buffer of this module and its descendants. */
  dispose(): void {
    for (const [, m] of this.namedModules()) {
      for (const t of m.#params.values()) t?.dispose();
      for (const t of m.#buffers.values()) t?.dispose();
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
