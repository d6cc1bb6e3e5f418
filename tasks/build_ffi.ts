/**
 * `deno task build:ffi`: finds LibTorch, generates the C API from the op table and compiles the
 * shim with g++ into `.cache/build/libslimclr.so`. It rebuilds only when the sources, flags or
 * LibTorch change.
 *
 * LibTorch comes from, in order: `LIBTORCH` (an unpacked libtorch folder), an installed Python
 * `torch`, or the CPU torch wheel that pip downloads into the project cache. The tested version is
 * pinned; `SLIMCLR_ALLOW_TORCH_VERSION=1` accepts another one.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { generateHeader, generateSource } from "../ffi/codegen.ts";
import { cacheDir, PROJECT_ROOT, shimLibraryPath } from "../lib/ffi/paths.ts";

/** The LibTorch version slimclr is tested against. */
export const PINNED_TORCH = "2.13";
/** The wheel fetched when no LibTorch is found. */
export const WHEEL_SPEC = "torch==2.13.0+cpu";

/** A located LibTorch installation. */
export interface LibTorch {
  root: string;
  include: string[];
  lib: string;
  version: string;
  cuda: boolean;
  source: string;
}

async function run(cmd: string, args: string[], opts: { cwd?: string } = {}) {
  const out = await new Deno.Command(cmd, { args, cwd: opts.cwd, stdout: "piped", stderr: "piped" })
    .output()
    .catch((e) => ({
      success: false,
      stdout: new Uint8Array(),
      stderr: new TextEncoder().encode(String(e)),
      code: -1,
    }));
  return {
    ok: out.success,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

function readVersion(root: string): string | null {
  for (
    const f of [
      "include/torch/headeronly/version.h",
      "include/torch/csrc/api/include/torch/version.h",
    ]
  ) {
    const path = join(root, f);
    if (!existsSync(path)) continue;
    const text = readFileSync(path, "utf8");
    const part = (k: string) => text.match(new RegExp(`#define TORCH_VERSION_${k} (\\d+)`))?.[1];
    if (part("MAJOR")) return `${part("MAJOR")}.${part("MINOR")}.${part("PATCH")}`;
  }
  return null;
}

function inspect(root: string, source: string): LibTorch | string {
  const lib = join(root, "lib");
  if (!existsSync(join(lib, "libtorch_cpu.so"))) {
    return `${source}: no lib/libtorch_cpu.so in ${root}`;
  }
  if (!existsSync(join(root, "include", "ATen", "ATen.h"))) {
    return `${source}: no include/ATen/ATen.h in ${root}`;
  }
  const version = readVersion(root);
  if (!version) return `${source}: cannot read the LibTorch version under ${root}/include`;
  return {
    root,
    include: [join(root, "include"), join(root, "include", "torch", "csrc", "api", "include")],
    lib,
    version,
    cuda: existsSync(join(lib, "libtorch_cuda.so")),
    source,
  };
}

async function fromPython(): Promise<LibTorch | string> {
  const tried: string[] = [];
  for (const py of ["python3", "python"]) {
    const r = await run(py, ["-c", "import os, torch; print(os.path.dirname(torch.__file__))"]);
    if (r.ok) return inspect(r.stdout.trim(), `Python torch (${py})`);
    tried.push(`${py}: ${r.stderr.trim().split("\n").pop() || "not found"}`);
  }
  return `installed Python torch: ${tried.join("; ")}`;
}

export async function fromWheelCache(): Promise<LibTorch | string> {
  const dest = join(cacheDir(), "libtorch", WHEEL_SPEC.replace("==", "-"));
  if (existsSync(join(dest, "lib", "libtorch_cpu.so"))) return inspect(dest, "project cache");
  const wheels = join(cacheDir(), "wheels");
  await Deno.mkdir(wheels, { recursive: true });
  console.error(`slimclr: fetching ${WHEEL_SPEC} with pip into ${wheels} ...`);
  let pip = { ok: false, stdout: "", stderr: "" };
  for (const [cmd, pre] of [["pip", []], ["pip3", []], ["python3", ["-m", "pip"]]] as const) {
    pip = await run(cmd, [...pre, "download", "--no-deps", "-d", wheels, WHEEL_SPEC]);
    if (pip.ok) break;
  }
  if (!pip.ok) {
    return `project cache: 'pip download --no-deps ${WHEEL_SPEC}' failed: ${
      pip.stderr.trim().split("\n").slice(-2).join(" ")
    }`;
  }
  const wheel = [...Deno.readDirSync(wheels)].map((e) => e.name).find((n) =>
    n.startsWith("torch-2.13.0") && n.endsWith(".whl")
  );
  if (!wheel) return `project cache: pip reported success but no torch wheel is in ${wheels}`;
  const tmp = `${dest}.partial`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  const pattern = ["torch/lib/*", "torch/include/*", "torch/share/*"];
  let unzip = await run("unzip", ["-q", join(wheels, wheel), ...pattern, "-d", tmp]);
  if (!unzip.ok) {
    unzip = await run("python3", ["-m", "zipfile", "-e", join(wheels, wheel), tmp]);
  }
  if (!unzip.ok) return `project cache: could not unpack ${wheel}: ${unzip.stderr.trim()}`;
  await Deno.rename(join(tmp, "torch"), dest);
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  return inspect(dest, "project cache");
}

/** Finds LibTorch, trying every place in order; the error lists each place and what to set. */
export async function locateLibTorch(): Promise<LibTorch> {
  const tried: string[] = [];
  const env = Deno.env.get("LIBTORCH");
  if (env) {
    const r = inspect(env, "LIBTORCH");
    if (typeof r !== "string") return checkVersion(r);
    tried.push(r);
  } else tried.push("LIBTORCH: not set");
  for (const attempt of [fromPython, fromWheelCache]) {
    const r = await attempt();
    if (typeof r !== "string") return checkVersion(r);
    tried.push(r);
  }
  throw new Error(
    `LibTorch not found. Tried:\n  - ${tried.join("\n  - ")}\n` +
      `Set LIBTORCH to an unpacked libtorch folder (with include/ and lib/), install Python torch ` +
      `${PINNED_TORCH}.x, or make 'pip download ${WHEEL_SPEC}' work.`,
  );
}

function checkVersion(t: LibTorch): LibTorch {
  if (
    !t.version.startsWith(PINNED_TORCH + ".") && Deno.env.get("SLIMCLR_ALLOW_TORCH_VERSION") !== "1"
  ) {
    throw new Error(
      `LibTorch ${t.version} from ${t.source} (${t.root}) is not the tested ${PINNED_TORCH}.x. ` +
        `Point LIBTORCH at a ${PINNED_TORCH} build, or set SLIMCLR_ALLOW_TORCH_VERSION=1 to build anyway.`,
    );
  }
  return t;
}

function cudaIncludes(t: LibTorch): string[] {
  const candidates = [
    Deno.env.get("CUDA_HOME") && join(Deno.env.get("CUDA_HOME")!, "include"),
    "/usr/local/cuda/include",
    join(t.root, "..", "nvidia", "cuda_runtime", "include"),
    join(t.root, "..", "nvidia", "cu13", "include"),
  ].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(join(p, "cuda_runtime_api.h")));
  return found ? [found] : [];
}

/**
 * Gloo headers for c10d's ProcessGroupGloo.hpp (LibTorch ships the Gloo symbols in libtorch_cpu,
 * not the headers): SLIMCLR_GLOO_INCLUDE, <cache>/gloo/usr/include, or Debian's libgloo-dev.
 */
export function glooInclude(): string | null {
  const candidates = [
    Deno.env.get("SLIMCLR_GLOO_INCLUDE"),
    join(cacheDir(), "gloo", "usr", "include"),
    "/usr/include",
  ];
  return candidates.find((p) => p && existsSync(join(p, "gloo", "config.h"))) ?? null;
}

/** nccl.h for ProcessGroupNCCL (CUDA builds): SLIMCLR_NCCL_INCLUDE, pip's nvidia packages, CUDA. */
export function ncclInclude(t: LibTorch): string | null {
  const nvidia = join(t.root, "..", "nvidia");
  const pip = existsSync(nvidia)
    ? [...Deno.readDirSync(nvidia)].map((e) => join(nvidia, e.name, "include"))
    : [];
  const cudaHome = Deno.env.get("CUDA_HOME");
  const candidates = [
    Deno.env.get("SLIMCLR_NCCL_INCLUDE"),
    ...pip,
    cudaHome && join(cudaHome, "include"),
    "/usr/local/cuda/include",
    "/usr/include",
  ];
  return candidates.find((p) => p && existsSync(join(p, "nccl.h"))) ?? null;
}

/** Compiler flags for a LibTorch. */
export function compileFlags(t: LibTorch, genDir: string): string[] {
  const cuda = t.cuda ? cudaIncludes(t) : [];
  const gloo = glooInclude();
  const nccl = cuda.length ? ncclInclude(t) : null;
  return [
    "-std=c++20",
    "-O2",
    "-fPIC",
    "-shared",
    "-fvisibility=hidden",
    "-D_GLIBCXX_USE_CXX11_ABI=1",
    ...(cuda.length ? ["-DSLIMCLR_WITH_CUDA"] : []),
    ...(gloo ? ["-DSLIMCLR_WITH_GLOO", ...(gloo === "/usr/include" ? [] : [`-I${gloo}`])] : []),
    ...(nccl ? ["-DSLIMCLR_WITH_NCCL", ...(nccl === "/usr/include" ? [] : [`-I${nccl}`])] : []),
    `-I${join(PROJECT_ROOT, "ffi")}`,
    `-I${genDir}`,
    ...t.include.map((i) => `-I${i}`),
    ...cuda.map((i) => `-I${i}`),
    `-L${t.lib}`,
    `-Wl,-rpath,${t.lib}`,
    // Deno cannot pass dlopen flags, so CUDA must be a hard dependency to load at all.
    ...(t.cuda ? ["-Wl,--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Wl,--as-needed"] : []),
    "-ltorch",
    "-ltorch_cpu",
    "-lc10",
  ];
}

/** What a build with `flags` supports, and for what is left out, why. */
export function featureLine(t: LibTorch, flags: readonly string[]): string {
  const has = (d: string) => flags.includes(d);
  const cuda = has("-DSLIMCLR_WITH_CUDA")
    ? "CUDA yes"
    : t.cuda
    ? "CUDA no (CUDA headers not found: set CUDA_HOME)"
    : "CUDA no (a CPU LibTorch)";
  const gloo = has("-DSLIMCLR_WITH_GLOO")
    ? "Gloo yes"
    : "Gloo no (install libgloo-dev: the distributed tests are ignored without it)";
  const nccl = has("-DSLIMCLR_WITH_NCCL")
    ? "NCCL yes"
    : has("-DSLIMCLR_WITH_CUDA")
    ? "NCCL no (nccl.h not found: set SLIMCLR_NCCL_INCLUDE)"
    : "NCCL no (needs CUDA)";
  return `LibTorch ${t.version}, ${cuda}, ${gloo}, ${nccl}`;
}

/** Builds the shim if anything changed; returns the library path. */
export async function buildShim(opts: { force?: boolean; quiet?: boolean } = {}): Promise<string> {
  const t = await locateLibTorch();
  const out = shimLibraryPath();
  const buildDir = join(cacheDir(), "build");
  const genDir = join(buildDir, "gen");
  await Deno.mkdir(genDir, { recursive: true });
  const source = generateSource();
  const header = generateHeader();
  const flags = compileFlags(t, genDir);
  const hash = createHash("sha256");
  for (const f of [...Deno.readDirSync(join(PROJECT_ROOT, "ffi"))].map((e) => e.name).sort()) {
    if (f.endsWith(".hpp")) hash.update(f).update(readFileSync(join(PROJECT_ROOT, "ffi", f)));
  }
  hash.update(source).update(flags.join(" ")).update(t.version);
  const digest = hash.digest("hex");
  const stamp = join(buildDir, "libslimclr.stamp");
  if (
    !opts.force && existsSync(out) && existsSync(stamp) && readFileSync(stamp, "utf8") === digest
  ) {
    if (!opts.quiet) console.error(`slimclr: shim up to date (${out})`);
    return out;
  }
  await Deno.writeTextFile(join(genDir, "ops.cpp"), source);
  await Deno.writeTextFile(join(genDir, "slimclr.h"), header);
  if (!opts.quiet) {
    console.error(
      `slimclr: building the shim against LibTorch ${t.version} (${t.source}: ${t.root})`,
    );
  }
  const tmp = `${out}.tmp`;
  const r = await run("g++", [join(genDir, "ops.cpp"), "-o", tmp, ...flags]);
  if (!r.ok) throw new Error(`g++ failed building the shim:\n${r.stderr}`);
  await Deno.rename(tmp, out);
  await Deno.writeTextFile(stamp, digest);
  await Deno.writeTextFile(
    join(buildDir, "libtorch.json"),
    JSON.stringify({ ...t, library: out }, null, 2),
  );
  if (!opts.quiet) console.error(`slimclr: built ${out}; ${featureLine(t, flags)}`);
  return out;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { force: { type: "boolean", default: false }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    console.log(
      "deno task build:ffi [--force]\n\nBuilds the LibTorch shim into .cache/build. Environment:\n" +
        "  LIBTORCH                     unpacked libtorch folder to build against\n" +
        "  SLIMCLR_ALLOW_TORCH_VERSION  set to 1 to accept a LibTorch other than " + PINNED_TORCH +
        ".x\n  SLIMCLR_CACHE                cache folder (default .cache)",
    );
    Deno.exit(0);
  }
  try {
    await buildShim({ force: values.force });
  } catch (e) {
    console.error(`build:ffi: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
