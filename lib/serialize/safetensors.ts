/**
 * Safetensors reader and writer (https://github.com/huggingface/safetensors format).
 *
 * Layout: an 8-byte little-endian header length `N`, `N` bytes of UTF-8 JSON
 * (`{"__metadata__": {...}, name: {dtype, shape, data_offsets: [begin, end]}, ...}`), then the
 * tensor bytes, offsets being relative to the end of the header.
 *
 * @module
 */

import { atomicWriteFile, toPath } from "./fs.ts";
import {
  DTYPE_ITEMSIZE,
  type DTypeName,
  isDim,
  numelOf,
  type RawTensor,
  SerializationError,
  validateRawTensor,
} from "./raw.ts";

/** Largest header accepted, as in the reference implementation. */
export const MAX_SAFETENSORS_HEADER = 100_000_000;

const TO_ST: Readonly<Record<DTypeName, string>> = {
  float32: "F32",
  float64: "F64",
  float16: "F16",
  bfloat16: "BF16",
  int64: "I64",
  int32: "I32",
  int16: "I16",
  int8: "I8",
  uint8: "U8",
  bool: "BOOL",
};

const FROM_ST: ReadonlyMap<string, DTypeName> = new Map(
  Object.entries(TO_ST).map(([k, v]) => [v, k as DTypeName]),
);

/** Safetensors dtypes that exist in the format but have no {@link DTypeName} here. */
const KNOWN_UNSUPPORTED = new Set([
  "U16",
  "U32",
  "U64",
  "F8_E4M3",
  "F8_E5M2",
  "F8_E8M0",
  "F6_E2M3",
  "F6_E3M2",
  "F4",
  "C64",
]);

/**
 * Rank used by the reference writer to order tensors (its `Dtype` enum order, compared
 * descending so that the widest alignment comes first).
 */
const ST_RANK: Readonly<Record<DTypeName, number>> = {
  bool: 0,
  uint8: 1,
  int8: 2,
  int16: 3,
  float16: 4,
  bfloat16: 5,
  int32: 6,
  float32: 7,
  float64: 8,
  int64: 9,
};

/** Result of {@link readSafetensors}. */
export interface SafetensorsContents {
  /** Tensors in file (offset) order; each `data` is a view into the input bytes. */
  tensors: Map<string, RawTensor>;
  /** The `__metadata__` string map (empty when absent). */
  metadata: Record<string, string>;
}

function fail(msg: string): never {
  throw new SerializationError(`safetensors: ${msg}`);
}

/**
 * Parses a safetensors buffer without copying tensor data: every `data` is a `subarray` of
 * `bytes`. Validates the header length, JSON structure, dtypes, shapes, that offsets are in
 * bounds and that the tensors cover the data section contiguously without overlap.
 */
