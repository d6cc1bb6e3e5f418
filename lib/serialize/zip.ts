/**
 * Minimal ZIP archive reader and writer, enough for `torch.save` checkpoints.
 *
 * Reader: central directory (including ZIP64 end records and ZIP64 extra fields), STORED entries
 * as zero-copy views, DEFLATE entries through `DecompressionStream("deflate-raw")` (async).
 * Writer: STORED entries only, each entry's data aligned (64 bytes by default) by padding the
 * local header's extra field the way PyTorch's writer does; archives of 4 GiB or more are refused.
 *
 * @module
 */

import { SerializationError } from "./raw.ts";

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const LOCAL_HEADER_SIZE = 30;
const CENTRAL_HEADER_SIZE = 46;
const EOCD_SIZE = 22;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;

/** ZIP compression method: stored (no compression). */
export const ZIP_STORED = 0;
/** ZIP compression method: deflate. */
export const ZIP_DEFLATE = 8;

let crcTable: Uint32Array | undefined;

function getCrcTable(): Uint32Array {
  if (crcTable) return crcTable;
  // Slicing-by-4 tables for the reflected polynomial 0xEDB88320.
  const t = new Uint32Array(256 * 4);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let s = 1; s < 4; s++) {
      const prev = t[(s - 1) * 256 + n];
      t[s * 256 + n] = (t[prev & 0xff] ^ (prev >>> 8)) >>> 0;
    }
  }
  crcTable = t;
  return t;
}

/**
 * CRC-32 (ISO 3309 / ZIP) of `data`. Pass a previous result as `crc` to continue a running
 * checksum over several chunks.
 */
