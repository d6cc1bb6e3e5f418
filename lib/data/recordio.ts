/**
 * MXNet RecordIO (spec §4.4): `.rec` records of [magic 0xced7230a][length | cflag << 29][payload,
 * padded to 4 bytes], the payload an IRHeader (flag u32, label f32, id u64, id2 u64) and the
 * image bytes; `.idx` lines "key\toffset"; `.lst` lines "index\tlabel\trelative/path".
 */
import { existsSync } from "node:fs";
import { dirname, relative } from "node:path";
import { raw, type Tensor, tensor, wrap } from "../tensor.ts";
import { BaseDataset } from "./dataset.ts";
import { DataError, refuseExisting, requireFile } from "./errors.ts";
import { scanImageFolder } from "./image_folder.ts";
import { decodeOne, NativeSource } from "./native.ts";
import type { Stats } from "./recipes.ts";
import { Prng } from "./rng.ts";

/** The RecordIO record magic. */
export const RECORD_MAGIC = 0xced7230a;

/** Parses a `.idx` file into keys and byte offsets (file order). */
export function readIdxFile(path: string): { keys: number[]; offsets: number[] } {
  requireFile(path, "a RecordIO index (lines 'key<TAB>offset')");
  const keys: number[] = [];
  const offsets: number[] = [];
  Deno.readTextFileSync(path).split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    const [k, o] = line.split("\t");
    const key = Number(k), off = Number(o);
    if (!Number.isInteger(key) || !Number.isInteger(off) || off < 0) {
      throw new DataError(path, `line ${i + 1} is '${line}', expected 'key<TAB>offset'`);
    }
    keys.push(key);
    offsets.push(off);
  });
  if (keys.length === 0) throw new DataError(path, "empty index");
  return { keys, offsets };
}

/** Class names from a `.lst` beside the `.rec` (folder of each path, by label), if present. */
function classesFromList(lst: string, numClasses: number): string[] {
  const names = Array.from({ length: numClasses }, (_, i) => String(i));
  if (!existsSync(lst)) return names;
  for (const line of Deno.readTextFileSync(lst).split("\n")) {
    const [, label, rel] = line.split("\t");
    if (rel === undefined) continue;
    const l = Math.round(Number(label));
    const dir = dirname(rel);
    if (l >= 0 && l < numClasses && dir !== ".") names[l] = dir.split("/")[0];
  }
  return names;
}

/** Options of `RecordIODataset`. */
export interface RecordIOOptions {
  /** The `.idx` (default: the `.rec` path with `.idx`). */
  idx?: string;
  channels?: 1 | 3;
  stats?: Stats;
}

/** Images in an MXNet `.rec`/`.idx` pair (ours or im2rec.py's). */
export class RecordIODataset extends BaseDataset {
  readonly name: string;
  readonly classes: readonly string[];
  readonly channels: 1 | 3;
  override readonly stats?: Stats;
  protected readonly labels: Int32Array;
  readonly source: NativeSource;
  /** The record keys (ids) in index order. */
  readonly keys: readonly number[];

  constructor(rec: string, opts: RecordIOOptions = {}) {
    super();
    requireFile(rec, "an MXNet RecordIO .rec file");
    const idxPath = opts.idx ?? rec.replace(/\.rec$/, "") + ".idx";
    const { keys, offsets } = readIdxFile(idxPath);
    using off = tensor(offsets, [offsets.length], { dtype: "int64" });
    using lab = wrap(raw().data_recordio_labels(rec, off.ptr));
    this.labels = Int32Array.from(lab.toArray() as Float32Array, Math.round);
    this.keys = keys;
    this.name = `recordio:${rec}`;
    this.channels = opts.channels ?? 3;
    this.stats = opts.stats;
    const numClasses = this.labels.reduce((m, l) => Math.max(m, l + 1), 0);
    this.classes = classesFromList(rec.replace(/\.rec$/, "") + ".lst", numClasses);
    this.source = NativeSource.fromRecordIO(rec, off);
  }
  /** The stored image bytes of sample `i`. */
  bytes(i: number): Tensor {
    this.check(i);
    return this.source.bytes(i);
  }
  image(i: number): Tensor {
    this.check(i);
    return decodeOne(this.source, i, this.channels);
  }
}

/** One record: header + payload, padded to a multiple of 4 bytes. */
export function encodeRecord(label: number, id: number, image: Uint8Array): Uint8Array {
  const payload = 24 + image.length;
  if (payload >= 2 ** 29) {
    throw new RangeError(`record of ${payload} bytes needs multi-part records`);
  }
  const out = new Uint8Array(8 + payload + ((4 - (payload % 4)) % 4));
  const v = new DataView(out.buffer);
  v.setUint32(0, RECORD_MAGIC, true);
  v.setUint32(4, payload, true);
  v.setUint32(8, 0, true); // flag: one label, in the header
  v.setFloat32(12, label, true);
  v.setBigUint64(16, BigInt(id), true);
  v.setBigUint64(24, 0n, true);
  out.set(image, 32);
  return out;
}

/** Options of `im2rec`. */
export interface Im2RecOptions {
  /** Shuffle the list (im2rec.py's default). */
  shuffle?: boolean;
  /** Seed of the shuffle (im2rec.py seeds Python's random with 100; the order differs). */
  seed?: number;
  log?: (msg: string) => void;
}

/**
 * Packs the ImageFolder at `root` into `prefix.lst`, `prefix.rec` and `prefix.idx`, as im2rec.py
 * with --recursive. Images are stored as they are on disk (im2rec.py re-encodes to JPEG quality
 * 95). Refuses to overwrite any output. Returns the number of records.
 */
export async function im2rec(
  prefix: string,
  root: string,
  opts: Im2RecOptions = {},
): Promise<number> {
  const { shuffle = true, seed = 100, log = () => {} } = opts;
  const outs = [".lst", ".rec", ".idx"].map((x) => prefix + x);
  outs.forEach(refuseExisting);
  const { entries } = scanImageFolder(root);
  const items = entries.map((e, i) => ({
    i,
    rel: relative(root, e.path),
    path: e.path,
    label: e.label,
  }));
  if (shuffle) {
    const r = new Prng(seed);
    for (let i = items.length - 1; i > 0; i--) {
      const j = r.below(i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
  }
  Deno.writeTextFileSync(
    outs[0],
    items.map((it) => `${it.i}\t${it.label.toFixed(6)}\t${it.rel}\n`).join(""),
  );
  const rec = await Deno.open(outs[1], { write: true, createNew: true });
  Deno.writeTextFileSync(outs[2], ""); // claim the index name too; filled in at the end
  const idx: string[] = [];
  let offset = 0;
  try {
    for (const [n, it] of items.entries()) {
      const bytes = encodeRecord(it.label, it.i, await Deno.readFile(it.path));
      let written = 0;
      while (written < bytes.length) written += await rec.write(bytes.subarray(written));
      idx.push(`${it.i}\t${offset}\n`);
      offset += bytes.length;
      if (n % 1000 === 0) log(`im2rec: [${n}/${items.length}]`);
    }
    rec.close();
  } catch (e) {
    rec.close();
    for (const p of outs) {
      try {
        Deno.removeSync(p);
      } catch { /* not created */ }
    }
    throw e;
  }
  Deno.writeTextFileSync(outs[2], idx.join(""));
  log(`im2rec: wrote ${items.length} records to ${outs[1]}`);
  return items.length;
}
