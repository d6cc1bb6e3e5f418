/** ImageFolder: `root/<class>/.../*.{jpg,jpeg,png}`, classes in sorted folder order (torchvision). */
import { join, relative } from "node:path";
import type { Tensor } from "../tensor.ts";
import { BaseDataset } from "./dataset.ts";
import { DataError, requireDir } from "./errors.ts";
import { decodeOne, NativeSource } from "./native.ts";
import type { Stats } from "./recipes.ts";

/** File extensions the decoder reads (case-insensitive). */
export const IMAGE_EXTENSIONS: readonly string[] = [".jpg", ".jpeg", ".png"];

/** One scanned sample. */
export interface FolderEntry {
  path: string;
  label: number;
}

function sortedEntries(dir: string): Deno.DirEntry[] {
  return [...Deno.readDirSync(dir)].sort((
    a,
    b,
  ) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function walk(dir: string, label: number, out: FolderEntry[]): void {
  for (const e of sortedEntries(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory || (e.isSymlink && Deno.statSync(p).isDirectory)) walk(p, label, out);
    else if (IMAGE_EXTENSIONS.some((x) => e.name.toLowerCase().endsWith(x))) {
      out.push({ path: p, label });
    }
  }
}

/** Scans `dir` like torchvision's ImageFolder: sorted class folders, then sorted files. */
export function scanImageFolder(dir: string): { classes: string[]; entries: FolderEntry[] } {
  requireDir(dir, "an image folder laid out as <class>/<image>");
  const classes = sortedEntries(dir).filter((e) =>
    e.isDirectory || (e.isSymlink && Deno.statSync(join(dir, e.name)).isDirectory)
  ).map((e) => e.name);
  if (classes.length === 0) {
    throw new DataError(
      dir,
      "no class folders (expected <class>/*.JPEG, e.g. train/n01440764/x.JPEG)",
    );
  }
  const entries: FolderEntry[] = [];
  classes.forEach((c, i) => walk(join(dir, c), i, entries));
  if (entries.length === 0) {
    throw new DataError(dir, `no ${IMAGE_EXTENSIONS.join("/")} images in its class folders`);
  }
  return { classes, entries };
}

/** Options of `ImageFolder`. */
export interface ImageFolderOptions {
  /** Sub-folder of the root (`train`, `val`); none reads the root itself. */
  split?: string;
  /** Decode to 1 (gray) or 3 (RGB) channels; default 3. */
  channels?: 1 | 3;
  stats?: Stats;
}

/** Images in class folders, decoded by the shim (JPEG, PNG). */
export class ImageFolder extends BaseDataset {
  readonly name: string;
  readonly classes: readonly string[];
  readonly channels: 1 | 3;
  override readonly stats?: Stats;
  protected readonly labels: Int32Array;
  readonly source: NativeSource;
  /** Absolute file paths, by index. */
  readonly paths: readonly string[];
  /** The scanned folder. */
  readonly root: string;

  constructor(root: string, opts: ImageFolderOptions = {}) {
    super();
    this.root = opts.split ? join(root, opts.split) : root;
    const { classes, entries } = scanImageFolder(this.root);
    this.name = `imagefolder:${this.root}`;
    this.classes = classes;
    this.channels = opts.channels ?? 3;
    this.stats = opts.stats;
    this.paths = entries.map((e) => e.path);
    this.labels = Int32Array.from(entries, (e) => e.label);
    this.source = NativeSource.fromFiles(this.paths);
  }
  /** The path of sample `i` relative to the root. */
  relativePath(i: number): string {
    this.check(i);
    return relative(this.root, this.paths[i]);
  }
  image(i: number): Tensor {
    this.check(i);
    return decodeOne(this.source, i, this.channels);
  }
}