export function crc32(data: Uint8Array, crc = 0): number {
  const t = getCrcTable();
  let c = ~crc >>> 0;
  let i = 0;
  const n = data.length;
  const end4 = n - (n % 4);
  for (; i < end4; i += 4) {
    c ^= data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24);
    c = t[768 + (c & 0xff)] ^ t[512 + ((c >>> 8) & 0xff)] ^ t[256 + ((c >>> 16) & 0xff)] ^
      t[c >>> 24];
  }
  for (; i < n; i++) c = t[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** One file in a ZIP archive, as described by its central directory record. */
export interface ZipEntry {
  /** Path inside the archive. */
  name: string;
  /** Compression method ({@link ZIP_STORED} or {@link ZIP_DEFLATE}; others cannot be read). */
  method: number;
  /** General purpose bit flags. */
  flags: number;
  /** CRC-32 of the uncompressed data, as recorded. */
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  /** Offset of the local file header. */
  localHeaderOffset: number;
  /** Offset of the entry's (possibly compressed) data. */
  dataOffset: number;
}

/** Options for reading an entry. */
export interface ZipReadOptions {
  /** Check the CRC-32 of the data against the recorded value (default true). */
  verifyCrc?: boolean;
}

function fail(msg: string): never {
  throw new SerializationError(`zip: ${msg}`);
}

/** Reads the central directory of a ZIP archive held in memory. */
export class ZipReader {
  /** The archive bytes. */
  readonly bytes: Uint8Array;
  /** Entries in central directory order. */
  readonly entries: readonly ZipEntry[];
  readonly #byName = new Map<string, ZipEntry>();
  readonly #dv: DataView;

  /** Parses the archive's end record and central directory; throws on malformed archives. */
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.#dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.entries = this.#parse();
    for (const e of this.entries) this.#byName.set(e.name, e);
  }

  /** True when `bytes` ends with a ZIP end-of-central-directory record. */
  static isZip(bytes: Uint8Array): boolean {
    return findEocd(bytes) >= 0;
  }

  #u16(off: number): number {
    return this.#dv.getUint16(off, true);
  }
  #u32(off: number): number {
    return this.#dv.getUint32(off, true);
  }
  #u64(off: number, what: string): number {
    const v = this.#dv.getBigUint64(off, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what} ${v} is too large`);
    return Number(v);
  }

  #parse(): ZipEntry[] {
    const len = this.bytes.byteLength;
    const eocd = findEocd(this.bytes);
    if (eocd < 0) fail("end of central directory record not found (not a ZIP archive?)");
    let disk = this.#u16(eocd + 4);
    let cdDisk = this.#u16(eocd + 6);
    let count = this.#u16(eocd + 10);
    let cdSize = this.#u32(eocd + 12);
    let cdOffset = this.#u32(eocd + 16);
    const loc = eocd - 20;
    if (loc >= 0 && this.#u32(loc) === SIG_ZIP64_LOCATOR) {
      const z64 = this.#u64(loc + 8, "ZIP64 end record offset");
      if (z64 + 56 > len || this.#u32(z64) !== SIG_ZIP64_EOCD) {
        fail(`ZIP64 end of central directory record not found at offset ${z64}`);
      }
      disk = this.#u32(z64 + 16);
      cdDisk = this.#u32(z64 + 20);
      count = this.#u64(z64 + 32, "ZIP64 entry count");
      cdSize = this.#u64(z64 + 40, "ZIP64 central directory size");
      cdOffset = this.#u64(z64 + 48, "ZIP64 central directory offset");
    } else if (count === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX) {
      fail("end record needs ZIP64 values but the ZIP64 locator is missing");
    }
    if (disk !== 0 || cdDisk !== 0) fail("multi-disk archives are not supported");
    if (cdOffset + cdSize > len) {
      fail(`central directory (offset ${cdOffset}, ${cdSize} bytes) runs past end of file`);
    }
    if (count * CENTRAL_HEADER_SIZE > cdSize) {
      fail(`central directory of ${cdSize} bytes cannot hold ${count} entries`);
    }
    const entries: ZipEntry[] = [];
    const decoder = new TextDecoder();
    let p = cdOffset;
    const cdEnd = cdOffset + cdSize;
    for (let i = 0; i < count; i++) {
      if (p + CENTRAL_HEADER_SIZE > cdEnd || this.#u32(p) !== SIG_CENTRAL) {
        fail(`central directory record ${i} is malformed (offset ${p})`);
      }
      const flags = this.#u16(p + 8);
      const method = this.#u16(p + 10);
      const crc = this.#u32(p + 16);
      let compressedSize = this.#u32(p + 20);
      let uncompressedSize = this.#u32(p + 24);
      const nameLen = this.#u16(p + 28);
      const extraLen = this.#u16(p + 30);
      const commentLen = this.#u16(p + 32);
      let diskStart = this.#u16(p + 34);
      let localHeaderOffset = this.#u32(p + 42);
      const nameStart = p + CENTRAL_HEADER_SIZE;
      const extraStart = nameStart + nameLen;
      const next = extraStart + extraLen + commentLen;
      if (next > cdEnd) fail(`central directory record ${i} runs past the directory`);
      const name = decoder.decode(this.bytes.subarray(nameStart, extraStart));
      // ZIP64 extended information: the fields whose 32/16-bit values are saturated, in order.
      for (let q = extraStart; q + 4 <= extraStart + extraLen;) {
        const id = this.#u16(q);
        const size = this.#u16(q + 2);
        const body = q + 4;
        if (body + size > extraStart + extraLen) fail(`entry '${name}': truncated extra field`);
        if (id === 0x0001) {
          let r = body;
          const need = (what: string) => {
            if (r + 8 > body + size) fail(`entry '${name}': ZIP64 extra field lacks ${what}`);
          };
          if (uncompressedSize === U32_MAX) {
            need("uncompressed size");
            uncompressedSize = this.#u64(r, `entry '${name}' uncompressed size`);
            r += 8;
          }
          if (compressedSize === U32_MAX) {
            need("compressed size");
            compressedSize = this.#u64(r, `entry '${name}' compressed size`);
            r += 8;
          }
          if (localHeaderOffset === U32_MAX) {
            need("local header offset");
            localHeaderOffset = this.#u64(r, `entry '${name}' local header offset`);
            r += 8;
          }
          if (diskStart === U16_MAX && r + 4 <= body + size) {
            diskStart = this.#u32(r);
          }
        }
        q = body + size;
      }
      if (diskStart !== 0) fail(`entry '${name}' is on another disk`);
      if (flags & 1) fail(`entry '${name}' is encrypted`);
      const lh = localHeaderOffset;
      if (lh + LOCAL_HEADER_SIZE > len || this.#u32(lh) !== SIG_LOCAL) {
        fail(`entry '${name}': no local file header at offset ${lh}`);
      }
      const dataOffset = lh + LOCAL_HEADER_SIZE + this.#u16(lh + 26) + this.#u16(lh + 28);
      if (dataOffset + compressedSize > len) {
        fail(
          `entry '${name}': data (offset ${dataOffset}, ${compressedSize} bytes) runs past ` +
            `the end of the ${len}-byte archive`,
        );
      }
      if (method === ZIP_STORED && compressedSize !== uncompressedSize) {
        fail(
          `entry '${name}': stored entry has compressed size ${compressedSize} != ` +
            `uncompressed size ${uncompressedSize}`,
        );
      }
      entries.push({
        name,
        method,
        flags,
        crc32: crc,
        compressedSize,
        uncompressedSize,
        localHeaderOffset,
        dataOffset,
      });
      p = next;
    }
    return entries;
  }

  /** The entry called `name`, if any (the last one when a name repeats). */
  get(name: string): ZipEntry | undefined {
    return this.#byName.get(name);
  }

  /** True when the archive has an entry called `name`. */
  has(name: string): boolean {
    return this.#byName.has(name);
  }

  #entry(e: string | ZipEntry): ZipEntry {
    if (typeof e !== "string") return e;
    const found = this.#byName.get(e);
    if (!found) fail(`no entry named '${e}'`);
    return found;
  }

  #check(e: ZipEntry, data: Uint8Array, opts?: ZipReadOptions): Uint8Array {
    if (data.byteLength !== e.uncompressedSize) {
      fail(
        `entry '${e.name}': got ${data.byteLength} bytes, expected ${e.uncompressedSize}`,
      );
    }
    if ((opts?.verifyCrc ?? true) && crc32(data) !== e.crc32) {
      fail(`entry '${e.name}': CRC-32 mismatch (data corrupted)`);
    }
    return data;
  }

  /**
   * Synchronously returns the data of a STORED entry as a view into the archive bytes (no
   * copy). Throws for compressed entries; use {@link ZipReader.read} for those.
   */
  readSync(entry: string | ZipEntry, opts?: ZipReadOptions): Uint8Array {
    const e = this.#entry(entry);
    if (e.method !== ZIP_STORED) {
      fail(
        `entry '${e.name}' uses compression method ${e.method}; only STORED entries can be ` +
          `read synchronously (use read())`,
      );
    }
    return this.#check(e, this.bytes.subarray(e.dataOffset, e.dataOffset + e.compressedSize), opts);
  }

  /** Returns the data of an entry: a zero-copy view for STORED, a new buffer for DEFLATE. */
  async read(entry: string | ZipEntry, opts?: ZipReadOptions): Promise<Uint8Array> {
    const e = this.#entry(entry);
    if (e.method === ZIP_STORED) return this.readSync(e, opts);
    if (e.method !== ZIP_DEFLATE) {
      fail(`entry '${e.name}' uses unsupported compression method ${e.method}`);
    }
    const raw = this.bytes.subarray(e.dataOffset, e.dataOffset + e.compressedSize);
    let out: Uint8Array;
    try {
      const stream = new Blob([raw as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
        new DecompressionStream("deflate-raw"),
      );
      out = new Uint8Array(await new Response(stream).arrayBuffer());
    } catch (err) {
      throw new SerializationError(`zip: entry '${e.name}': invalid deflate data: ${err}`, {
        cause: err,
      });
    }
    return this.#check(e, out, opts);
  }
}

