/**
 * Restricted Python pickle reader and a protocol-2 writer, enough for `torch.save` data.
 *
 * The unpickler never runs code: every `GLOBAL` / `STACK_GLOBAL` is looked up in a fixed
 * allow-table of data-only constructors (OrderedDict, Namespace, torch tensor rebuild functions,
 * dtype and storage globals, `set`, `complex`, `_codecs.encode`, ...). Anything else becomes an
 * inert {@link PyGlobal}, and calling it produces an inert {@link PyObject} recording the
 * arguments and state. See `pytypes.ts` for the value mapping.
 *
 * @module
 */

import {
  DTYPE_ALIASES,
  OrderedDict,
  PyComplex,
  PyFloat,
  PyGlobal,
  PyObject,
  PySlice,
  TorchDType,
  TorchStorage,
  TorchStorageType,
  TorchTensorLeaf,
} from "./pytypes.ts";
import {
  DTYPE_ITEMSIZE,
  type DTypeName,
  isDim,
  isDTypeName,
  isRawTensor,
  numelOf,
  type RawTensor,
  SerializationError,
  validateRawTensor,
} from "./raw.ts";

// ---------------------------------------------------------------------------------------------
// Opcodes

const OP = {
  MARK: 0x28, // (
  STOP: 0x2e, // .
  POP: 0x30, // 0
  POP_MARK: 0x31, // 1
  DUP: 0x32, // 2
  FLOAT: 0x46, // F
  INT: 0x49, // I
  BININT: 0x4a, // J
  BININT1: 0x4b, // K
  LONG: 0x4c, // L
  BININT2: 0x4d, // M
  NONE: 0x4e, // N
  PERSID: 0x50, // P
  BINPERSID: 0x51, // Q
  REDUCE: 0x52, // R
  STRING: 0x53, // S
  BINSTRING: 0x54, // T
  SHORT_BINSTRING: 0x55, // U
  UNICODE: 0x56, // V
  BINUNICODE: 0x58, // X
  APPEND: 0x61, // a
  BUILD: 0x62, // b
  GLOBAL: 0x63, // c
  DICT: 0x64, // d
  EMPTY_DICT: 0x7d, // }
  APPENDS: 0x65, // e
  GET: 0x67, // g
  BINGET: 0x68, // h
  INST: 0x69, // i
  LONG_BINGET: 0x6a, // j
  LIST: 0x6c, // l
  EMPTY_LIST: 0x5d, // ]
  OBJ: 0x6f, // o
  PUT: 0x70, // p
  BINPUT: 0x71, // q
  LONG_BINPUT: 0x72, // r
  SETITEM: 0x73, // s
  TUPLE: 0x74, // t
  EMPTY_TUPLE: 0x29, // )
  SETITEMS: 0x75, // u
  BINFLOAT: 0x47, // G
  // protocol 2
  PROTO: 0x80,
  NEWOBJ: 0x81,
  EXT1: 0x82,
  EXT2: 0x83,
  EXT4: 0x84,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  LONG4: 0x8b,
  // protocol 3
  BINBYTES: 0x42, // B
  SHORT_BINBYTES: 0x43, // C
  // protocol 4
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  BINBYTES8: 0x8e,
  EMPTY_SET: 0x8f,
  ADDITEMS: 0x90,
  FROZENSET: 0x91,
  NEWOBJ_EX: 0x92,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
  // protocol 5
  BYTEARRAY8: 0x96,
  NEXT_BUFFER: 0x97,
  READONLY_BUFFER: 0x98,
} as const;

/** Highest pickle protocol understood by {@link unpickle}. */
export const HIGHEST_PROTOCOL = 5;

// ---------------------------------------------------------------------------------------------
// Allow-table

/** A data-only constructor from the allow-table. */
class SafeCallable {
  constructor(
    readonly name: string,
    readonly call: (args: unknown[], kwargs: unknown, u: Unpickler) => unknown,
  ) {}
}

const STORAGE_DTYPES: Readonly<Record<string, DTypeName>> = {
  FloatStorage: "float32",
  DoubleStorage: "float64",
  HalfStorage: "float16",
  BFloat16Storage: "bfloat16",
  LongStorage: "int64",
  IntStorage: "int32",
  ShortStorage: "int16",
  CharStorage: "int8",
  ByteStorage: "uint8",
  BoolStorage: "bool",
};

/** Python 2 module names that protocol-2 pickles use, mapped like Python's `fix_imports`. */
const MODULE_RENAMES: Readonly<Record<string, string>> = {
  __builtin__: "builtins",
  copy_reg: "copyreg",
  "numpy.core.multiarray": "numpy._core.multiarray",
};

function str(x: unknown): string | undefined {
  return typeof x === "string" ? x : undefined;
}

function num(x: unknown): number | undefined {
  if (typeof x === "number") return x;
  if (typeof x === "bigint") return Number(x);
  if (typeof x === "boolean") return x ? 1 : 0;
  return undefined;
}

function dictEntries(x: unknown): [unknown, unknown][] | undefined {
  if (x instanceof Map) return [...x];
  return undefined;
}

