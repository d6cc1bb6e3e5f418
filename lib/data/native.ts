/** Handles to the shim's data sources, and string lists in the form the shim reads. */
import type { Handle } from "../ffi/library.ts";
import { raw, type Tensor, tensor, wrap } from "../tensor.ts";
import { DataError } from "./errors.ts";

const sources = new FinalizationRegistry<Handle>((h) => {
  try {
    raw().data_source_free(h);
  } catch { /* shutting down */ }
});

/** Encodes strings as NUL-terminated UTF-8 (the shim's string-list format). */
export function nulList(xs: readonly string[]): Uint8Array {
  return new TextEncoder().encode(xs.map((x) => `${x}\0`).join(""));
}

/** A native sample source (tensor, files, LMDB, RecordIO or blob); free it with `dispose()`. */
export class NativeSource {
  #h: Handle | null;
  private constructor(h: Handle) {
    this.#h = h;
    sources.register(this, h, this);
  }
  /** @internal */
  get ptr(): Handle {
    if (!this.#h) throw new Error("data source used after it was disposed");
    return this.#h;
  }
  /** Images in memory: a CPU uint8 tensor [N, C, H, W] (shared, not copied). */
  static fromTensor(images: Tensor): NativeSource {
    return new NativeSource(raw().data_source_tensor(images.ptr));
  }
  /** One encoded image file per sample. */
  static fromFiles(paths: readonly string[]): NativeSource {
    const buf = nulList(paths);
    return new NativeSource(raw().data_source_files(buf, buf.length));
  }
  /** Encoded images in one uint8 tensor, item i at bytes [offsets[i], offsets[i+1]). */
  static fromBlob(bytes: Tensor, offsets: Tensor): NativeSource {
    return new NativeSource(raw().data_source_blob(bytes.ptr, offsets.ptr));
  }
  /** Values of a single-file LMDB, looked up by these keys. */
  static fromLmdb(path: string, keys: readonly string[]): NativeSource {
    const buf = nulList(keys);
    return new NativeSource(raw().data_source_lmdb(path, buf, buf.length));
  }
  /** Records of an MXNet RecordIO file at these byte offsets. */
  static fromRecordIO(path: string, offsets: Tensor): NativeSource {
    return new NativeSource(raw().data_source_recordio(path, offsets.ptr));
  }
  /** Number of samples. */
  get size(): number {
    return raw().data_source_size(this.ptr);
  }
  /** The encoded bytes of sample `i` (not for tensor sources). */
  bytes(i: number): Tensor {
    return wrap(raw().data_source_bytes(this.ptr, i));
  }
  /**
   * Decodes samples to uint8 [C, H, W] tensors on the shim's threads; entries that fail are null
   * and their reasons are in `errors` (one per failed index).
   */
  decode(
    indices: Tensor,
    channels: 1 | 3,
  ): { images: (Tensor | null)[]; errors: Map<number, string> } {
    const hs = raw().data_decode(this.ptr, indices.ptr, channels);
    const text = raw().data_decode_errors();
    const images = hs.map((h) => (h ? wrap(h) : null));
    return { images, errors: parseErrors(text) };
  }
  dispose(): void {
    if (!this.#h) return;
    sources.unregister(this);
    raw().data_source_free(this.#h);
    this.#h = null;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Parses "index\tpath\tmessage" lines into index -> "path: message". */
function parseErrors(text: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of text.split("\n")) {
    if (!line) continue;
    const [i, path, ...rest] = line.split("\t");
    out.set(Number(i), `${path}: ${rest.join("\t")}`);
  }
  return out;
}

/** Decodes one sample or throws `DataError` naming it. */
export function decodeOne(source: NativeSource, index: number, channels: 1 | 3): Tensor {
  const idx = tensor([index], [1], { dtype: "int64" });
  try {
    const { images, errors } = source.decode(idx, channels);
    if (images[0]) return images[0];
    const msg = errors.get(0) ?? "undecodable image";
    const cut = msg.indexOf(": ");
    throw new DataError(msg.slice(0, cut), msg.slice(cut + 2));
  } finally {
    idx.dispose();
  }
}

/** Which codecs the shim could load ("jpeg: ok\npng: ok" or the reasons). */
export function codecStatus(): string {
  return raw().data_codecs();
}
