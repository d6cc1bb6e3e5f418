/**
 * Reader and writer for `torch.save` files (the zip format of torch >= 1.6).
 *
 * Layout: `<archive>/data.pkl` (pickle of the object tree, tensors as persistent storage ids),
 * `<archive>/data/<key>` (raw storage bytes), `<archive>/byteorder`, `<archive>/version` and a few
 * informational records. The archive folder name is arbitrary.
 *
 * @module
 */

import { atomicWriteFile, toPath } from "./fs.ts";
import { pickle, unpickle } from "./pickle.ts";
import { PyObject, TorchStorage, TorchStorageType, TorchTensorLeaf } from "./pytypes.ts";
import {
  DTYPE_ITEMSIZE,
  type DTypeName,
  isRawTensor,
  type RawTensor,
  SerializationError,
} from "./raw.ts";
import { crc32, writeZip, type ZipEntry, ZipReader } from "./zip.ts";

/** Options for reading torch files. */
export interface ReadTorchOptions {
  /**
   * Verify record CRC-32s (default true). Records whose stored CRC is 0 are not checked, since
   * torch writes 0 when saved with `torch.serialization.set_crc32_options(False)`.
   */
  verifyCrc?: boolean;
  /** Represent `dict`s with only string keys as plain objects (default true). */
  plainDicts?: boolean;
}

/** Options for writing torch files. */
export interface WriteTorchOptions {
  /** Folder name inside the zip (default `"archive"`, as torch uses for buffers). */
  archiveName?: string;
}

function fail(msg: string): never {
  throw new SerializationError(`torch file: ${msg}`);
}

function looksLegacy(bytes: Uint8Array): boolean {
  // Legacy torch.save: a pickle stream starting with PROTO 2 and a magic-number LONG1, or a tar.
  if (bytes.byteLength >= 2 && bytes[0] === 0x80 && bytes[1] <= 5) return true;
  if (bytes.byteLength >= 262) {
    const magic = new TextDecoder().decode(bytes.subarray(257, 262));
    if (magic === "ustar") return true;
  }
  return false;
}

interface Layout {
  zip: ZipReader;
  prefix: string;
  pkl: ZipEntry;
  byteorder?: ZipEntry;
  version?: ZipEntry;
  storages: ZipEntry[];
}

function layout(bytes: Uint8Array): Layout {
  const localHeader = bytes.byteLength >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b &&
    bytes[2] === 0x03 && bytes[3] === 0x04;
  if (!localHeader && looksLegacy(bytes)) {
    fail("legacy format not supported, re-save with torch>=1.6 (default zip serialization)");
  }
  if (!localHeader && !ZipReader.isZip(bytes)) fail("not a torch.save zip archive");
  const zip = new ZipReader(bytes);
  if (zip.entries.length === 0) fail("archive is empty");
  // torch takes the archive folder from the first record's path
  const first = zip.entries[0].name;
  let prefix = first.includes("/") ? first.slice(0, first.indexOf("/")) : "";
  if (!zip.has(`${prefix}/data.pkl`)) {
    const alt = zip.entries.find((e) => /^[^/]+\/data\.pkl$/.test(e.name));
    if (!alt) {
      if (zip.entries.some((e) => e.name.endsWith("/model.json"))) {
        fail("TorchScript archive with model.json is not a torch.save file");
      }
      fail("no <archive>/data.pkl record found");
    }
    prefix = alt.name.slice(0, alt.name.indexOf("/"));
  }
  const pkl = zip.get(`${prefix}/data.pkl`)!;
  const byteorder = zip.get(`${prefix}/byteorder`);
  const version = zip.get(`${prefix}/.data/version`) ?? zip.get(`${prefix}/version`);
  const dataPrefix = `${prefix}/data/`;
  const storages = zip.entries.filter((e) => e.name.startsWith(dataPrefix));
  return { zip, prefix, pkl, byteorder, version, storages };
}

/** Checks the `byteorder` and `version` records; returns true for big-endian archives. */
function checkMeta(byteorder?: Uint8Array, version?: Uint8Array): boolean {
  if (version) {
    const text = new TextDecoder().decode(version).trim();
    if (!/^\d+$/.test(text)) fail(`bad version record '${text}'`);
  }
  // archives from before the byteorder record were written on little-endian hosts
  if (!byteorder) return false;
  const text = new TextDecoder().decode(byteorder).trim();
  if (text === "big") return true;
  if (text !== "little") fail(`unknown byteorder '${text}'`);
  return false;
}