export function readSafetensors(bytes: Uint8Array): SafetensorsContents {
  if (bytes.byteLength < 8) fail(`file is ${bytes.byteLength} bytes, too short for a header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = dv.getBigUint64(0, true);
  if (n > BigInt(MAX_SAFETENSORS_HEADER)) {
    fail(`header length ${n} exceeds the limit of ${MAX_SAFETENSORS_HEADER} bytes`);
  }
  const headerLen = Number(n);
  if (8 + headerLen > bytes.byteLength) {
    fail(`header length ${headerLen} runs past the end of the ${bytes.byteLength}-byte file`);
  }
  let header: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
    header = JSON.parse(text);
  } catch (err) {
    throw new SerializationError(`safetensors: header is not valid UTF-8 JSON: ${err}`, {
      cause: err,
    });
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    fail("header is not a JSON object");
  }
  const dataStart = 8 + headerLen;
  const dataLen = bytes.byteLength - dataStart;
  const metadata: Record<string, string> = {};
  const infos: { name: string; dtype: DTypeName; shape: number[]; begin: number; end: number }[] =
    [];
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof info !== "object" || info === null || Array.isArray(info)) {
        fail("__metadata__ must be an object of strings");
      }
      for (const [k, v] of Object.entries(info as Record<string, unknown>)) {
        if (typeof v !== "string") fail(`__metadata__['${k}'] is not a string`);
        Object.defineProperty(metadata, k, {
          value: v,
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      continue;
    }
    const where = `tensor '${name}'`;
    if (typeof info !== "object" || info === null || Array.isArray(info)) {
      fail(`${where}: entry is not an object`);
    }
    const { dtype, shape, data_offsets } = info as Record<string, unknown>;
    if (typeof dtype !== "string") fail(`${where}: field 'dtype' missing or not a string`);
    const dt = FROM_ST.get(dtype);
    if (dt === undefined) {
      fail(
        `${where}: ${KNOWN_UNSUPPORTED.has(dtype) ? "unsupported" : "unknown"} dtype '${dtype}'`,
      );
    }
    if (!Array.isArray(shape) || !shape.every(isDim)) {
      fail(`${where}: field 'shape' must be an array of non-negative integers`);
    }
    if (
      !Array.isArray(data_offsets) || data_offsets.length !== 2 || !data_offsets.every(isDim)
    ) {
      fail(`${where}: field 'data_offsets' must be [begin, end] non-negative integers`);
    }
    const [begin, end] = data_offsets as number[];
    if (begin > end) fail(`${where}: data_offsets [${begin}, ${end}] has begin > end`);
    if (end > dataLen) {
      fail(`${where}: data_offsets end ${end} is past the ${dataLen}-byte data section`);
    }
    const expected = numelOf(shape) * DTYPE_ITEMSIZE[dt];
    if (expected !== end - begin) {
      fail(
        `${where}: shape [${shape}] of ${dtype} needs ${expected} bytes but data_offsets ` +
          `span ${end - begin}`,
      );
    }
    infos.push({ name, dtype: dt, shape: [...shape], begin, end });
  }
  infos.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const t of infos) {
    if (t.begin !== cursor) {
      fail(
        t.begin < cursor
          ? `tensor '${t.name}': data_offsets [${t.begin}, ${t.end}] overlap the previous tensor`
          : `tensor '${t.name}': gap in the data section before offset ${t.begin} ` +
            `(previous tensor ends at ${cursor})`,
      );
    }
    cursor = t.end;
  }
  if (cursor !== dataLen) {
    fail(`tensors cover ${cursor} bytes but the data section has ${dataLen}`);
  }
  const tensors = new Map<string, RawTensor>();
  for (const t of infos) {
    tensors.set(t.name, {
      dtype: t.dtype,
      shape: t.shape,
      data: bytes.subarray(dataStart + t.begin, dataStart + t.end),
    });
  }
  return { tensors, metadata };
}

function compareCodePoints(a: string, b: string): number {
  // Orders like a byte-wise comparison of the UTF-8 encodings (as Rust's `str::cmp`).
  const ai = a[Symbol.iterator](), bi = b[Symbol.iterator]();
  for (;;) {
    const x = ai.next(), y = bi.next();
    if (x.done || y.done) return (x.done ? 0 : 1) - (y.done ? 0 : 1);
    const d = x.value.codePointAt(0)! - y.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

/**
 * Serializes tensors to safetensors bytes. Tensors are laid out as the reference implementation
 * does (by dtype, widest first, then by name); the JSON header (with `__metadata__` first when
 * given) is padded with spaces to a multiple of 8 bytes.
 */
export function writeSafetensors(
  tensors: Map<string, RawTensor> | Record<string, RawTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  for (const [name, t] of entries) {
    if (typeof name !== "string") fail(`tensor names must be strings, got ${typeof name}`);
    if (name === "__metadata__") fail("'__metadata__' cannot be used as a tensor name");
    validateRawTensor(t, `safetensors: tensor '${name}'`);
  }
  entries.sort(([an, at], [bn, bt]) =>
    ST_RANK[bt.dtype] - ST_RANK[at.dtype] || compareCodePoints(an, bn)
  );
  const header: Record<string, unknown> = {};
  const define = (k: string, v: unknown) =>
    Object.defineProperty(header, k, { value: v, enumerable: true, writable: true });
  if (metadata !== undefined) {
    const meta: Record<string, string> = {};
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") fail(`metadata['${k}'] must be a string, got ${typeof v}`);
      Object.defineProperty(meta, k, { value: v, enumerable: true, writable: true });
    }
    define("__metadata__", meta);
  }
  let offset = 0;
  for (const [name, t] of entries) {
    const end = offset + t.data.byteLength;
    define(name, { dtype: TO_ST[t.dtype], shape: t.shape, data_offsets: [offset, end] });
    offset = end;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = json.byteLength + ((8 - (json.byteLength % 8)) % 8);
  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + padded);
  let pos = 8 + padded;
  for (const [, t] of entries) {
    out.set(t.data, pos);
    pos += t.data.byteLength;
  }
  return out;
}

/** Reads a safetensors file; tensor data are views into the file's bytes. */
export async function loadSafetensors(path: string | URL): Promise<SafetensorsContents> {
  return readSafetensors(await Deno.readFile(toPath(path)));
}

/** Writes a safetensors file atomically (temporary file in the same directory, fsync, rename). */
export async function saveSafetensors(
  path: string | URL,
  tensors: Map<string, RawTensor> | Record<string, RawTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  await atomicWriteFile(path, writeSafetensors(tensors, metadata));
}
