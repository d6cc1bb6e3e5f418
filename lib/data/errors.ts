/** Errors of the data pipeline. */

/**
 * A dataset file or folder is missing, malformed or truncated. The message names the path and
 * what was expected there.
 */
export class DataError extends Error {
  /** The file or folder at fault. */
  readonly path: string;
  constructor(path: string, problem: string) {
    super(`${path}: ${problem}`);
    this.name = "DataError";
    this.path = path;
  }
}

/** An output of a conversion task exists already (they never overwrite). */
export class OutputExistsError extends DataError {
  constructor(path: string) {
    super(path, "exists already; conversion tasks never overwrite (remove it or choose another)");
    this.name = "OutputExistsError";
  }
}

/** Throws `DataError` unless `path` is an existing folder. */
export function requireDir(path: string, what: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    throw new DataError(path, `folder not found (expected ${what})`);
  }
  if (!info.isDirectory) throw new DataError(path, `not a folder (expected ${what})`);
}

/** Throws `DataError` unless `path` is an existing file. */
export function requireFile(path: string, what: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(path);
  } catch {
    throw new DataError(path, `file not found (expected ${what})`);
  }
  if (!info.isFile) throw new DataError(path, `not a file (expected ${what})`);
}

/** Throws `OutputExistsError` if anything exists at `path`. */
export function refuseExisting(path: string): void {
  try {
    Deno.lstatSync(path);
  } catch {
    return;
  }
  throw new OutputExistsError(path);
}
