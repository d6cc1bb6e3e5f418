/** Element types and devices, with their codes in the C API. */

/** Element types slimclr handles (LibTorch's ScalarType codes in `DTYPE_CODES`). */
export type DType =
  | "uint8"
  | "int8"
  | "int16"
  | "int32"
  | "int64"
  | "float16"
  | "float32"
  | "float64"
  | "bool"
  | "bfloat16";

/** LibTorch ScalarType codes. */
export const DTYPE_CODES: Readonly<Record<DType, number>> = {
  uint8: 0,
  int8: 1,
  int16: 2,
  int32: 3,
  int64: 4,
  float16: 5,
  float32: 6,
  float64: 7,
  bool: 11,
  bfloat16: 15,
};

const BY_CODE = new Map(Object.entries(DTYPE_CODES).map(([k, v]) => [v, k as DType]));

/** The dtype for a ScalarType code. */
export function dtypeFromCode(code: number): DType {
  const d = BY_CODE.get(code);
  if (!d) throw new TypeError(`unsupported LibTorch ScalarType code ${code}`);
  return d;
}

/** Bytes per element. */
export const DTYPE_SIZE: Readonly<Record<DType, number>> = {
  uint8: 1,
  int8: 1,
  int16: 2,
  int32: 4,
  int64: 8,
  float16: 2,
  float32: 4,
  float64: 8,
  bool: 1,
  bfloat16: 2,
};

/** TypedArray used to read or write each dtype (16-bit floats as raw bits). */
export type TypedArrayFor<D extends DType> = D extends "float32" ? Float32Array
  : D extends "float64" ? Float64Array
  : D extends "int64" ? BigInt64Array
  : D extends "int32" ? Int32Array
  : D extends "int16" ? Int16Array
  : D extends "int8" ? Int8Array
  : D extends "float16" | "bfloat16" ? Uint16Array
  : Uint8Array;

/** Any TypedArray slimclr reads or writes. */
export type AnyTypedArray =
  | Float32Array
  | Float64Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint16Array
  | Uint8Array;

/** Builds the TypedArray view of `bytes` for `dtype`. */
export function typedView(
  dtype: DType,
  buffer: ArrayBuffer,
  offset = 0,
  length?: number,
): AnyTypedArray {
  switch (dtype) {
    case "float32":
      return new Float32Array(buffer, offset, length);
    case "float64":
      return new Float64Array(buffer, offset, length);
    case "int64":
      return new BigInt64Array(buffer, offset, length);
    case "int32":
      return new Int32Array(buffer, offset, length);
    case "int16":
      return new Int16Array(buffer, offset, length);
    case "int8":
      return new Int8Array(buffer, offset, length);
    case "float16":
    case "bfloat16":
      return new Uint16Array(buffer, offset, length);
    default:
      return new Uint8Array(buffer, offset, length);
  }
}

/** The dtype a TypedArray holds by default. */
export function dtypeOfArray(a: AnyTypedArray): DType {
  if (a instanceof Float32Array) return "float32";
  if (a instanceof Float64Array) return "float64";
  if (a instanceof BigInt64Array) return "int64";
  if (a instanceof Int32Array) return "int32";
  if (a instanceof Int16Array) return "int16";
  if (a instanceof Int8Array) return "int8";
  if (a instanceof Uint16Array) return "float16";
  return "uint8";
}

/** A device: `"cpu"`, `"cuda"` (device 0) or `"cuda:N"`. */
export type Device = "cpu" | "cuda" | `cuda:${number}`;

/** The C API's device code: -1 for the CPU, N for cuda:N. */
export function deviceCode(d: Device): number {
  if (d === "cpu") return -1;
  if (d === "cuda") return 0;
  const m = /^cuda:(\d+)$/.exec(d);
  if (!m) throw new TypeError(`unknown device '${d}' (expected cpu, cuda or cuda:N)`);
  return Number(m[1]);
}

/** The device for a C API device code. */
export function deviceFromCode(code: number): Device {
  return code < 0 ? "cpu" : `cuda:${code}`;
}

/** True for floating-point dtypes. */
export function isFloating(d: DType): boolean {
  return d === "float32" || d === "float64" || d === "float16" || d === "bfloat16";
}
