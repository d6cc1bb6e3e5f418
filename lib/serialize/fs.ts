/**
 * File helpers shared by the serialization formats.
 *
 * @module
 */

/** Converts a `file:` URL or string to a filesystem path string. */
export function toPath(path: string | URL): string {
  if (typeof path === "string") return path;
  if (path.protocol !== "file:") throw new TypeError(`not a file URL: ${path.href}`);
  return decodeURIComponent(path.pathname);
}

function splitPath(path: string): { dir: string; base: string } {
  const i = path.lastIndexOf("/");
  if (i < 0) return { dir: ".", base: path };
  return { dir: i === 0 ? "/" : path.slice(0, i), base: path.slice(i + 1) };
}

function tempName(dir: string, base: string): string {
  const rand = crypto.getRandomValues(new Uint32Array(2));
  const tag = `${rand[0].toString(36)}${rand[1].toString(36)}`;
  return `${dir === "/" ? "" : dir}/.${base}.${tag}.tmp`;
}

/**
 * Writes `data` to `path` atomically: the bytes go to a temporary file in the same directory,
 * which is fsynced and then renamed over `path`. Readers see either the old file or the complete
 * new one. The temporary file is removed if anything fails.
 */
export async function atomicWriteFile(path: string | URL, data: Uint8Array): Promise<void> {
  const p = toPath(path);
  const { dir, base } = splitPath(p);
  const tmp = tempName(dir, base);
  try {
    {
      using file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o666 });
      let off = 0;
      while (off < data.byteLength) off += await file.write(data.subarray(off));
      await file.sync();
    }
    await Deno.rename(tmp, p);
  } catch (err) {
    await Deno.remove(tmp).catch(() => {});
    throw err;
  }
  // Persist the rename itself where the platform allows syncing a directory.
  try {
    using d = await Deno.open(dir, { read: true });
    await d.sync();
  } catch {
    // Directory fsync is best effort (not supported everywhere).
  }
}

/** `atomicWriteFile` for synchronous callers: temporary file, fsync, rename, directory fsync. */
export function atomicWriteFileSync(path: string | URL, data: Uint8Array): void {
  const p = toPath(path);
  const { dir, base } = splitPath(p);
  const tmp = tempName(dir, base);
  try {
    {
      using file = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o666 });
      let off = 0;
      while (off < data.byteLength) off += file.writeSync(data.subarray(off));
      file.syncSync();
    }
    Deno.renameSync(tmp, p);
  } catch (err) {
    try {
      Deno.removeSync(tmp);
    } catch { /* never created */ }
    throw err;
  }
  try {
    using d = Deno.openSync(dir, { read: true });
    d.syncSync();
  } catch {
    // Directory fsync is best effort (not supported everywhere).
  }
}