function crcOpt(e: ZipEntry, opts: ReadTorchOptions): { verifyCrc: boolean } {
  return { verifyCrc: (opts.verifyCrc ?? true) && (e.crc32 !== 0 || e.uncompressedSize === 0) };
}

function decode(
  l: Layout,
  bigEndian: boolean,
  pkl: Uint8Array,
  records: Map<string, Uint8Array>,
  opts: ReadTorchOptions,
): unknown {
  const loaded = new Map<string, TorchStorage>();
  const persistentLoad = (pid: unknown): unknown => {
    if (!Array.isArray(pid) || pid[0] !== "storage" || pid.length < 5) {
      return new PyObject("<persistent_id>", [pid]);
    }
    const [, type, keyArg, location, numelArg] = pid;
    const key = String(keyArg);
    const cached = loaded.get(key);
    if (cached) return cached;
    const bytes = records.get(key);
    if (bytes === undefined) fail(`storage record '${l.prefix}/data/${key}' is missing`);
    const dtype: DTypeName | undefined = type instanceof TorchStorageType ? type.dtype : undefined;
    const numel = typeof numelArg === "bigint" ? Number(numelArg) : numelArg;
    let data = bytes;
    if (typeof numel === "number" && Number.isSafeInteger(numel) && numel >= 0) {
      // typed storages count elements; untyped storages count bytes
      const nbytes = numel * (dtype ? DTYPE_ITEMSIZE[dtype] : 1);
      if (type instanceof TorchStorageType && (dtype || /UntypedStorage$/.test(type.name))) {
        if (bytes.byteLength < nbytes) {
          fail(
            `storage '${key}' has ${bytes.byteLength} bytes, but the pickle declares ` +
              `${numel} elements (${nbytes} bytes)`,
          );
        }
        data = bytes.subarray(0, nbytes);
      }
    }
    const s = new TorchStorage(key, type, String(location), data, bigEndian);
    loaded.set(key, s);
    return s;
  };
  return unpickle(pkl, { persistentLoad, plainDicts: opts.plainDicts });
}

function storageKey(l: Layout, e: ZipEntry): string {
  return e.name.slice(l.prefix.length + "/data/".length);
}

/**
 * Reads a `torch.save` zip archive (synchronous; every record must be STORED, which is what
 * torch writes). Returns the unpickled object tree; tensors are {@link TorchTensorLeaf}s whose
 * `data` views the input bytes when the tensor is contiguous in its storage.
 */
export function readTorchFileSync(bytes: Uint8Array, opts: ReadTorchOptions = {}): unknown {
  const l = layout(bytes);
  const read = (e: ZipEntry) => l.zip.readSync(e, crcOpt(e, opts));
  const bigEndian = checkMeta(l.byteorder && read(l.byteorder), l.version && read(l.version));
  const records = new Map<string, Uint8Array>();
  for (const e of l.storages) records.set(storageKey(l, e), read(e));
  return decode(l, bigEndian, read(l.pkl), records, opts);
}

/**
 * Reads a `torch.save` zip archive; like {@link readTorchFileSync} but also accepts DEFLATE
 * records (e.g. archives re-zipped by other tools).
 */
export async function readTorchFile(
  bytes: Uint8Array,
  opts: ReadTorchOptions = {},
): Promise<unknown> {
  const l = layout(bytes);
  const read = (e: ZipEntry) => l.zip.read(e, crcOpt(e, opts));
  const bigEndian = checkMeta(
    l.byteorder && await read(l.byteorder),
    l.version && await read(l.version),
  );
  const records = new Map<string, Uint8Array>();
  for (const e of l.storages) records.set(storageKey(l, e), await read(e));
  return decode(l, bigEndian, await read(l.pkl), records, opts);
}

function hashCombine(seed: bigint, value: bigint): bigint {
  const M = (1n << 64n) - 1n;
  return (seed ^ ((value + 0x9e3779b9n + ((seed << 6n) & M) + (seed >> 2n)) & M)) & M;
}

/**
 * Serializes an object tree to `torch.save`'s zip format, readable by
 * `torch.load(..., weights_only=True)`. Supported values: see `pickle()`; tensors are
 * {@link RawTensor}s (each distinct `data` array becomes one storage record).
 */
