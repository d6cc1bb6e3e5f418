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

type ArgsTS<A> = { -readonly [I in keyof A]: A[I] extends `${infer K} ${string}` ? ArgTS<K> : never };

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

type Converter = (v: unknown, out: unknown[]) => void;

// Each list-taking argument position owns its scratch buffer, so two list arguments of one call
// never share memory.
function i64ListConverter(): Converter {
  let scratch = new BigInt64Array(16);
  return (v, out) => {
    const xs = v as readonly number[];
    if (xs.length > scratch.length) scratch = new BigInt64Array(xs.length * 2);
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i];
      if (!Number.isInteger(x)) throw new TypeError(`expected integers, got ${x}`);
      scratch[i] = BigInt(x);
    }
    out.push(scratch, xs.length);
  };
}

function handleListConverter(): Converter {
  let scratch = new BigUint64Array(16);
  return (v, out) => {
    const xs = v as readonly (Handle | null)[];
    if (xs.length > scratch.length) scratch = new BigUint64Array(xs.length * 2);
    for (let i = 0; i < xs.length; i++) scratch[i] = BigInt(Deno.UnsafePointer.value(xs[i]));
    out.push(scratch, xs.length);
  };
}

function converterFor(kind: ArgKind): Converter | null {
  switch (kind) {
    case "T[]":
      return handleListConverter();
    case "i64[]":
      return i64ListConverter();
    case "f64[]":
      return (v, out) => {
        const xs = v as readonly number[];
        out.push(Float64Array.from(xs), xs.length);
      };
    case "i64?":
      return (v, out) => out.push(v === undefined || v === null ? -(2n ** 63n) : v);
    case "f64?":
      return (v, out) => out.push(v === undefined || v === null ? NaN : v);
    case "str":
      return (v, out) => out.push(NULL_TERMINATED.encode(`${v}\0`));
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

function makeWrapper(
  name: string,
  args: readonly string[],
  ret: RetKind,
  symbols: Record<string, CallableFunction>,
): (...a: unknown[]) => unknown {
  const fn = symbols[SYMBOL_PREFIX + name];
  const converters = args.map((a) => converterFor(kindOf(a)));
  const simple = converters.every((c) => c === null);
  const errorFlag = symbols[SYMBOL_PREFIX + "error_flag"];
  const call = simple
    ? (a: unknown[]) => fn(...a)
    : (a: unknown[]) => {
      const out: unknown[] = [];
      for (let i = 0; i < converters.length; i++) {
        const c = converters[i];
        if (c) c(a[i], out);
        else out.push(a[i]);
      }
      return fn(...out);
    };
  switch (ret) {
    case "T":
    case "P":
      return (...a) => {
        const r = call(a);
        if (r === null) throw lastError(symbols);
        return r;
      };
    case "void":
      return (...a) => {
        if (call(a) !== 0) throw lastError(symbols);
      };
    case "T[]":
      return (...a) => {
        const n = Number(call(a));
        if (n < 0) throw lastError(symbols);
        return takeList(symbols, n);
      };
    case "str":
      return (...a) => {
        const r = call(a) as Deno.PointerValue;
        if (r === null) throw lastError(symbols);
        return Deno.UnsafePointerView.getCString(r);
      };
    default:
      return (...a) => {
        const r = call(a);
        if (errorFlag()) throw lastError(symbols);
        return typeof r === "bigint" ? Number(r) : r;
      };
  }
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
