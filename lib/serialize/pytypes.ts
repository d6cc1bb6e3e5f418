/**
 * JavaScript representations of Python values produced by the unpickler and accepted by the
 * pickler.
 *
 * | Python                          | JavaScript                                               |
 * | ------------------------------- | -------------------------------------------------------- |
 * | `None`, `bool`, `str`           | `null`, `boolean`, `string`                              |
 * | `int`                           | `number` when a safe integer, else `bigint`              |
 * | `float`                         | `number` (write {@link PyFloat} to force a float)        |
 * | `bytes` / `bytearray`           | `Uint8Array`                                             |
 * | `list`                          | `Array`                                                  |
 * | `tuple`                         | frozen `Array` (see {@link pyTuple}, {@link isPyTuple})  |
 * | `dict`                          | plain object if all keys are strings, else `Map`         |
 * | `collections.OrderedDict`       | {@link OrderedDict} (a `Map`)                            |
 * | `set` / `frozenset`             | `Set`                                                    |
 * | `complex`, `slice`              | {@link PyComplex}, {@link PySlice}                       |
 * | `argparse.Namespace`            | plain object                                             |
 * | `torch.Tensor` / `Parameter`    | {@link TorchTensorLeaf} (a {@link RawTensor})            |
 * | `torch.float32`, ...            | {@link TorchDType}                                       |
 * | any other global / instance     | {@link PyGlobal} / {@link PyObject} inert placeholders   |
 *
 * @module
 */

import { type DTypeName, isDTypeName, type RawTensor } from "./raw.ts";

/** A `collections.OrderedDict`: a `Map` keeping insertion order, plus pickled attributes. */
export class OrderedDict<K = unknown, V = unknown> extends Map<K, V> {
  /**
   * Instance state set by pickle's BUILD (e.g. a `state_dict`'s `{_metadata: ...}`); written
   * back by the pickler when present.
   */
  declare state?: unknown;
}

/** An inert reference to a Python global that is not in the allow-table. Never called. */
export class PyGlobal {
  /** `module.qualname` of the global. */
  readonly __global__: string;
  constructor(name: string) {
    this.__global__ = name;
  }
}

/**
 * An inert placeholder for an object the unpickler would have had to construct by calling a
 * global that is not allowed (custom classes, `os.system`, ...). Records what was pickled.
 */
export class PyObject {
  /** `module.qualname` of the callable or class. */
  readonly __global__: string;
  /** Positional arguments of the call (REDUCE / NEWOBJ). */
  args: unknown[];
  /** Keyword arguments (NEWOBJ_EX), if any. */
  declare kwargs?: unknown;
  /** State passed to BUILD (`__setstate__` / `__dict__`), if any. */
  declare state?: unknown;
  /** Items appended (list subclasses), if any. */
  declare listItems?: unknown[];
  /** Items set (dict subclasses), if any. */
  declare dictItems?: Map<unknown, unknown>;
  constructor(name: string, args: unknown[], kwargs?: unknown) {
    this.__global__ = name;
    this.args = args;
    if (kwargs !== undefined) this.kwargs = kwargs;
  }
}

/** Marks a number to be pickled as a Python `float` even when it is integral (e.g. `1.0`). */
export class PyFloat {
  readonly value: number;
  constructor(value: number) {
    this.value = value;
  }
  /** The wrapped number. */
  valueOf(): number {
    return this.value;
  }
}

/** A Python `complex`. */
export class PyComplex {
  constructor(readonly real: number, readonly imag: number) {}
}

/** A Python `slice`. */
export class PySlice {
  constructor(readonly start: unknown, readonly stop: unknown, readonly step: unknown) {}
}

/** A `torch.dtype` global such as `torch.float32`. */
export class TorchDType {
  /** Name as in `torch.<name>` (e.g. `"float32"`, `"uint16"`). */
  readonly name: string;
  constructor(name: string) {
    this.name = name;
  }
  /** The {@link DTypeName} for this dtype, or undefined when it has none here. */
  get dtype(): DTypeName | undefined {
    const canonical = DTYPE_ALIASES[this.name] ?? this.name;
    return isDTypeName(canonical) ? canonical : undefined;
  }
}

/** Aliases torch accepts for dtype attributes. */
export const DTYPE_ALIASES: Readonly<Record<string, DTypeName>> = {
  float: "float32",
  double: "float64",
  half: "float16",
  long: "int64",
  int: "int32",
  short: "int16",
};

/** A storage class global such as `torch.FloatStorage` or `torch.storage.UntypedStorage`. */
export class TorchStorageType {
  constructor(
    /** Full global name. */
    readonly name: string,
    /** Element dtype, undefined for untyped or unsupported storages. */
    readonly dtype: DTypeName | undefined,
  ) {}
}

/** A storage loaded through a persistent id: raw bytes plus what the pickle said about them. */
export class TorchStorage {
  constructor(
    /** Record key in the archive (`data/<key>`). */
    readonly key: string,
    /** Storage type from the persistent id. */
    readonly type: TorchStorageType | unknown,
    /** Device string from the persistent id, e.g. `"cpu"` or `"cuda:0"`. */
    readonly location: string,
    /** Storage bytes in file byte order. */
    readonly bytes: Uint8Array,
    /** True when the archive's byte order is big-endian. */
    readonly bigEndian = false,
  ) {}
}

/** A tensor read from a pickle: a {@link RawTensor} plus torch-level flags. */
export class TorchTensorLeaf implements RawTensor {
  dtype: DTypeName;
  shape: number[];
  data: Uint8Array;
  /** `requires_grad` as pickled. */
  requiresGrad: boolean;
  /** True when the tensor was an `nn.Parameter`. */
  isParameter: boolean;
  constructor(
    dtype: DTypeName,
    shape: number[],
    data: Uint8Array,
    requiresGrad = false,
    isParameter = false,
  ) {
    this.dtype = dtype;
    this.shape = shape;
    this.data = data;
    this.requiresGrad = requiresGrad;
    this.isParameter = isParameter;
  }
}

/** Builds a Python tuple value: a frozen array, which the pickler writes as a tuple. */
export function pyTuple<T extends unknown[]>(...items: T): Readonly<T> {
  return Object.freeze(items);
}

/** True for arrays that stand for Python tuples (frozen arrays). */
export function isPyTuple(x: unknown): x is readonly unknown[] {
  return Array.isArray(x) && Object.isFrozen(x);
}