function findEocd(bytes: Uint8Array): number {
  const len = bytes.byteLength;
  if (len < EOCD_SIZE) return -1;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, len);
  const stop = Math.max(0, len - EOCD_SIZE - U16_MAX);
  let fallback = -1;
  for (let i = len - EOCD_SIZE; i >= stop; i--) {
    if (bytes[i] !== 0x50 || dv.getUint32(i, true) !== SIG_EOCD) continue;
    // Prefer a record whose comment length reaches exactly to the end of the file.
    if (i + EOCD_SIZE + dv.getUint16(i + 20, true) === len) return i;
    if (fallback < 0) fallback = i;
  }
  return fallback;
}

/** A file to put in an archive. */
export interface ZipInput {
  name: string;
  data: Uint8Array;
}

/** Options for {@link writeZip}. */
export interface ZipWriteOptions {
  /**
   * Alignment of every entry's data offset, in bytes (default 64, as PyTorch). Padding goes in
   * an extra field with id "FB" filled with 'Z'. Use 0 or 1 for no padding field.
   */
  align?: number;
}

/**
 * Builds a ZIP archive of STORED entries in one buffer. Entry data offsets are aligned as
 * {@link ZipWriteOptions.align} asks. Names are stored as UTF-8. Throws a
 * {@link SerializationError} if the archive would need ZIP64 (4 GiB or more, or 65535+ entries).
 */
