/**
 * Loads the shim with `Deno.dlopen` and exposes every op of the op table as a typed function on
 * `raw`. The symbol table and the argument converters are derived from `ffi/ops.ts`, the same
 * table that generated the C++ entry points, so the two can never disagree.
 */
import { type ArgKind, OPS, type Ops, type RetKind, SYMBOL_PREFIX } from "../../ffi/ops.ts";
import { LibraryLoadError, TorchError } from "../errors.ts";
import { shimLibraryPath } from "./paths.ts";

/** A native handle (tensor, generator, optimizer). */
export type Handle = Deno.PointerObject;

type ArgTS<K> = K extends "T" ? Handle
  : K extends "T?" | "P?" ? Handle | null
  : K extends "P" ? Handle
  : K extends "T[]" ? readonly (Handle | null)[]
  : K extends "i64" | "i64?" | "f64" | "f64?" | "S" | "i32" | "dtype" | "device" ? number
  : K extends "bool" ? boolean
  : K extends "i64[]" | "f64[]" ? readonly number[]
  : K extends "str" ? string
  : K extends "buf" ? ArrayBufferView
  : never;

type RetTS<R> = R extends "T" | "P" ? Handle
  : R extends "T?" ? Handle | null
  : R extends "T[]" ? (Handle | null)[]
  : R extends "void" ? void
  : R extends "i64" | "f64" | "i32" ? number
  : R extends "bool" ? boolean
  : R extends "str" ? string
  : never;

type ArgsTS<A> = {
  -readonly [I in keyof A]: A[I] extends `${infer K} ${string}` ? ArgTS<K> : never;
};

/** Typed wrappers over every op: `raw.add(a, b, 1)` calls `st_add`. */
export type RawOps = {
  [N in keyof Ops]: (...args: ArgsTS<Ops[N]["args"]>) => RetTS<Ops[N]["ret"]>;
};

const FFI_PARAMS: Record<ArgKind, Deno.NativeType[]> = {
  "T": ["pointer"],
  "T?": ["pointer"],
  "T[]": ["buffer", "i64"],
  "i64": ["i64"],
  "i64?": ["i64"],
  "f64": ["f64"],
  "f64?": ["f64"],
  "S": ["f64"],
  "bool": ["bool"],
  "i32": ["i32"],
  "dtype": ["i32"],
  "device": ["i32"],
  "i64[]": ["buffer", "i64"],
  "f64[]": ["buffer", "i64"],
  "str": ["buffer"],
  "buf": ["buffer"],
  "P": ["pointer"],
  "P?": ["pointer"],
};

const FFI_RESULT: Record<RetKind, Deno.NativeResultType> = {
  "T": "pointer",
  "T?": "pointer",
  "T[]": "i64",
  "void": "i32",
  "i64": "i64",
  "f64": "f64",
  "bool": "bool",
  "i32": "i32",
  "str": "pointer",
  "P": "pointer",
};

function kindOf(arg: string): ArgKind {
  return arg.slice(0, arg.indexOf(" ")) as ArgKind;
}

/** The `Deno.dlopen` symbol table, derived from the op table. */
export function symbolTable(): Record<string, Deno.ForeignFunction> {
  const table: Record<string, Deno.ForeignFunction> = {};
  for (const [name, spec] of Object.entries(OPS)) {
    table[SYMBOL_PREFIX + name] = {
      parameters: spec.args.flatMap((a) => FFI_PARAMS[kindOf(a)]),
      result: FFI_RESULT[spec.ret],
    };
  }
  return table;
}

let lib: Deno.DynamicLibrary<Record<string, Deno.ForeignFunction>> | null = null;

function open(): Deno.DynamicLibrary<Record<string, Deno.ForeignFunction>> {
  if (lib) return lib;
  const path = shimLibraryPath();
  // Idle OpenMP workers spin for a bounded while, then sleep. Measured on this 2-core machine
  // (libgomp, LibTorch 2.13): sleeping at once (OMP_WAIT_POLICY=PASSIVE) made a four-width demo
  // step 0.64 s instead of 0.52 s, and narrow widths up to 2× slower, because every small kernel
  // paid a futex wake-up; spinning forever (ACTIVE) fights the loader's threads and any other
  // process for the cores. 10,000 spins (tens of µs) is as fast as spinning and yields soon after.
  // libgomp reads these when LibTorch loads, so they are set before dlopen; explicit settings win.
  try {
    if (!Deno.env.has("OMP_WAIT_POLICY") && !Deno.env.has("GOMP_SPINCOUNT")) {
      Deno.env.set("GOMP_SPINCOUNT", "10000");
    }
  } catch { /* no env permission: keep libgomp's default */ }
  try {
    lib = Deno.dlopen(path, symbolTable());
  } catch (e) {
    throw new LibraryLoadError(path, (e as Error).message);
  }
  return lib;
}

const NULL_TERMINATED = new TextEncoder();
const HANDLE_LIST_CAP = 4096;
const listBuffer = new BigUint64Array(HANDLE_LIST_CAP);

