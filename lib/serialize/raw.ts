/**
 * Neutral raw tensor type shared by the serialization formats.
 *
 * A {@link RawTensor} is a dtype, a shape and little-endian, C-contiguous bytes. It carries no
 * dependency on LibTorch; converting to and from live tensors is done elsewhere.
 *
 * @module
 */

/** Element types understood by the serialization layer. */
export type DTypeName =
  | "float32"
  | "float64"
  | "float16"
  | "bfloat16"
  | "int64"
  | "int32"
  | "int16"
  | "int8"
  | "uint8"
  | "bool";

/** A dense tensor as plain bytes: little-endian, C-contiguous (row-major). */
export interface RawTensor {
  dtype: DTypeName;
  shape: number[];
  data: Uint8Array;
}

/** Error thrown for malformed, unsupported or unwritable serialized data. */
export class SerializationError extends Error {
  /** @param message what went wrong, naming the offending tensor, entry or field */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SerializationError";
  }
}

/** Bytes per element of each dtype. */
export const DTYPE_ITEMSIZE: Readonly<Record<DTypeName, number>> = Object.freeze({
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
});

/** All supported dtype names. */
export const DTYPE_NAMES: readonly DTypeName[] = Object.freeze(
  Object.keys(DTYPE_ITEMSIZE) as DTypeName[],
);

/** True when `name` is one of the supported {@link DTypeName}s. */
export function isDTypeName(name: unknown): name is DTypeName {
  return typeof name === "string" && Object.hasOwn(DTYPE_ITEMSIZE, name);
}

/** Size in bytes of one element of `dtype`. */
export function dtypeItemSize(dtype: DTypeName): number {
  const size = DTYPE_ITEMSIZE[dtype];
  if (size === undefined) throw new SerializationError(`unknown dtype '${dtype}'`);
  return size;
}

/** Number of elements of a tensor with `shape` (1 for a scalar, `[]`). */
export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** True for a non-negative safe integer. */
export function isDim(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

/**
 * Type guard for {@link RawTensor}: an object with a known `dtype`, an integer `shape` array and a
 * `Uint8Array` `data` (the byte length is not checked here; see {@link validateRawTensor}).
 */
export function isRawTensor(x: unknown): x is RawTensor {
  if (typeof x !== "object" || x === null) return false;
  const t = x as Partial<RawTensor>;
  return isDTypeName(t.dtype) && Array.isArray(t.shape) && t.shape.every(isDim) &&
    t.data instanceof Uint8Array;
}

/** Throws a {@link SerializationError} unless `t` is a well-formed tensor (naming it `what`). */
export function validateRawTensor(t: unknown, what: string): asserts t is RawTensor {
  if (!isRawTensor(t)) {
    throw new SerializationError(
      `${what}: not a RawTensor (need a known dtype, an integer shape and Uint8Array data)`,
    );
  }
  const expected = numelOf(t.shape) * DTYPE_ITEMSIZE[t.dtype];
  if (t.data.byteLength !== expected) {
    throw new SerializationError(
      `${what}: data has ${t.data.byteLength} bytes but shape [${t.shape}] of ${t.dtype} ` +
        `needs ${expected}`,
    );
  }
}

/** Builds a {@link RawTensor}, checking that `data` has exactly the right number of bytes. */
export function rawTensor(dtype: DTypeName, shape: readonly number[], data: Uint8Array): RawTensor {
  const t: RawTensor = { dtype, shape: [...shape], data };
  validateRawTensor(t, "rawTensor");
  return t;
}

/** Typed array kinds returned by {@link typedArrayOf}. */
export type RawTypedArray =
  | Float32Array
  | Float64Array
  | Uint16Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

/**
 * A typed array over a tensor's elements (float16/bfloat16 as raw `Uint16Array` bits, bool as
 * `Uint8Array`). Shares memory with `t.data` when it is suitably aligned, otherwise copies.
 * Assumes a little-endian host, like the rest of the toolkit.
 */
export function typedArrayOf(t: RawTensor): RawTypedArray {
  const size = dtypeItemSize(t.dtype);
  let bytes = t.data;
  if (bytes.byteOffset % size !== 0) bytes = bytes.slice();
  const { buffer, byteOffset } = bytes;
  const n = bytes.byteLength / size;
  switch (t.dtype) {
    case "float32":
      return new Float32Array(buffer, byteOffset, n);
    case "float64":
      return new Float64Array(buffer, byteOffset, n);
    case "float16":
    case "bfloat16":
      return new Uint16Array(buffer, byteOffset, n);
    case "int64":
      return new BigInt64Array(buffer, byteOffset, n);
    case "int32":
      return new Int32Array(buffer, byteOffset, n);
    case "int16":
      return new Int16Array(buffer, byteOffset, n);
    case "int8":
      return new Int8Array(buffer, byteOffset, n);
    case "uint8":
    case "bool":
      return new Uint8Array(buffer, byteOffset, n);
  }
}

/** Raw bytes of a typed array's viewed range (no copy). */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