const SAFE: ReadonlyMap<string, SafeCallable> = new Map(
  [
    new SafeCallable("collections.OrderedDict", (args, _kw, u) => {
      const d = new OrderedDict();
      const init = args[0];
      if (init instanceof Map) {
        for (const [k, v] of init) d.set(k, v);
      } else if (Array.isArray(init)) {
        for (const kv of init) {
          if (Array.isArray(kv) && kv.length === 2) d.set(kv[0], kv[1]);
          else u.fail("OrderedDict() items must be (key, value) pairs");
        }
      }
      return d;
    }),
    new SafeCallable("builtins.dict", (args, _kw, u) => {
      const d = u.newDict();
      const init = args[0];
      if (init instanceof Map) {
        for (const [k, v] of init) d.set(k, v);
      } else if (Array.isArray(init)) {
        for (const kv of init) if (Array.isArray(kv) && kv.length === 2) d.set(kv[0], kv[1]);
      }
      return d;
    }),
    new SafeCallable("builtins.list", (args) => Array.isArray(args[0]) ? [...args[0]] : []),
    new SafeCallable("builtins.tuple", (args, _kw, u) => {
      const t = Array.isArray(args[0]) ? [...args[0]] : [];
      u.markTuple(t);
      return t;
    }),
    new SafeCallable("builtins.set", (args) => new Set(Array.isArray(args[0]) ? args[0] : [])),
    new SafeCallable(
      "builtins.frozenset",
      (args) => new Set(Array.isArray(args[0]) ? args[0] : []),
    ),
    new SafeCallable(
      "builtins.complex",
      (args) => new PyComplex(num(args[0]) ?? 0, num(args[1]) ?? 0),
    ),
    new SafeCallable(
      "builtins.slice",
      (args) =>
        args.length === 1
          ? new PySlice(null, args[0], null)
          : new PySlice(args[0] ?? null, args[1] ?? null, args[2] ?? null),
    ),
    new SafeCallable("builtins.bytearray", (args, _kw, u) => toBytes(args, u)),
    new SafeCallable("builtins.bytes", (args, _kw, u) => toBytes(args, u)),
    new SafeCallable("_codecs.encode", (args, _kw, u) => toBytes(args, u)),
    new SafeCallable("argparse.Namespace", (_args, kwargs, u) => {
      const ns = u.newNamespace();
      for (const [k, v] of dictEntries(kwargs) ?? []) {
        if (typeof k === "string") defineProp(ns, k, v);
      }
      return ns;
    }),
    new SafeCallable("torch._utils._rebuild_tensor", (args, _kw, u) =>
      // (storage, storage_offset, size, stride)
      rebuildTensor(u, "torch._utils._rebuild_tensor", args, args[0], args[1], args[2], args[3])),
    new SafeCallable("torch._utils._rebuild_tensor_v2", (args, _kw, u) =>
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      rebuildTensor(
        u,
        "torch._utils._rebuild_tensor_v2",
        args,
        args[0],
        args[1],
        args[2],
        args[3],
        args[4] === true,
      )),
    new SafeCallable("torch._utils._rebuild_tensor_v3", (args, _kw, u) =>
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])
      rebuildTensor(
        u,
        "torch._utils._rebuild_tensor_v3",
        args,
        args[0],
        args[1],
        args[2],
        args[3],
        args[4] === true,
        args[6],
      )),
    new SafeCallable("torch._utils._rebuild_parameter", (args) => asParameter(args[0], args[1])),
    new SafeCallable(
      "torch._utils._rebuild_parameter_with_state",
      (args) => asParameter(args[0], args[1]),
    ),
    new SafeCallable(
      "torch.nn.parameter.Parameter",
      (args) => asParameter(args[0], args.length > 1 ? args[1] : true),
    ),
    new SafeCallable("torch._tensor._rebuild_from_type_v2", (args, _kw, u) => {
      // (func, new_type, args, state): only follow through to allowed rebuild functions.
      const [func, , fargs] = args;
      const inner = Array.isArray(fargs) ? fargs : [];
      if (func instanceof SafeCallable) return func.call(inner, undefined, u);
      return new PyObject("torch._tensor._rebuild_from_type_v2", args);
    }),
    new SafeCallable("torch.Size", (args, _kw, u) => {
      const t = Array.isArray(args[0]) ? [...args[0]] : [];
      u.markTuple(t);
      return t;
    }),
    new SafeCallable("torch.device", (args) => {
      const type = str(args[0]) ?? "cpu";
      return args.length > 1 && args[1] !== null && !type.includes(":")
        ? `${type}:${args[1]}`
        : type;
    }),
    new SafeCallable("numpy._core.multiarray.scalar", (args) => numpyScalar(args)),
  ].map((c) => [c.name, c]),
);

function defineProp(obj: object, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function toBytes(args: unknown[], u: Unpickler): Uint8Array {
  const [src, encoding] = args;
  if (src === undefined) return new Uint8Array(0);
  if (src instanceof Uint8Array) return src.slice();
  if (typeof src === "string") {
    const enc = (str(encoding) ?? "utf-8").toLowerCase().replace("_", "-");
    if (enc === "latin1" || enc === "latin-1" || enc === "iso-8859-1") {
      const out = new Uint8Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const c = src.charCodeAt(i);
        if (c > 255) u.fail(`_codecs.encode: character U+${c.toString(16)} is not latin-1`);
        out[i] = c;
      }
      return out;
    }
    if (enc === "utf-8" || enc === "utf8") return new TextEncoder().encode(src);
    u.fail(`unsupported text encoding '${encoding}'`);
  }
  if (Array.isArray(src) && src.every((b) => isDim(b) && b < 256)) {
    return Uint8Array.from(src as number[]);
  }
  u.fail("cannot build bytes from the pickled arguments");
}

function asParameter(data: unknown, requiresGrad: unknown): unknown {
  if (data instanceof TorchTensorLeaf) {
    data.isParameter = true;
    data.requiresGrad = requiresGrad !== false;
  }
  return data;
}

const NUMPY_TYPES: Readonly<Record<string, [DTypeName | "uint16" | "uint32" | "uint64", number]>> =
  {
    f8: ["float64", 8],
    f4: ["float32", 4],
    i8: ["int64", 8],
    i4: ["int32", 4],
    i2: ["int16", 2],
    i1: ["int8", 1],
    u1: ["uint8", 1],
    u2: ["uint16", 2],
    u4: ["uint32", 4],
    u8: ["uint64", 8],
    b1: ["bool", 1],
  };

/** Decodes `numpy.core.multiarray.scalar(dtype, bytes)` for plain numeric dtypes. */
function numpyScalar(args: unknown[]): unknown {
  const [dt, raw] = args;
  const placeholder = () => new PyObject("numpy._core.multiarray.scalar", args);
  if (!(dt instanceof PyObject) || dt.__global__ !== "numpy.dtype") return placeholder();
  if (!(raw instanceof Uint8Array)) return placeholder();
  const code = str(dt.args[0]);
  const info = code ? NUMPY_TYPES[code] : undefined;
  if (!info || raw.byteLength !== info[1]) return placeholder();
  const state = dt.state;
  const order = Array.isArray(state) ? state[1] : "<";
  const little = order !== ">";
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  switch (info[0]) {
    case "float64":
      return v.getFloat64(0, little);
    case "float32":
      return v.getFloat32(0, little);
    case "int64": {
      const b = v.getBigInt64(0, little);
      return Number.isSafeInteger(Number(b)) ? Number(b) : b;
    }
    case "uint64": {
      const b = v.getBigUint64(0, little);
      return Number.isSafeInteger(Number(b)) ? Number(b) : b;
    }
    case "int32":
      return v.getInt32(0, little);
    case "uint32":
      return v.getUint32(0, little);
    case "int16":
      return v.getInt16(0, little);
    case "uint16":
      return v.getUint16(0, little);
    case "int8":
      return v.getInt8(0);
    case "uint8":
      return v.getUint8(0);
    case "bool":
      return v.getUint8(0) !== 0;
    default:
      return placeholder();
  }
}