export function writeZip(files: Iterable<ZipInput>, opts?: ZipWriteOptions): Uint8Array {
  const align = opts?.align ?? 64;
  if (!Number.isSafeInteger(align) || align < 0 || align > 0x8000) {
    fail(`invalid alignment ${align}`);
  }
  const enc = new TextEncoder();
  const seen = new Set<string>();
  const plan: { name: Uint8Array; data: Uint8Array; crc: number; offset: number; pad: number }[] =
    [];
  let offset = 0;
  for (const f of files) {
    if (seen.has(f.name)) fail(`duplicate entry name '${f.name}'`);
    seen.add(f.name);
    const name = enc.encode(f.name);
    if (name.byteLength > U16_MAX) fail(`entry name too long: '${f.name.slice(0, 64)}...'`);
    let pad = -1;
    if (align > 1) {
      const start = offset + LOCAL_HEADER_SIZE + name.byteLength + 4;
      pad = (align - (start % align)) % align;
    }
    plan.push({ name, data: f.data, crc: crc32(f.data), offset, pad });
    offset += LOCAL_HEADER_SIZE + name.byteLength + (pad >= 0 ? 4 + pad : 0) + f.data.byteLength;
    if (offset >= U32_MAX) {
      fail(
        `archive would exceed 4 GiB at entry '${f.name}'; ZIP64 writing is not supported`,
      );
    }
  }
  if (plan.length >= U16_MAX) fail(`too many entries (${plan.length}); ZIP64 is not supported`);
  const cdOffset = offset;
  let cdSize = 0;
  for (const e of plan) cdSize += CENTRAL_HEADER_SIZE + e.name.byteLength;
  if (cdOffset + cdSize + EOCD_SIZE >= U32_MAX) {
    fail("archive would exceed 4 GiB; ZIP64 writing is not supported");
  }
  const out = new Uint8Array(cdOffset + cdSize + EOCD_SIZE);
  const dv = new DataView(out.buffer);
  const DOS_DATE = (0 << 9) | (1 << 5) | 1; // 1980-01-01, fixed for reproducible output
  const FLAGS = 0x0800; // names are UTF-8
  const VERSION = 20;
  let p = 0;
  for (const e of plan) {
    dv.setUint32(p, SIG_LOCAL, true);
    dv.setUint16(p + 4, VERSION, true);
    dv.setUint16(p + 6, FLAGS, true);
    dv.setUint16(p + 8, ZIP_STORED, true);
    dv.setUint16(p + 10, 0, true);
    dv.setUint16(p + 12, DOS_DATE, true);
    dv.setUint32(p + 14, e.crc, true);
    dv.setUint32(p + 18, e.data.byteLength, true);
    dv.setUint32(p + 22, e.data.byteLength, true);
    dv.setUint16(p + 26, e.name.byteLength, true);
    dv.setUint16(p + 28, e.pad >= 0 ? 4 + e.pad : 0, true);
    p += LOCAL_HEADER_SIZE;
    out.set(e.name, p);
    p += e.name.byteLength;
    if (e.pad >= 0) {
      out[p] = 0x46; // 'F'
      out[p + 1] = 0x42; // 'B'
      dv.setUint16(p + 2, e.pad, true);
      out.fill(0x5a, p + 4, p + 4 + e.pad); // 'Z'
      p += 4 + e.pad;
    }
    out.set(e.data, p);
    p += e.data.byteLength;
  }
  for (const e of plan) {
    dv.setUint32(p, SIG_CENTRAL, true);
    dv.setUint16(p + 4, VERSION, true);
    dv.setUint16(p + 6, VERSION, true);
    dv.setUint16(p + 8, FLAGS, true);
    dv.setUint16(p + 10, ZIP_STORED, true);
    dv.setUint16(p + 12, 0, true);
    dv.setUint16(p + 14, DOS_DATE, true);
    dv.setUint32(p + 16, e.crc, true);
    dv.setUint32(p + 20, e.data.byteLength, true);
    dv.setUint32(p + 24, e.data.byteLength, true);
    dv.setUint16(p + 28, e.name.byteLength, true);
    // extra length, comment length, disk start, internal and external attributes stay 0
    dv.setUint32(p + 42, e.offset, true);
    p += CENTRAL_HEADER_SIZE;
    out.set(e.name, p);
    p += e.name.byteLength;
  }
  dv.setUint32(p, SIG_EOCD, true);
  dv.setUint16(p + 8, plan.length, true);
  dv.setUint16(p + 10, plan.length, true);
  dv.setUint32(p + 12, cdSize, true);
  dv.setUint32(p + 16, cdOffset, true);
  return out;
}
