/**
 * Deterministic memory: scopes own the tensors created while they are current and free them when
 * they end, except the tensors the scope's function returns (moved to the enclosing scope) and
 * the ones explicitly kept. A `FinalizationRegistry` is only a safety net, armed for tensors that
 * no scope owns (a scope always frees what it owns, so scoped tensors skip its cost).
 */

/** Anything a scope can own. */
export interface Owned {
  /** Frees the native handle (idempotent). */
  dispose(): void;
  /** The scope that owns it now, if any. */
  _scope: Scope | null;
  /** Called when it leaves its scope without being disposed (it may arm a safety net). */
  _orphaned?(): void;
}

let current: Scope | null = null;

/** A set of owned objects freed together; usable with `using`. */
export class Scope {
  readonly #owned = new Set<Owned>();
  #parent: Scope | null;
  #closed = false;

  /** Opens a scope and makes it current until it is disposed. */
  constructor() {
    this.#parent = current;
    current = this;
  }

  /** Number of live objects this scope owns. */
  get size(): number {
    return this.#owned.size;
  }

  /** @internal Records a new object. */
  adopt(o: Owned): void {
    if (this.#closed) throw new Error("cannot add to a closed scope");
    if (o._scope) o._scope.#owned.delete(o);
    o._scope = this;
    this.#owned.add(o);
  }

  /** @internal Forgets an object (it was disposed or kept). */
  release(o: Owned): void {
    this.#owned.delete(o);
    if (o._scope === this) {
      o._scope = null;
      o._orphaned?.();
    }
  }

  /** Moves `o` to the enclosing scope (or to no scope: the caller then owns it). */
  promote(o: Owned): void {
    if (!this.#parent) return this.release(o);
    this.#owned.delete(o);
    o._scope = null;
    this.#parent.adopt(o);
  }

  /** Frees everything still owned and restores the enclosing scope. */
  dispose(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const o of this.#owned) {
      o._scope = null;
      o.dispose();
    }
    this.#owned.clear();
    if (current === this) current = this.#parent;
    else {
      // A scope closed out of order: unlink it without disturbing the active chain.
      let s = current;
      while (s && s.#parent !== this) s = s.#parent;
      if (s) s.#parent = this.#parent;
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** The scope new tensors join, or null outside any scope. */
export function currentScope(): Scope | null {
  return current;
}

function collect(value: unknown, into: Set<Owned>, depth = 0): void {
  if (value === null || typeof value !== "object" || depth > 8) return;
  if ("_scope" in value && typeof (value as Owned).dispose === "function") {
    into.add(value as Owned);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, into, depth + 1);
  } else if (value instanceof Map) {
    for (const v of value.values()) collect(v, into, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, into, depth + 1);
  }
}

/**
 * Runs `fn` in a new scope. Tensors created inside are freed when it returns, except those in
 * its result (found in arrays, plain objects and Maps), which move to the enclosing scope.
 * `fn` must be synchronous: an awaited scope would capture other tasks' tensors.
 */
export function scope<T>(fn: () => T): T {
  const s = new Scope();
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) {
      throw new TypeError("scope() takes a synchronous function; use a Scope with `using` instead");
    }
    const keep = new Set<Owned>();
    collect(result, keep);
    for (const o of keep) if (o._scope === s) s.promote(o);
  } finally {
    s.dispose();
  }
  return result;
}

/** Removes `o` from every scope: it lives until disposed explicitly. Returns `o`. */
export function keep<T extends Owned>(o: T): T {
  o._scope?.release(o);
  return o;
}
