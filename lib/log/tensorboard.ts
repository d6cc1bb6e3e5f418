/**
 * TensorBoard scalar event files written directly: TFRecord framing (length, masked CRC-32C) of
 * `Event` protocol buffers carrying `Summary.Value{tag, simple_value}`. Readable by TensorBoard and
 * `tensorboard.backend.event_processing.EventAccumulator` without any TensorFlow code here.
 */
import { join } from "node:path";

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli) of `data`. */
export function crc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC32C_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC. */
export function maskedCrc32c(data: Uint8Array): number {
  const c = crc32c(data);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

class ProtoWriter {
  readonly bytes: number[] = [];
  varint(v: number | bigint): this {
    let x = BigInt(v);
    if (x < 0n) x += 1n << 64n;
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x) b |= 0x80;
      this.bytes.push(b);
    } while (x);
    return this;
  }
  tag(field: number, wire: number): this {
    return this.varint((field << 3) | wire);
  }
  double(field: number, v: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.tag(field, 1).bytes.push(...b);
    return this;
  }
  float(field: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.tag(field, 5).bytes.push(...b);
    return this;
  }
  int64(field: number, v: number): this {
    return this.tag(field, 0).varint(v);
  }
  bytesField(field: number, data: Uint8Array): this {
    this.tag(field, 2).varint(data.length).bytes.push(...data);
    return this;
  }
  string(field: number, s: string): this {
    return this.bytesField(field, new TextEncoder().encode(s));
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

/** One `Event` message: wall time, step, and either the file version or scalar values. */
export function encodeEvent(
  wallTime: number,
  step: number,
  scalars: Record<string, number> | null,
  fileVersion?: string,
): Uint8Array {
  const ev = new ProtoWriter().double(1, wallTime).int64(2, step);
  if (fileVersion) ev.string(3, fileVersion);
  if (scalars) {
    const summary = new ProtoWriter();
    for (const [tag, value] of Object.entries(scalars)) {
      summary.bytesField(1, new ProtoWriter().string(1, tag).float(2, value).finish());
    }
    ev.bytesField(5, summary.finish());
  }
  return ev.finish();
}

/**
 * A `SessionLog` START event at `step`: TensorBoard then drops the events of earlier files in the
 * folder whose step is `step` or later, as after a resumed run (PyTorch's `purge_step`).
 */
export function encodeSessionStart(wallTime: number, step: number): Uint8Array {
  const sessionLog = new ProtoWriter().int64(1, 1).finish(); // status: START
  return new ProtoWriter().double(1, wallTime).int64(2, step).bytesField(7, sessionLog).finish();
}

/** TFRecord framing of one record. */
export function frameRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** Appends scalar summaries to an event file in `dir`. */
export class TensorBoardWriter {
  readonly path: string;
  #file: Deno.FsFile;
  /**
   * Opens a new event file in `dir`. A resumed run passes `resumeStep`, the step its checkpoint
   * holds: TensorBoard then discards what the interrupted run logged after that step.
   */
  constructor(dir: string, options: { resumeStep?: number } = {}) {
    Deno.mkdirSync(dir, { recursive: true });
    const host = Deno.hostname?.() ?? "localhost";
    this.path = join(
      dir,
      `events.out.tfevents.${Math.floor(Date.now() / 1000)}.${host}.${Deno.pid}.${uniqueTag()}`,
    );
    this.#file = Deno.openSync(this.path, { write: true, createNew: true });
    this.#write(encodeEvent(Date.now() / 1000, 0, null, "brain.Event:2"));
    if (options.resumeStep !== undefined) {
      this.#write(encodeSessionStart(Date.now() / 1000, options.resumeStep + 1));
    }
  }
  #write(event: Uint8Array): void {
    const rec = frameRecord(event);
    let off = 0;
    while (off < rec.length) off += this.#file.writeSync(rec.subarray(off));
  }
  /** Writes scalars (tag → value) at `step`. Non-finite values are skipped. */
  scalars(step: number, values: Record<string, number>): void {
    const finite = Object.fromEntries(Object.entries(values).filter(([, v]) => Number.isFinite(v)));
    if (Object.keys(finite).length) this.#write(encodeEvent(Date.now() / 1000, step, finite));
  }
  /** Flushes to disk. */
  flush(): void {
    this.#file.syncSync();
  }
  close(): void {
    this.#file.close();
  }
}

function uniqueTag(): string {
  return crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
}
