/** IDX files (MNIST, Fashion-MNIST), plain or gzipped, read whole into memory. */
import { DataError, requireFile } from "./errors.ts";

/** A parsed IDX file: its dimensions and its uint8 payload. */
export interface IdxFile {
  dims: number[];
  data: Uint8Array;
}

/** Reads a file, gunzipping it when it starts with the gzip magic bytes. */
export async function readMaybeGzip(path: string, what: string): Promise<Uint8Array> {
  requireFile(path, what);
  const bytes = await Deno.readFile(path);
  if (bytes.length < 2 || bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new DataError(path, `corrupt or truncated gzip data (${(e as Error).message})`);
  }
}

/** Reads an unsigned-byte IDX file and checks its header against its length. */
export async function readIdx(path: string): Promise<IdxFile> {
  const bytes = await readMaybeGzip(path, "an IDX file");
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) {
    throw new DataError(path, "not an IDX file (expected magic bytes 00 00 08 <ndim>)");
  }
  if (bytes[2] !== 0x08) {
    throw new DataError(path, `IDX element type 0x${bytes[2].toString(16)} (expected 0x08, uint8)`);
  }
  const ndim = bytes[3];
  const header = 4 + 4 * ndim;
  if (ndim === 0 || bytes.length < header) {
    throw new DataError(path, `truncated IDX header (expected ${ndim} dimensions)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: ndim }, (_, i) => view.getUint32(4 + 4 * i, false));
  const expected = dims.reduce((a, b) => a * b, 1);
  const have = bytes.length - header;
  if (have < expected) {
    throw new DataError(
      path,
      `truncated: the header promises ${dims.join("×")} = ${expected} bytes of data, found ${have}`,
    );
  }
  if (have > expected) {
    throw new DataError(path, `${have - expected} unexpected bytes after ${dims.join("×")} data`);
  }
  return { dims, data: bytes.subarray(header) };
}
