/**
 * Provides Fashion-MNIST in the project cache (`<cache>/datasets/fashion-mnist`), from the first
 * source that works: the files of the installed Debian package dataset-fashion-mnist, that
 * package's .deb fetched with `apt-get download` and unpacked with `dpkg-deb -x` (no root
 * install), or the official download. Every file is checked against committed SHA-256 sums, and
 * `SOURCE.json` records where the data came from.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { cacheDir } from "../ffi/paths.ts";
import { DataError } from "./errors.ts";

/** The four files, as the Debian package and the official release name them. */
export const FASHION_MNIST_FILES = [
  "train-images-idx3-ubyte.gz",
  "train-labels-idx1-ubyte.gz",
  "t10k-images-idx3-ubyte.gz",
  "t10k-labels-idx1-ubyte.gz",
] as const;

/** SHA-256 of the gzipped files of Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1. */
export const DEBIAN_GZ_SHA256: Record<string, string> = {
  "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
  "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
  "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
  "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
};

/**
 * SHA-256 of the decompressed IDX data (computed from the Debian files). These hold for every
 * source: the official .gz files are compressed differently but decompress to the same bytes.
 */
export const IDX_SHA256: Record<string, string> = {
  "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
  "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
  "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
  "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
};

/** The official release (used only when neither Debian route works). */
export const OFFICIAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";
/** Where the Debian package installs the files. */
export const DEBIAN_DIR = "/usr/share/datasets/fashion-mnist";
const PACKAGE = "dataset-fashion-mnist";

/** Where the data came from. */
export type FashionMnistOrigin = "cache" | "debian-installed" | "debian-deb" | "download";

/** The outcome of `provideFashionMnist`. */
export interface Provided {
  dir: string;
  origin: FashionMnistOrigin;
  /** The folder, .deb or URL the files were taken from. */
  from: string;
}

/** Options (the defaults are the real locations; tests point them elsewhere). */
export interface ProvideOptions {
  dest?: string;
  debianDir?: string;
  /** Try `apt-get download` (default true). */
  apt?: boolean;
  /** Base URL of the official files, or null to never download. */
  url?: string | null;
  log?: (msg: string) => void;
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function gunzip(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  const s = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(s).arrayBuffer());
}

/** Checks one file's sums; `debian` also checks the .gz bytes against Debian's. */
export async function verifyFile(path: string, name: string, debian: boolean): Promise<void> {
  const gz = await Deno.readFile(path);
  if (debian) {
    const got = await sha256(gz);
    if (got !== DEBIAN_GZ_SHA256[name]) {
      throw new DataError(path, `SHA-256 ${got}, expected Debian's ${DEBIAN_GZ_SHA256[name]}`);
    }
  }
  let data: Uint8Array<ArrayBuffer>;
  try {
    data = await gunzip(gz);
  } catch (e) {
    throw new DataError(path, `corrupt or truncated gzip data (${(e as Error).message})`);
  }
  const got = await sha256(data);
  if (got !== IDX_SHA256[name]) {
    throw new DataError(path, `decompressed SHA-256 ${got}, expected ${IDX_SHA256[name]}`);
  }
}

async function verifyDir(dir: string, debian: boolean): Promise<void> {
  for (const f of FASHION_MNIST_FILES) {
    const p = join(dir, f);
    if (!existsSync(p)) throw new DataError(p, "file not found (expected a Fashion-MNIST .gz)");
    await verifyFile(p, f, debian);
  }
}

/** Copies the verified files into `dest` through a temporary folder, then records the origin. */
async function install(
  dest: string,
  files: Map<string, Uint8Array<ArrayBuffer>>,
  p: Provided,
): Promise<Provided> {
  const tmp = `${dest}.partial-${Deno.pid}`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp, { recursive: true });
  for (const [name, bytes] of files) await Deno.writeFile(join(tmp, name), bytes);
  await verifyDir(tmp, p.origin !== "download");
  const record = {
    origin: p.origin,
    from: p.from,
    idx_sha256: IDX_SHA256,
    gz_sha256: p.origin === "download" ? undefined : DEBIAN_GZ_SHA256,
    date: new Date().toISOString(),
  };
  await Deno.writeTextFile(join(tmp, "SOURCE.json"), JSON.stringify(record, null, 2) + "\n");
  await Deno.remove(dest, { recursive: true }).catch(() => {});
  await Deno.rename(tmp, dest);
  return { ...p, dir: dest };
}