/** Resolves a global through the allow-table. Never imports or calls anything. */
function resolveGlobal(module: string, name: string): unknown {
  module = MODULE_RENAMES[module] ?? module;
  const full = `${module}.${name}`;
  const safe = SAFE.get(full);
  if (safe) return safe;
  if (module === "torch") {
    if (isDTypeName(name) || Object.hasOwn(DTYPE_ALIASES, name)) return new TorchDType(name);
    if (/^(u?int\d+|float8_\w+|complex\d+|quint\w+|qint\w+|bits\w+|cfloat|cdouble)$/.test(name)) {
      return new TorchDType(name);
    }
  }
  if (module === "torch" || module === "torch.cuda") {
    if (Object.hasOwn(STORAGE_DTYPES, name)) {
      return new TorchStorageType(full, STORAGE_DTYPES[name]);
    }
    if (name.endsWith("Storage")) return new TorchStorageType(full, undefined);
  }
  if (full === "torch.storage.UntypedStorage" || full === "torch.storage.TypedStorage") {
    return new TorchStorageType(full, undefined);
  }
  return new PyGlobal(full);
}

// ---------------------------------------------------------------------------------------------
// Tensor rebuild

function dims(x: unknown): number[] | undefined {
  if (!Array.isArray(x)) return undefined;
  const out: number[] = [];
  for (const d of x) {
    const n = typeof d === "bigint" ? Number(d) : d;
    if (!isDim(n)) return undefined;
    out.push(n);
  }
  return out;
}

function rebuildTensor(
  u: Unpickler,
  fn: string,
  args: unknown[],
  storage: unknown,
  offsetArg: unknown,
  sizeArg: unknown,
  strideArg: unknown,
  requiresGrad = false,
  dtypeArg?: unknown,
): unknown {
  if (!(storage instanceof TorchStorage)) return new PyObject(fn, args);
  let dtype = storage.type instanceof TorchStorageType ? storage.type.dtype : undefined;
  if (dtypeArg instanceof TorchDType) dtype = dtypeArg.dtype;
  // Unsupported element types (complex, uint16, fp8, quantized, ...) stay inert.
  if (dtype === undefined) return new PyObject(fn, args);
  const where = `tensor in storage '${storage.key}'`;
  const size = dims(sizeArg);
  const stride = dims(strideArg);
  const offset = typeof offsetArg === "bigint" ? Number(offsetArg) : offsetArg;
  if (!size) u.fail(`${where}: size must be a tuple of non-negative integers`);
  if (!stride || stride.length !== size.length) {
    u.fail(`${where}: stride must be a tuple of ${size.length} non-negative integers`);
  }
  if (!isDim(offset)) u.fail(`${where}: storage_offset must be a non-negative integer`);
  const isz = DTYPE_ITEMSIZE[dtype];
  const total = storage.bytes.byteLength;
  if (total % isz !== 0) {
    u.fail(`${where}: storage has ${total} bytes, not a multiple of ${dtype} item size ${isz}`);
  }
  const numel = numelOf(size);
  let data: Uint8Array;
  if (numel === 0) {
    data = new Uint8Array(0);
  } else {
    let last = offset;
    for (let i = 0; i < size.length; i++) last += (size[i] - 1) * stride[i];
    if ((last + 1) * isz > total) {
      u.fail(
        `${where}: view (offset ${offset}, size [${size}], stride [${stride}]) reaches element ` +
          `${last}, beyond the ${total / isz}-element storage`,
      );
    }
    let contiguous = true;
    for (let i = size.length - 1, expect = 1; i >= 0; i--) {
      if (size[i] !== 1 && stride[i] !== expect) contiguous = false;
      expect *= size[i];
    }
    if (contiguous) {
      data = storage.bytes.subarray(offset * isz, (offset + numel) * isz);
    } else {
      if (numel * isz > 2 ** 32) u.fail(`${where}: strided view too large to materialise`);
      data = gather(storage.bytes, isz, offset, size, stride, numel);
    }
    if (storage.bigEndian && isz > 1) data = swapBytes(data, isz);
  }
  return new TorchTensorLeaf(dtype, size, data, requiresGrad);
}

/** Copies a strided view into a new C-contiguous buffer. */
function gather(
  src: Uint8Array,
  isz: number,
  offset: number,
  size: number[],
  stride: number[],
  numel: number,
): Uint8Array {
  const out = new Uint8Array(numel * isz);
  const nd = size.length;
  const inner = size[nd - 1];
  const innerStride = stride[nd - 1];
  const idx = new Array<number>(nd).fill(0);
  let o = 0;
  let base = offset;
  for (;;) {
    if (innerStride === 1) {
      out.set(src.subarray(base * isz, (base + inner) * isz), o);
      o += inner * isz;
    } else {
      for (let j = 0, e = base; j < inner; j++, e += innerStride) {
        const s = e * isz;
        for (let b = 0; b < isz; b++) out[o++] = src[s + b];
      }
    }
    // advance the outer index (all dims but the last)
    let d = nd - 2;
    for (; d >= 0; d--) {
      idx[d]++;
      base += stride[d];
      if (idx[d] < size[d]) break;
      base -= stride[d] * size[d];
      idx[d] = 0;
    }
    if (d < 0) break;
  }
  return out;
}