/** Converts a JavaScript argument to the value the FFI call takes (lengths travel separately). */
type Converter = (v: unknown) => unknown;

// Each list-taking argument position owns its scratch buffer, so two list arguments of one call
// never share memory.
function i64ListConverter(): Converter {
  let scratch = new BigInt64Array(16);
  return (v) => {
    const xs = v as readonly number[];
    if (xs.length > scratch.length) scratch = new BigInt64Array(xs.length * 2);
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i];
      if (!Number.isInteger(x)) throw new TypeError(`expected integers, got ${x}`);
      scratch[i] = BigInt(x);
    }
    return scratch;
  };
}

function handleListConverter(): Converter {
  let scratch = new BigUint64Array(16);
  return (v) => {
    const xs = v as readonly (Handle | null)[];
    if (xs.length > scratch.length) scratch = new BigUint64Array(xs.length * 2);
    for (let i = 0; i < xs.length; i++) scratch[i] = BigInt(Deno.UnsafePointer.value(xs[i]));
    return scratch;
  };
}

const NONE_I64 = -(2n ** 63n);

function converterFor(kind: ArgKind): Converter | null {
  switch (kind) {
    case "T[]":
      return handleListConverter();
    case "i64[]":
      return i64ListConverter();
    case "f64[]":
      return (v) => Float64Array.from(v as readonly number[]);
    case "i64?":
      return (v) => (v === undefined || v === null ? NONE_I64 : v);
    case "f64?":
      return (v) => (v === undefined || v === null ? NaN : v);
    case "str":
      return (v) => NULL_TERMINATED.encode(`${v}\0`);
    default:
      return null; // passed through unchanged
  }
}

function lastError(symbols: Record<string, CallableFunction>): TorchError {
  const p = symbols[SYMBOL_PREFIX + "last_error"]() as Deno.PointerValue;
  const text = p ? Deno.UnsafePointerView.getCString(p) : "unknown error";
  return new TorchError(text);
}

function takeList(symbols: Record<string, CallableFunction>, n: number): (Handle | null)[] {
  if (n > HANDLE_LIST_CAP) throw new TorchError(`list result of ${n} tensors is too long`);
  symbols[SYMBOL_PREFIX + "take_list"](listBuffer, HANDLE_LIST_CAP);
  const out: (Handle | null)[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = Deno.UnsafePointer.create(listBuffer[i]);
  return out;
}

const RESULT_CHECK: Record<RetKind, string> = {
  "T": "if (r === null) throw err(); return r;",
  "P": "if (r === null) throw err(); return r;",
  "void": "if (r !== 0) throw err();",
  "T[]": "if (r < 0) throw err(); return list(Number(r));",
  "str": "if (r === null) throw err(); return cstr(r);",
  "T?": "if (flag()) throw err(); return r;",
  "i64": "if (flag()) throw err(); return typeof r === 'bigint' ? Number(r) : r;",
  "f64": "if (flag()) throw err(); return r;",
  "bool": "if (flag()) throw err(); return r;",
  "i32": "if (flag()) throw err(); return r;",
};

/**
 * Builds a fixed-arity wrapper for one op. The hot path of every tensor op goes through here, so
 * the wrapper is compiled from source: no rest arguments, no spread, converters inlined.
 */
function makeWrapper(
  name: string,
  args: readonly string[],
  ret: RetKind,
  symbols: Record<string, CallableFunction>,
): (...a: unknown[]) => unknown {
  const converters = args.map((a) => converterFor(kindOf(a)));
  const params = args.map((_, i) => `a${i}`);
  const callArgs = args.flatMap((a, i) => {
    const kind = kindOf(a);
    const value = converters[i] ? `c${i}(a${i})` : `a${i}`;
    return FFI_PARAMS[kind].length === 2 ? [value, `a${i}.length`] : [value];
  });
  const source = `return function st_${name}(${params.join(", ")}) {
    const r = fn(${callArgs.join(", ")});
    ${RESULT_CHECK[ret]}
  };`;
  const env = {
    fn: symbols[SYMBOL_PREFIX + name],
    err: () => lastError(symbols),
    flag: symbols[SYMBOL_PREFIX + "error_flag"],
    list: (n: number) => takeList(symbols, n),
    cstr: (p: Deno.PointerObject) => Deno.UnsafePointerView.getCString(p),
    ...Object.fromEntries(converters.map((c, i) => [`c${i}`, c])),
  };
  // The source is built only from the op table's names and kinds, never from user input.
  const factory = new Function(...Object.keys(env), source);
  return factory(...Object.values(env));
}

let rawOps: RawOps | null = null;

/** The typed op wrappers; the first use loads the shim (a `LibraryLoadError` if it cannot). */
export function ops(): RawOps {
  if (rawOps) return rawOps;
  const symbols = open().symbols as unknown as Record<string, CallableFunction>;
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(OPS)) {
    out[name] = makeWrapper(name, spec.args, spec.ret, symbols);
  }
  rawOps = out as RawOps;
  return rawOps;
}