export function writeTorchFile(obj: unknown, opts: WriteTorchOptions = {}): Uint8Array {
  const name = opts.archiveName ?? "archive";
  if (name === "" || name.includes("/") || name.includes("\\")) {
    fail(`invalid archive name '${name}'`);
  }
  const storages: { key: string; data: Uint8Array; dtype: DTypeName }[] = [];
  const byData = new Map<Uint8Array, { key: string; dtype: DTypeName }[]>();
  const pkl = pickle(obj, {
    tensorStorageKey(t: RawTensor) {
      const same = byData.get(t.data)?.find((s) => s.dtype === t.dtype);
      if (same) return same.key;
      const key = String(storages.length);
      storages.push({ key, data: t.data, dtype: t.dtype });
      const list = byData.get(t.data) ?? [];
      list.push({ key, dtype: t.dtype });
      byData.set(t.data, list);
      return key;
    },
  });
  const enc = new TextEncoder();
  const files = [
    { name: `${name}/data.pkl`, data: pkl },
    { name: `${name}/.format_version`, data: enc.encode("1") },
    { name: `${name}/.storage_alignment`, data: enc.encode("64") },
    { name: `${name}/byteorder`, data: enc.encode("little") },
  ];
  const sorted = [...storages].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const s of sorted) files.push({ name: `${name}/data/${s.key}`, data: s.data });
  files.push({ name: `${name}/version`, data: enc.encode("3\n") });
  // torch writes a 40-digit id; ours is derived from the content so output is reproducible
  let combined = 0n;
  for (const f of files) combined = hashCombine(combined, BigInt(crc32(f.data)));
  const id = (combined % 10n ** 20n).toString().padStart(20, "0") +
    (BigInt(crc32(pkl)) * 2654435761n % 10n ** 20n).toString().padStart(20, "0");
  files.push({ name: `${name}/.data/serialization_id`, data: enc.encode(id) });
  return writeZip(files, { align: 64 });
}

/** Reads a `torch.save` file from disk (see {@link readTorchFile}). */
export async function loadTorchFile(
  path: string | URL,
  opts: ReadTorchOptions = {},
): Promise<unknown> {
  return await readTorchFile(await Deno.readFile(toPath(path)), opts);
}

/**
 * Writes `obj` as a `torch.save` file atomically (temporary file in the same directory, fsync,
 * rename). The archive folder defaults to the file's name without extension, like torch.
 */
export async function saveTorchFile(
  path: string | URL,
  obj: unknown,
  opts: WriteTorchOptions = {},
): Promise<void> {
  const p = toPath(path);
  let archiveName = opts.archiveName;
  if (archiveName === undefined) {
    const base = p.slice(p.lastIndexOf("/") + 1);
    const stem = base.includes(".") ? base.slice(0, base.lastIndexOf(".")) : base;
    archiveName = stem.replace(/[\\]/g, "_") || "archive";
  }
  await atomicWriteFile(p, writeTorchFile(obj, { archiveName }));
}

/**
 * Walks an unpickled object tree and yields every tensor with its path (keys and indices joined
 * by "."), e.g. `["state_dict.layer.weight", tensor]`. Each tensor object is reported once.
 */
export function* tensorsIn(tree: unknown, prefix = ""): Generator<[string, RawTensor]> {
  const seen = new Set<unknown>();
  function* walk(x: unknown, path: string): Generator<[string, RawTensor]> {
    if (typeof x !== "object" || x === null || seen.has(x)) return;
    seen.add(x);
    if (x instanceof TorchTensorLeaf || isRawTensor(x)) {
      yield [path, x as RawTensor];
      return;
    }
    const join = (k: unknown) => (path === "" ? String(k) : `${path}.${String(k)}`);
    if (Array.isArray(x)) {
      for (let i = 0; i < x.length; i++) yield* walk(x[i], join(i));
    } else if (x instanceof Map) {
      for (const [k, v] of x) yield* walk(v, join(k));
    } else if (x instanceof PyObject) {
      yield* walk(x.args, join("args"));
      yield* walk(x.state, join("state"));
      yield* walk(x.listItems, join("listItems"));
      yield* walk(x.dictItems, join("dictItems"));
    } else if (x instanceof Set || x instanceof Uint8Array) {
      return;
    } else {
      for (const [k, v] of Object.entries(x)) yield* walk(v, join(k));
    }
  }
  yield* walk(tree, prefix);
}