async function readAll(dir: string): Promise<Map<string, Uint8Array<ArrayBuffer>>> {
  const m = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const f of FASHION_MNIST_FILES) m.set(f, await Deno.readFile(join(dir, f)));
  return m;
}

async function run(cmd: string, args: string[], cwd: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").pop();
    throw new Error(`${cmd} ${args.join(" ")} failed: ${err}`);
  }
  return new TextDecoder().decode(out.stdout);
}

async function fromDeb(dest: string): Promise<Provided> {
  const tmp = await Deno.makeTempDir({ prefix: "slimclr-fmnist-" });
  try {
    await run("apt-get", ["download", "-o", "APT::Sandbox::User=root", PACKAGE], tmp);
    const deb = [...Deno.readDirSync(tmp)].find((e) => e.name.endsWith(".deb"));
    if (!deb) throw new Error(`apt-get download left no .deb in ${tmp}`);
    await run("dpkg-deb", ["-x", join(tmp, deb.name), join(tmp, "x")], tmp);
    const dir = join(tmp, "x", DEBIAN_DIR);
    await verifyDir(dir, true);
    return await install(dest, await readAll(dir), {
      dir: dest,
      origin: "debian-deb",
      from: deb.name,
    });
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

async function fromUrl(dest: string, url: string): Promise<Provided> {
  const files = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const f of FASHION_MNIST_FILES) {
    const r = await fetch(new URL(f, url));
    if (!r.ok) throw new Error(`GET ${new URL(f, url)}: HTTP ${r.status}`);
    files.set(f, new Uint8Array(await r.arrayBuffer()));
  }
  return await install(dest, files, { dir: dest, origin: "download", from: url });
}

/** Makes Fashion-MNIST available in `dest`; throws listing why each source failed. */
export async function provideFashionMnist(opts: ProvideOptions = {}): Promise<Provided> {
  const dest = opts.dest ?? join(cacheDir(), "datasets", "fashion-mnist");
  const debianDir = opts.debianDir ?? DEBIAN_DIR;
  const log = opts.log ?? ((m: string) => console.error(m));
  const tried: string[] = [];
  if (existsSync(join(dest, "SOURCE.json"))) {
    try {
      await verifyDir(dest, false);
      const rec = JSON.parse(Deno.readTextFileSync(join(dest, "SOURCE.json")));
      return { dir: dest, origin: "cache", from: `${rec.origin} (${rec.from})` };
    } catch (e) {
      tried.push(`cache ${dest}: ${(e as Error).message}`);
      log(`fashion-mnist: the cached copy failed verification; providing it again`);
    }
  }
  const attempts: [string, () => Promise<Provided>][] = [];
  if (existsSync(debianDir)) {
    attempts.push([`installed package (${debianDir})`, async () => {
      await verifyDir(debianDir, true);
      return install(dest, await readAll(debianDir), {
        dir: dest,
        origin: "debian-installed",
        from: debianDir,
      });
    }]);
  } else tried.push(`installed package: ${debianDir} not found`);
  if (opts.apt ?? true) attempts.push(["apt-get download + dpkg-deb -x", () => fromDeb(dest)]);
  const url = opts.url === undefined ? OFFICIAL_URL : opts.url;
  if (url) attempts.push([`download from ${url}`, () => fromUrl(dest, url)]);
  for (const [what, attempt] of attempts) {
    try {
      return await attempt();
    } catch (e) {
      tried.push(`${what}: ${(e as Error).message}`);
      log(`fashion-mnist: ${what} failed: ${(e as Error).message}`);
    }
  }
  throw new DataError(dest, `could not provide Fashion-MNIST. Tried:\n  - ${tried.join("\n  - ")}`);
}
