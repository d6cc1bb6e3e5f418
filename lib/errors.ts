/** Errors that slimclr raises. */

/**
 * A failure inside LibTorch or the shim. `message` is LibTorch's first message line; `detail`
 * keeps the full text (including LibTorch's context lines).
 */
export class TorchError extends Error {
  /** The full text LibTorch produced. */
  readonly detail: string;
  constructor(detail: string) {
    super(firstLine(detail));
    this.name = "TorchError";
    this.detail = detail;
  }
}

/** The shim library could not be loaded (not built, or LibTorch missing). */
export class LibraryLoadError extends TorchError {
  /** The path that was tried. */
  readonly path: string;
  constructor(path: string, reason: string) {
    super(
      `cannot load the slimclr LibTorch shim from ${path}: ${firstLine(reason)}\n` +
        `Build it with 'deno task build:ffi' (it finds LibTorch through LIBTORCH, an installed ` +
        `Python torch or pip), or set SLIMCLR_LIB to a built libslimclr.so.\n${reason}`,
    );
    this.name = "LibraryLoadError";
    this.path = path;
  }
}

/** A tensor was used after `dispose()`. */
export class DisposedTensorError extends Error {
  constructor(what = "tensor") {
    super(`${what} was used after it was disposed`);
    this.name = "DisposedTensorError";
  }
}

function firstLine(text: string): string {
  const line = text.split("\n").find((l) => l.trim().length > 0) ?? text;
  return line.trim();
}