function swapBytes(data: Uint8Array, isz: number): Uint8Array {
  const out = new Uint8Array(data.byteLength);
  for (let i = 0; i < data.byteLength; i += isz) {
    for (let b = 0; b < isz; b++) out[i + b] = data[i + isz - 1 - b];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Unpickler

/** Options for {@link unpickle}. */
export interface UnpickleOptions {
  /**
   * Resolves persistent ids (BINPERSID / PERSID), e.g. torch storages. Without it a persistent
   * id becomes an inert `PyObject` named `"<persistent_id>"`.
   */
  persistentLoad?: (pid: unknown) => unknown;
  /**
   * Represent `dict`s whose keys are all strings as plain objects (default true). When false,
   * every `dict` is a `Map`.
   */
  plainDicts?: boolean;
}

const MAX_DEPTH = 2000;
const UTF8 = new TextDecoder();
const UTF8_STRICT = new TextDecoder("utf-8", { fatal: true });

class Unpickler {
  readonly #b: Uint8Array;
  readonly #dv: DataView;
  #pos = 0;
  #stack: unknown[] = [];
  readonly #meta: unknown[][] = [];
  readonly #memo = new Map<number, unknown>();
  readonly #dicts = new WeakSet<Map<unknown, unknown>>();
  readonly #tuples = new WeakSet<unknown[]>();
  readonly #namespaces = new WeakSet<object>();
  readonly #opts: UnpickleOptions;
  #op = 0;
  #opPos = 0;

  constructor(bytes: Uint8Array, opts: UnpickleOptions) {
    this.#b = bytes;
    this.#dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#opts = opts;
  }

  fail(msg: string): never {
    throw new SerializationError(
      `pickle: ${msg} (opcode 0x${this.#op.toString(16)} at offset ${this.#opPos})`,
    );
  }

  newDict(): Map<unknown, unknown> {
    const d = new Map<unknown, unknown>();
    this.#dicts.add(d);
    return d;
  }

  newNamespace(): Record<string, unknown> {
    const ns: Record<string, unknown> = {};
    this.#namespaces.add(ns);
    return ns;
  }

  markTuple<T extends unknown[]>(t: T): T {
    this.#tuples.add(t);
    return t;
  }

  // -- reading primitives

  #need(n: number): number {
    const p = this.#pos;
    if (n < 0 || p + n > this.#b.byteLength) this.fail(`truncated pickle (need ${n} bytes)`);
    this.#pos = p + n;
    return p;
  }
  #u8(): number {
    return this.#b[this.#need(1)];
  }
  #u16(): number {
    return this.#dv.getUint16(this.#need(2), true);
  }
  #i32(): number {
    return this.#dv.getInt32(this.#need(4), true);
  }
  #u32(): number {
    return this.#dv.getUint32(this.#need(4), true);
  }
  #u64(): number {
    const v = this.#dv.getBigUint64(this.#need(8), true);
    if (v > BigInt(this.#b.byteLength)) this.fail(`length ${v} exceeds the pickle size`);
    return Number(v);
  }
  #bytes(n: number): Uint8Array {
    const p = this.#need(n);
    return this.#b.subarray(p, p + n);
  }
  /** Reads up to the next newline; UTF-8 text, or Latin-1 when `latin1` (protocol-0 UNICODE). */
  #line(latin1 = false): string {
    const start = this.#pos;
    const nl = this.#b.indexOf(0x0a, start);
    if (nl < 0) this.fail("truncated pickle (missing newline)");
    this.#pos = nl + 1;
    const raw = this.#b.subarray(start, nl);
    if (!latin1) return UTF8.decode(raw);
    let s = "";
    for (let i = 0; i < raw.length; i += 4096) {
      s += String.fromCharCode(...raw.subarray(i, i + 4096));
    }
    return s;
  }
  #utf8(n: number): string {
    try {
      return UTF8_STRICT.decode(this.#bytes(n));
    } catch (err) {
      if (err instanceof SerializationError) throw err;
      this.fail("invalid UTF-8 in string");
    }
  }
  /** Python 2 `str` payloads: decoded as UTF-8 when valid, else Latin-1 (like `encoding=`). */
  #py2str(raw: Uint8Array): string {
    try {
      return UTF8_STRICT.decode(raw);
    } catch {
      let s = "";
      for (const c of raw) s += String.fromCharCode(c);
      return s;
    }
  }

  // -- stack

  #push(x: unknown): void {
    this.#stack.push(x);
  }
  #pop(): unknown {
    if (this.#stack.length === 0) this.fail("stack underflow");
    return this.#stack.pop();
  }
  #top(): unknown {
    if (this.#stack.length === 0) this.fail("stack underflow");
    return this.#stack[this.#stack.length - 1];
  }
  #popMark(): unknown[] {
    const items = this.#stack;
    const prev = this.#meta.pop();
    if (prev === undefined) this.fail("MARK expected on the stack");
    this.#stack = prev;
    return items;
  }
  #memoGet(i: number): unknown {
    if (!this.#memo.has(i)) this.fail(`memo key ${i} not found`);
    return this.#memo.get(i);
  }

  // -- helpers for the object opcodes

  #call(callable: unknown, args: unknown, kwargs?: unknown): unknown {
    const a = Array.isArray(args) ? args : [args];
    if (callable instanceof SafeCallable) return callable.call(a, kwargs, this);
    const name = callable instanceof PyGlobal
      ? callable.__global__
      : callable instanceof TorchStorageType
      ? callable.name
      : callable instanceof TorchDType
      ? `torch.${callable.name}`
      : "<call>";
    return new PyObject(name, a, kwargs);
  }

  #setItems(target: unknown, items: unknown[]): void {
    if (items.length % 2 !== 0) this.fail("SETITEMS with an odd number of items");
    let map: Map<unknown, unknown> | undefined;
    if (target instanceof Map) map = target;
    else if (target instanceof PyObject) map = target.dictItems ??= this.newDict();
    else if (this.#namespaces.has(target as object)) {
      for (let i = 0; i < items.length; i += 2) {
        if (typeof items[i] === "string") {
          defineProp(target as object, items[i] as string, items[i + 1]);
        }
      }
      return;
    } else this.fail("SETITEM(S) target is not a dict");
    for (let i = 0; i < items.length; i += 2) map.set(items[i], items[i + 1]);
  }

  #append(target: unknown, items: unknown[]): void {
    if (Array.isArray(target) && !this.#tuples.has(target)) target.push(...items);
    else if (target instanceof PyObject) (target.listItems ??= []).push(...items);
    else this.fail("APPEND(S) target is not a list");
  }

  #build(inst: unknown, state: unknown): void {
    if (inst instanceof PyObject) {
      inst.state = state;
    } else if (inst instanceof OrderedDict) {
      inst.state = state;
    } else if (this.#namespaces.has(inst as object)) {
      // state is a dict, or (dict, slotstate)
      const parts = Array.isArray(state) ? state : [state];
      for (const part of parts) {
        for (const [k, v] of dictEntries(part) ?? []) {
          if (typeof k === "string") defineProp(inst as object, k, v);
        }
      }
    }
    // BUILD on tensors (parameter attributes) and builtin containers carries nothing we keep.
  }

  // -- main loop

  load(): unknown {
    const b = this.#b;
    for (;;) {
      this.#opPos = this.#pos;
      if (this.#pos >= b.byteLength) this.fail("pickle ended without STOP");
      const op = this.#op = b[this.#pos++];
      switch (op) {
        case OP.PROTO: {
          const v = this.#u8();
          if (v > HIGHEST_PROTOCOL) this.fail(`unsupported pickle protocol ${v}`);
          break;
        }
        case OP.FRAME:
          this.#u64();
          break;
        case OP.STOP: {
          const result = this.#pop();
          return this.#finalize(result);
        }
        case OP.MARK:
          this.#meta.push(this.#stack);
          this.#stack = [];
          break;
        case OP.POP:
          if (this.#stack.length) this.#stack.pop();
          else this.#popMark();
          break;
        case OP.POP_MARK:
          this.#popMark();
          break;
        case OP.DUP:
          this.#push(this.#top());
          break;
        // -- constants and numbers
        case OP.NONE:
          this.#push(null);
          break;
        case OP.NEWTRUE:
          this.#push(true);
          break;
        case OP.NEWFALSE:
          this.#push(false);
          break;
        case OP.BININT:
          this.#push(this.#i32());
          break;
        case OP.BININT1:
          this.#push(this.#u8());
          break;
        case OP.BININT2:
          this.#push(this.#u16());
          break;
        case OP.LONG1:
          this.#push(decodeLong(this.#bytes(this.#u8())));
          break;
        case OP.LONG4: {
          const n = this.#i32();
          if (n < 0) this.fail("negative LONG4 length");
          this.#push(decodeLong(this.#bytes(n)));
          break;
        }
        case OP.BINFLOAT:
          this.#push(this.#dv.getFloat64(this.#need(8), false));
          break;
        case OP.INT: {
          const s = this.#line().trim();
          if (s === "00") this.#push(false);
          else if (s === "01") this.#push(true);
          else this.#push(parseIntText(s, this));
          break;
        }
        case OP.LONG:
          this.#push(parseIntText(this.#line().trim().replace(/L$/, ""), this));
          break;
        case OP.FLOAT:
          this.#push(parseFloatText(this.#line().trim(), this));
          break;
        // -- strings and bytes
        case OP.BINUNICODE:
          this.#push(this.#utf8(this.#u32()));
          break;
        case OP.SHORT_BINUNICODE:
          this.#push(this.#utf8(this.#u8()));
          break;
        case OP.BINUNICODE8:
          this.#push(this.#utf8(this.#u64()));
          break;
        case OP.UNICODE:
          this.#push(rawUnicodeEscape(this.#line(true)));
          break;
        case OP.BINSTRING: {
          const n = this.#i32();
          if (n < 0) this.fail("negative BINSTRING length");
          this.#push(this.#py2str(this.#bytes(n)));
          break;
        }
        case OP.SHORT_BINSTRING:
          this.#push(this.#py2str(this.#bytes(this.#u8())));
          break;
        case OP.STRING:
          this.#push(this.#py2str(pyStringLiteral(this.#line(), this)));
          break;
        case OP.BINBYTES:
          this.#push(this.#bytes(this.#u32()).slice());
          break;
        case OP.SHORT_BINBYTES:
          this.#push(this.#bytes(this.#u8()).slice());
          break;
        case OP.BINBYTES8:
        case OP.BYTEARRAY8:
          this.#push(this.#bytes(this.#u64()).slice());
          break;
        case OP.NEXT_BUFFER:
        case OP.READONLY_BUFFER:
          this.fail("out-of-band buffers (pickle protocol 5) are not supported");
          break;
        // -- containers
        case OP.EMPTY_DICT:
          this.#push(this.newDict());
          break;
        case OP.EMPTY_LIST:
          this.#push([]);
          break;
        case OP.EMPTY_TUPLE:
          this.#push(this.markTuple([]));
          break;
        case OP.EMPTY_SET:
          this.#push(new Set());
          break;
        case OP.TUPLE:
          this.#push(this.markTuple(this.#popMark()));
          break;
        case OP.TUPLE1: {
          const a = this.#pop();
          this.#push(this.markTuple([a]));
          break;
        }
        case OP.TUPLE2: {
          const b2 = this.#pop(), a = this.#pop();
          this.#push(this.markTuple([a, b2]));
          break;
        }
        case OP.TUPLE3: {
          const c = this.#pop(), b2 = this.#pop(), a = this.#pop();
          this.#push(this.markTuple([a, b2, c]));
          break;
        }
        case OP.LIST:
          this.#push(this.#popMark());
          break;
        case OP.DICT: {
          const items = this.#popMark();
          const d = this.newDict();
          this.#setItems(d, items);
          this.#push(d);
          break;
        }
        case OP.FROZENSET:
          this.#push(new Set(this.#popMark()));
          break;
        case OP.SETITEM: {
          const v = this.#pop(), k = this.#pop();
          this.#setItems(this.#top(), [k, v]);
          break;
        }
        case OP.SETITEMS: {
          const items = this.#popMark();
          this.#setItems(this.#top(), items);
          break;
        }
        case OP.APPEND: {
          const v = this.#pop();
          this.#append(this.#top(), [v]);
          break;
        }
        case OP.APPENDS: {
          const items = this.#popMark();
          this.#append(this.#top(), items);
          break;
        }
        case OP.ADDITEMS: {
          const items = this.#popMark();
          const s = this.#top();
          if (!(s instanceof Set)) this.fail("ADDITEMS target is not a set");
          for (const x of items) s.add(x);
          break;
        }
        // -- memo
        case OP.BINPUT:
          this.#memo.set(this.#u8(), this.#top());
          break;
        case OP.LONG_BINPUT:
          this.#memo.set(this.#u32(), this.#top());
          break;
        case OP.PUT:
          this.#memo.set(Number(parseIntText(this.#line().trim(), this)), this.#top());
          break;
        case OP.MEMOIZE:
          this.#memo.set(this.#memo.size, this.#top());
          break;
        case OP.BINGET:
          this.#push(this.#memoGet(this.#u8()));
          break;
        case OP.LONG_BINGET:
          this.#push(this.#memoGet(this.#u32()));
          break;
        case OP.GET:
          this.#push(this.#memoGet(Number(parseIntText(this.#line().trim(), this))));
          break;
        // -- globals and objects (never executed)
        case OP.GLOBAL: {
          const module = this.#line();
          const name = this.#line();
          this.#push(resolveGlobal(module, name));
          break;
        }
        case OP.STACK_GLOBAL: {
          const name = this.#pop(), module = this.#pop();
          if (typeof name !== "string" || typeof module !== "string") {
            this.fail("STACK_GLOBAL needs two strings");
          }
          this.#push(resolveGlobal(module, name));
          break;
        }
        case OP.EXT1:
        case OP.EXT2:
        case OP.EXT4: {
          const code = op === OP.EXT1 ? this.#u8() : op === OP.EXT2 ? this.#u16() : this.#i32();
          this.#push(new PyGlobal(`<copyreg extension ${code}>`));
          break;
        }
        case OP.REDUCE: {
          const args = this.#pop();
          const callable = this.#pop();
          this.#push(this.#call(callable, args));
          break;
        }
        case OP.NEWOBJ: {
          const args = this.#pop();
          const cls = this.#pop();
          this.#push(this.#call(cls, args));
          break;
        }
        case OP.NEWOBJ_EX: {
          const kwargs = this.#pop();
          const args = this.#pop();
          const cls = this.#pop();
          this.#push(this.#call(cls, args, kwargs));
          break;
        }
        case OP.INST: {
          const module = this.#line();
          const name = this.#line();
          const args = this.markTuple(this.#popMark());
          this.#push(this.#call(resolveGlobal(module, name), args));
          break;
        }
        case OP.OBJ: {
          const items = this.#popMark();
          if (items.length === 0) this.fail("OBJ without a class");
          const [cls, ...args] = items;
          this.#push(this.#call(cls, this.markTuple(args)));
          break;
        }
        case OP.BUILD: {
          const state = this.#pop();
          this.#build(this.#top(), state);
          break;
        }
        case OP.BINPERSID:
          this.#push(this.#persistent(this.#pop()));
          break;
        case OP.PERSID:
          this.#push(this.#persistent(this.#line()));
          break;
        default:
          this.fail(`unknown opcode 0x${op.toString(16)}`);
      }
    }
  }

  #persistent(pid: unknown): unknown {
    const load = this.#opts.persistentLoad;
    if (!load) return new PyObject("<persistent_id>", [pid]);
    return load(pid);
  }

  // -- post-pass: dicts become plain objects where possible, tuples are frozen

  #finalize(root: unknown): unknown {
    const plain = this.#opts.plainDicts ?? true;
    const done = new Map<object, unknown>();
    const conv = (x: unknown, depth: number): unknown => {
      if (typeof x !== "object" || x === null) return x;
      const seen = done.get(x);
      if (seen !== undefined || done.has(x)) return seen;
      if (depth > MAX_DEPTH) {
        throw new SerializationError(`pickle: data nested deeper than ${MAX_DEPTH} levels`);
      }
      const d = depth + 1;
      if (Array.isArray(x)) {
        done.set(x, x);
        for (let i = 0; i < x.length; i++) x[i] = conv(x[i], d);
        if (this.#tuples.has(x)) Object.freeze(x);
        return x;
      }
      if (x instanceof Map) {
        const entries = [...x];
        if (
          plain && this.#dicts.has(x) && !(x instanceof OrderedDict) &&
          entries.every(([k]) => typeof k === "string")
        ) {
          const obj: Record<string, unknown> = {};
          done.set(x, obj);
          for (const [k, v] of entries) defineProp(obj, k as string, conv(v, d));
          return obj;
        }
        done.set(x, x);
        x.clear();
        for (const [k, v] of entries) x.set(conv(k, d), conv(v, d));
        if (x instanceof OrderedDict && x.state !== undefined) x.state = conv(x.state, d);
        return x;
      }
      if (x instanceof Set) {
        done.set(x, x);
        const items = [...x];
        x.clear();
        for (const v of items) x.add(conv(v, d));
        return x;
      }
      if (x instanceof PyObject) {
        done.set(x, x);
        x.args = conv(x.args, d) as unknown[];
        if (x.kwargs !== undefined) x.kwargs = conv(x.kwargs, d);
        if (x.state !== undefined) x.state = conv(x.state, d);
        if (x.listItems) x.listItems = conv(x.listItems, d) as unknown[];
        if (x.dictItems) {
          const m = x.dictItems;
          const entries = [...m];
          m.clear();
          for (const [k, v] of entries) m.set(conv(k, d), conv(v, d));
        }
        return x;
      }
      if (this.#namespaces.has(x)) {
        done.set(x, x);
        const o = x as Record<string, unknown>;
        for (const k of Object.keys(o)) o[k] = conv(o[k], d);
        return x;
      }
      done.set(x, x);
      return x;
    };
    return conv(root, 0);
  }
}

function decodeLong(bytes: Uint8Array): number | bigint {
  const n = bytes.length;
  if (n === 0) return 0;
  // little-endian two's complement; via hex so that long inputs stay linear-time
  let hex = "";
  for (let i = n - 1; i >= 0; i--) hex += HEX[bytes[i]];
  let v = BigInt(`0x${hex}`);
  if (bytes[n - 1] & 0x80) v -= 1n << BigInt(n * 8);
  const asNum = Number(v);
  return Number.isSafeInteger(asNum) ? asNum : v;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

function parseIntText(s: string, u: Unpickler): number | bigint {
  if (!/^[+-]?\d+$/.test(s)) u.fail(`bad integer literal '${s}'`);
  const v = BigInt(s);
  return Number.isSafeInteger(Number(v)) ? Number(v) : v;
}

function parseFloatText(s: string, u: Unpickler): number {
  const t = s.toLowerCase();
  if (/^[+-]?inf(inity)?$/.test(t)) return t.startsWith("-") ? -Infinity : Infinity;
  if (/^[+-]?nan$/.test(t)) return NaN;
  const f = Number(s);
  if (s === "" || Number.isNaN(f)) u.fail(`bad FLOAT literal '${s}'`);
  return f;
}

/** Decodes a protocol-0 `UNICODE` line (raw-unicode-escape). */
function rawUnicodeEscape(s: string): string {
  return s.replace(
    /\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g,
    (_, a, b) => String.fromCodePoint(parseInt(a ?? b, 16)),
  );
}

/** Decodes a protocol-0 `STRING` line: a quoted Python bytes literal. */
function pyStringLiteral(line: string, u: Unpickler): Uint8Array {
  const q = line[0];
  if ((q !== "'" && q !== '"') || line.length < 2 || line[line.length - 1] !== q) {
    u.fail("STRING argument is not quoted");
  }
  const body = line.slice(1, -1);
  const out: number[] = [];
  const simple: Record<string, number> = {
    n: 10,
    t: 9,
    r: 13,
    "\\": 92,
    "'": 39,
    '"': 34,
    a: 7,
    b: 8,
    f: 12,
    v: 11,
    "0": 0,
  };
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c !== "\\") {
      out.push(body.charCodeAt(i) & 0xff);
      continue;
    }
    const e = body[++i];
    if (e === "x") {
      out.push(parseInt(body.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (/[0-7]/.test(e) && /[0-7]/.test(body[i + 1] ?? "")) {
      const m = /^[0-7]{1,3}/.exec(body.slice(i))![0];
      out.push(parseInt(m, 8) & 0xff);
      i += m.length - 1;
    } else if (e in simple) out.push(simple[e]);
    else out.push(92, body.charCodeAt(i) & 0xff);
  }
  return Uint8Array.from(out);
}

/**
 * Unpickles `bytes` without executing anything. Globals outside the allow-table become inert
 * {@link PyGlobal} / {@link PyObject} placeholders. Throws {@link SerializationError} on
 * malformed input.
 */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions = {}): unknown {
  return new Unpickler(bytes, opts).load();
}

// ---------------------------------------------------------------------------------------------
// Pickler (protocol 2)

/** Options for {@link pickle}. */
export interface PickleOptions {
  /**
   * Called for each distinct tensor; returns the storage record key it is saved under (torch's
   * `data/<key>`). Required when the value contains tensors.
   */
  tensorStorageKey?: (t: RawTensor) => string;
}

const TORCH_STORAGE_NAME: Readonly<Record<DTypeName, string>> = {
  float32: "FloatStorage",
  float64: "DoubleStorage",
  float16: "HalfStorage",
  bfloat16: "BFloat16Storage",
  int64: "LongStorage",
  int32: "IntStorage",
  int16: "ShortStorage",
  int8: "CharStorage",
  uint8: "ByteStorage",
  bool: "BoolStorage",
};

class Pickler {
  #buf = new Uint8Array(1024);
  #len = 0;
  readonly #memo = new Map<unknown, number>();
  readonly #globals = new Map<string, number>();
  readonly #active = new Set<object>();
  readonly #path: string[] = [];
  readonly #opts: PickleOptions;
  readonly #enc = new TextEncoder();

  constructor(opts: PickleOptions) {
    this.#opts = opts;
  }

  #fail(msg: string): never {
    const where = this.#path.length ? ` at ${this.#path.join("")}` : "";
    throw new SerializationError(`pickle: ${msg}${where}`);
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.byteLength) return;
    let cap = this.#buf.byteLength * 2;
    while (cap < this.#len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }
  #byte(b: number): void {
    this.#reserve(1);
    this.#buf[this.#len++] = b;
  }
  #raw(bytes: Uint8Array): void {
    this.#reserve(bytes.byteLength);
    this.#buf.set(bytes, this.#len);
    this.#len += bytes.byteLength;
  }
  #u32(v: number): void {
    this.#reserve(4);
    new DataView(this.#buf.buffer).setUint32(this.#len, v, true);
    this.#len += 4;
  }

  result(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }

  #put(obj: unknown): void {
    const i = this.#memo.size + this.#globals.size;
    this.#memo.set(obj, i);
    this.#memoOp(i);
  }
  #memoOp(i: number): void {
    if (i < 256) {
      this.#byte(OP.BINPUT);
      this.#byte(i);
    } else {
      this.#byte(OP.LONG_BINPUT);
      this.#u32(i);
    }
  }
  #get(i: number): void {
    if (i < 256) {
      this.#byte(OP.BINGET);
      this.#byte(i);
    } else {
      this.#byte(OP.LONG_BINGET);
      this.#u32(i);
    }
  }

  #global(module: string, name: string): void {
    const key = `${module}\n${name}`;
    const i = this.#globals.get(key);
    if (i !== undefined) return this.#get(i);
    this.#byte(OP.GLOBAL);
    this.#raw(this.#enc.encode(`${module}\n${name}\n`));
    const idx = this.#memo.size + this.#globals.size;
    this.#globals.set(key, idx);
    this.#memoOp(idx);
  }

  #int(v: number | bigint): void {
    if (typeof v === "number" && v >= 0 && v < 256) {
      this.#byte(OP.BININT1);
      this.#byte(v);
    } else if (typeof v === "number" && v >= 0 && v < 65536) {
      this.#byte(OP.BININT2);
      this.#byte(v & 0xff);
      this.#byte(v >>> 8);
    } else if (typeof v === "number" && v >= -0x80000000 && v <= 0x7fffffff) {
      this.#byte(OP.BININT);
      this.#u32(v >>> 0);
    } else {
      const bytes = encodeLong(BigInt(v));
      if (bytes.length > 255) this.#fail("integer too large for LONG1");
      this.#byte(OP.LONG1);
      this.#byte(bytes.length);
      this.#raw(bytes);
    }
  }

  #float(v: number): void {
    this.#reserve(9);
    this.#buf[this.#len] = OP.BINFLOAT;
    new DataView(this.#buf.buffer).setFloat64(this.#len + 1, v, false);
    this.#len += 9;
  }

  #str(s: string): void {
    const b = this.#enc.encode(s);
    this.#byte(OP.BINUNICODE);
    this.#u32(b.byteLength);
    this.#raw(b);
  }

  #tupleOf(items: readonly unknown[]): void {
    const n = items.length;
    if (n === 0) return this.#byte(OP.EMPTY_TUPLE);
    if (n > 3) this.#byte(OP.MARK);
    items.forEach((x, i) => this.#child(`[${i}]`, x));
    if (n === 1) this.#byte(OP.TUPLE1);
    else if (n === 2) this.#byte(OP.TUPLE2);
    else if (n === 3) this.#byte(OP.TUPLE3);
    else this.#byte(OP.TUPLE);
  }

  #child(step: string, x: unknown): void {
    this.#path.push(step);
    this.save(x);
    this.#path.pop();
  }

  #dictItems(entries: Iterable<[unknown, unknown]>): void {
    let batch: [unknown, unknown][] = [];
    const flush = () => {
      if (batch.length === 0) return;
      if (batch.length === 1) {
        const [k, v] = batch[0];
        this.save(k);
        this.#child(`[${typeof k === "string" ? JSON.stringify(k) : "…"}]`, v);
        this.#byte(OP.SETITEM);
      } else {
        this.#byte(OP.MARK);
        for (const [k, v] of batch) {
          this.save(k);
          this.#child(`[${typeof k === "string" ? JSON.stringify(k) : "…"}]`, v);
        }
        this.#byte(OP.SETITEMS);
      }
      batch = [];
    };
    for (const e of entries) {
      batch.push(e);
      if (batch.length === 1000) flush();
    }
    flush();
  }

  #tensor(t: RawTensor): void {
    validateRawTensor(t, `pickle: tensor${this.#path.length ? ` at ${this.#path.join("")}` : ""}`);
    const keyFor = this.#opts.tensorStorageKey;
    if (!keyFor) this.#fail("tensors need a storage sink (use writeTorchFile)");
    const key = keyFor(t);
    const isParam = t instanceof TorchTensorLeaf && t.isParameter;
    if (isParam) this.#global("torch._utils", "_rebuild_parameter");
    this.#global("torch._utils", "_rebuild_tensor_v2");
    this.#byte(OP.MARK);
    // persistent id: ('storage', torch.XStorage, key, 'cpu', numel)
    this.#byte(OP.MARK);
    this.#str("storage");
    this.#global("torch", TORCH_STORAGE_NAME[t.dtype]);
    this.#str(key);
    this.#str("cpu");
    this.#int(numelOf(t.shape));
    this.#byte(OP.TUPLE);
    this.#byte(OP.BINPERSID);
    this.#int(0);
    const stride: number[] = new Array(t.shape.length);
    for (let i = t.shape.length - 1, s = 1; i >= 0; i--) {
      stride[i] = s;
      s *= t.shape[i];
    }
    this.#tupleOf(t.shape);
    this.#tupleOf(stride);
    const rg = t instanceof TorchTensorLeaf && t.requiresGrad;
    this.#byte(!isParam && rg ? OP.NEWTRUE : OP.NEWFALSE);
    this.#global("collections", "OrderedDict");
    this.#byte(OP.EMPTY_TUPLE);
    this.#byte(OP.REDUCE);
    this.#byte(OP.TUPLE);
    this.#byte(OP.REDUCE);
    if (isParam) {
      this.#byte(rg ? OP.NEWTRUE : OP.NEWFALSE);
      this.#global("collections", "OrderedDict");
      this.#byte(OP.EMPTY_TUPLE);
      this.#byte(OP.REDUCE);
      this.#byte(OP.TUPLE3);
      this.#byte(OP.REDUCE);
    }
  }

  save(x: unknown): void {
    if (x === null || x === undefined) return this.#byte(OP.NONE);
    switch (typeof x) {
      case "boolean":
        return this.#byte(x ? OP.NEWTRUE : OP.NEWFALSE);
      case "number":
        if (Number.isSafeInteger(x) && !Object.is(x, -0)) return this.#int(x);
        return this.#float(x);
      case "bigint":
        return this.#int(x);
      case "string":
        return this.#str(x);
      case "object":
        break;
      default:
        this.#fail(`cannot pickle a ${typeof x}`);
    }
    if (x instanceof PyFloat) return this.#float(x.value);
    const memo = this.#memo.get(x);
    if (memo !== undefined) return this.#get(memo);
    if (isRawTensor(x)) {
      this.#tensor(x);
      this.#put(x);
      return;
    }
    if (x instanceof TorchDType) return this.#global("torch", x.name);
    if (x instanceof PyGlobal) {
      const i = x.__global__.lastIndexOf(".");
      return this.#global(x.__global__.slice(0, i), x.__global__.slice(i + 1));
    }
    if (x instanceof PyComplex) {
      this.#global("__builtin__", "complex");
      this.#float(x.real);
      this.#float(x.imag);
      this.#byte(OP.TUPLE2);
      this.#byte(OP.REDUCE);
      return;
    }
    if (x instanceof Uint8Array) {
      // protocol 2 has no bytes opcode for Python 3: torch and pickle use _codecs.encode
      this.#global("_codecs", "encode");
      let latin = "";
      for (let i = 0; i < x.length; i += 4096) {
        latin += String.fromCharCode(...x.subarray(i, i + 4096));
      }
      this.#str(latin);
      this.#str("latin1");
      this.#byte(OP.TUPLE2);
      this.#byte(OP.REDUCE);
      this.#put(x);
      return;
    }
    if (Array.isArray(x)) {
      if (Object.isFrozen(x)) {
        if (this.#active.has(x)) this.#fail("cyclic tuple cannot be pickled");
        this.#active.add(x);
        this.#tupleOf(x);
        this.#active.delete(x);
        if (x.length > 0) this.#put(x);
        return;
      }
      this.#byte(OP.EMPTY_LIST);
      this.#put(x);
      for (let i = 0; i < x.length; i += 1000) {
        const chunk = x.slice(i, i + 1000);
        if (chunk.length > 1) this.#byte(OP.MARK);
        chunk.forEach((v, j) => this.#child(`[${i + j}]`, v));
        this.#byte(chunk.length > 1 ? OP.APPENDS : OP.APPEND);
      }
      return;
    }
    if (x instanceof OrderedDict) {
      this.#global("collections", "OrderedDict");
      this.#byte(OP.EMPTY_TUPLE);
      this.#byte(OP.REDUCE);
      this.#put(x);
      this.#dictItems(x);
      if (x.state !== undefined && x.state !== null) {
        this.#child(".state", x.state);
        this.#byte(OP.BUILD);
      }
      return;
    }
    if (x instanceof Map) {
      this.#byte(OP.EMPTY_DICT);
      this.#put(x);
      this.#dictItems(x);
      return;
    }
    if (x instanceof Set) {
      this.#global("__builtin__", "set");
      this.#byte(OP.EMPTY_LIST);
      if (x.size > 0) {
        this.#byte(OP.MARK);
        for (const v of x) this.#child("{}", v);
        this.#byte(OP.APPENDS);
      }
      this.#byte(OP.TUPLE1);
      this.#byte(OP.REDUCE);
      this.#put(x);
      return;
    }
    const proto = Object.getPrototypeOf(x);
    if (proto === Object.prototype || proto === null) {
      this.#byte(OP.EMPTY_DICT);
      this.#put(x);
      this.#dictItems(Object.entries(x));
      return;
    }
    const kind = x instanceof PyObject
      ? `inert placeholder for ${x.__global__}`
      : (proto?.constructor?.name ?? "object");
    this.#fail(`cannot pickle ${kind}`);
  }
}

function encodeLong(v: bigint): Uint8Array {
  if (v === 0n) return new Uint8Array(0);
  const out: number[] = [];
  let x = v;
  // two's complement, little-endian, minimal length (Python's encode_long)
  for (;;) {
    out.push(Number(x & 0xffn));
    x >>= 8n;
    const signBit = (out[out.length - 1] & 0x80) !== 0;
    if ((x === 0n && !signBit) || (x === -1n && signBit)) break;
  }
  return Uint8Array.from(out);
}

/**
 * Pickles `value` with protocol 2, as `torch.save` does. Tensors ({@link RawTensor}s) are written
 * as `torch._utils._rebuild_tensor_v2` over a persistent storage id
 * `('storage', torch.<T>Storage, key, 'cpu', numel)`; pass {@link PickleOptions.tensorStorageKey}
 * to collect them. The same JS object pickled twice is written once and referenced (memo).
 */
export function pickle(value: unknown, opts: PickleOptions = {}): Uint8Array {
  const p = new Pickler(opts);
  const header = new Uint8Array([OP.PROTO, 2]);
  p.save(value);
  const body = p.result();
  const out = new Uint8Array(header.byteLength + body.byteLength + 1);
  out.set(header);
  out.set(body, header.byteLength);
  out[out.byteLength - 1] = OP.STOP;
  return out;
}
