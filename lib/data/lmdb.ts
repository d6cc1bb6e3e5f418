/**
 * ImageNet-style LMDB (spec §4.3): `{root}/{split}_lmdb/{split}.lmdb` is a single-file LMDB whose
 * key is "<wnid>/<file>" and whose value is the raw image file; `{root}/{split}_list.json` maps
 * each key to its class index. Read and written through the system liblmdb (0.9, the format
 * py-lmdb uses); lmdb-js 3 writes a newer data format that py-lmdb cannot open.
 */
import { basename, dirname, join } from "node:path";
import { raw, type Tensor } from "../tensor.ts";
import { BaseDataset } from "./dataset.ts";
import { DataError, refuseExisting, requireFile } from "./errors.ts";
import { scanImageFolder } from "./image_folder.ts";
import { decodeOne, NativeSource } from "./native.ts";
import type { Stats } from "./recipes.ts";

/** Where the reference keeps a split's LMDB and label list. */
export function lmdbPaths(root: string, split: string): { db: string; list: string } {
  return {
    db: join(root, `${split}_lmdb`, `${split}.lmdb`),
    list: join(root, `${split}_list.json`),
  };
}

/** Options of `LmdbImageFolder`. */
export interface LmdbOptions {
  split?: string;
  channels?: 1 | 3;
  stats?: Stats;
}

/** An ImageFolder packed into an LMDB by `folder2lmdb` (ours or the reference's). */
export class LmdbImageFolder extends BaseDataset {
  readonly name: string;
  readonly classes: readonly string[];
  readonly channels: 1 | 3;
  override readonly stats?: Stats;
  protected readonly labels: Int32Array;
  readonly source: NativeSource;
  /** Keys in label-list order. */
  readonly keys: readonly string[];

  constructor(root: string, opts: LmdbOptions = {}) {
    super();
    const split = opts.split ?? "train";
    const { db, list } = lmdbPaths(root, split);
    requireFile(list, `the label list of the ${split} LMDB ({"<wnid>/<file>": class index})`);
    requireFile(db, `a single-file LMDB written by folder2lmdb`);
    let map: Record<string, unknown>;
    try {
      map = JSON.parse(Deno.readTextFileSync(list));
    } catch (e) {
      throw new DataError(list, `not valid JSON (${(e as Error).message})`);
    }
    if (!map || typeof map !== "object" || Array.isArray(map)) {
      throw new DataError(list, "expected a JSON object of key -> class index");
    }
    this.keys = Object.keys(map);
    this.labels = Int32Array.from(this.keys, (k) => {
      const v = map[k];
      if (!Number.isInteger(v) || (v as number) < 0) {
        throw new DataError(
          list,
          `label of '${k}' is ${JSON.stringify(v)}, expected an integer ≥ 0`,
        );
      }
      return v as number;
    });
    this.classes = classNames(this.keys, this.labels);
    this.name = `lmdb:${db}`;
    this.channels = opts.channels ?? 3;
    this.stats = opts.stats;
    this.source = NativeSource.fromLmdb(db, this.keys);
  }
  /** The raw stored bytes of sample `i` (the original image file). */
  bytes(i: number): Tensor {
    this.check(i);
    return this.source.bytes(i);
  }
  image(i: number): Tensor {
    this.check(i);
    return decodeOne(this.source, i, this.channels);
  }
}

/** Class names from the keys' folder part, by label ("<wnid>/<file>" -> wnid). */
function classNames(keys: readonly string[], labels: Int32Array): string[] {
  const n = labels.reduce((m, l) => Math.max(m, l + 1), 0);
  const names = Array.from({ length: n }, (_, i) => String(i));
  keys.forEach((k, i) => {
    const slash = k.indexOf("/");
    if (slash > 0) names[labels[i]] = k.slice(0, slash);
  });
  return names;
}

/** Python's json.dumps(ensure_ascii=True) escaping of non-ASCII characters. */
function asciiJson(s: string): string {
  return s.replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** Options of `folderToLmdb`. */
export interface FolderToLmdbOptions {
  /** Commit every this many samples (the reference: 5000). */
  commitEvery?: number;
  /** LMDB map size in bytes (virtual; the file grows as needed). */
  mapSize?: number;
  log?: (msg: string) => void;
}

/**
 * Packs `{root}/{split}` (an ImageFolder) into `{root}/{split}_lmdb/{split}.lmdb` and writes
 * `{root}/{split}_list.json` (sorted keys, indent 4), as the reference's folder2lmdb does.
 * Refuses to overwrite either output. Returns the number of samples written.
 */
export function folderToLmdb(root: string, split: string, opts: FolderToLmdbOptions = {}): number {
  const { commitEvery = 5000, mapSize = 2 ** 40, log = () => {} } = opts;
  const { db, list } = lmdbPaths(root, split);
  refuseExisting(db);
  refuseExisting(`${db}-lock`);
  refuseExisting(list);
  const { entries } = scanImageFolder(join(root, split));
  Deno.mkdirSync(dirname(db), { recursive: true });
  const w = raw().data_lmdb_create(db, mapSize);
  const labels: Record<string, number> = {};
  const enc = new TextEncoder();
  try {
    entries.forEach((e, i) => {
      const key = `${basename(dirname(e.path))}/${basename(e.path)}`;
      if (key in labels) throw new DataError(e.path, `duplicate LMDB key '${key}'`);
      const k = enc.encode(key);
      const v = Deno.readFileSync(e.path);
      raw().data_lmdb_put(w, k, k.length, v, v.length);
      labels[key] = e.label;
      if (i % commitEvery === 0) {
        raw().data_lmdb_commit(w);
        log(`folder2lmdb: [${i}/${entries.length}]`);
      }
    });
    raw().data_lmdb_close(w);
  } catch (e) {
    try {
      raw().data_lmdb_close(w);
    } catch { /* already failing */ }
    for (const p of [db, `${db}-lock`]) Deno.removeSync(p, { recursive: true });
    throw e;
  }
  const sorted = Object.keys(labels).sort();
  const body = sorted.map((k) => `    ${asciiJson(JSON.stringify(k))}: ${labels[k]}`).join(",\n");
  Deno.writeTextFileSync(list, `{\n${body}\n}`);
  log(`folder2lmdb: wrote ${entries.length} samples to ${db} and ${list}`);
  return entries.length;
}
