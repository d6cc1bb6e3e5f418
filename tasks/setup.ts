/**
 * `deno task setup`: the one bootstrap under `deno task test`, `deno task demo`, every other task
 * and `.ci/run`. In order, it
 * 1. installs the Debian packages the toolkit loads or builds against, when any is missing, with
 *    apt-get as root or through passwordless sudo; otherwise it stops before any work and prints
 *    the exact command to run;
 * 2. builds the LibTorch shim (`deno task build:ffi`), finding or fetching LibTorch.
 *
 * `SLIMCLR_NO_SYSTEM_PACKAGES=1` skips step 1 for machines that are not Debian-like; what is
 * missing is then still listed, and the features that need it fail with a named error.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { cacheDir } from "../lib/ffi/paths.ts";
import { buildShim, WHEEL_SPEC } from "./build_ffi.ts";

/** A Debian package slimclr needs, how to tell it is there, and what it is for. */
export interface SystemPackage {
  name: string;
  why: string;
  present: () => boolean;
}

const libraryDirs = [
  "/usr/lib/x86_64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/lib/x86_64-linux-gnu",
  "/usr/lib64",
  "/usr/lib",
];
const hasLibrary = (file: string) => libraryDirs.some((d) => existsSync(join(d, file)));
const onPath = (cmd: string) =>
  (Deno.env.get("PATH") ?? "").split(":").some((d) => d && existsSync(join(d, cmd)));
/** Whether LibTorch is at hand without fetching the wheel (LIBTORCH, or already unpacked). */
const libTorchAtHand = () =>
  !!Deno.env.get("LIBTORCH") ||
  existsSync(join(cacheDir(), "libtorch", WHEEL_SPEC.replace("==", "-")));

/** Everything the toolkit needs from Debian's archive. */
export const SYSTEM_PACKAGES: readonly SystemPackage[] = [
  { name: "g++", why: "compiles the LibTorch shim", present: () => onPath("g++") },
  {
    name: "python3-pip",
    why: "fetches the LibTorch wheel when no LibTorch is installed",
    present: () => onPath("pip") || onPath("pip3") || libTorchAtHand(),
  },
  {
    name: "unzip",
    why: "unpacks the LibTorch wheel",
    present: () => onPath("unzip") || libTorchAtHand(),
  },
  {
    name: "libgloo-dev",
    why: "headers of Gloo, the CPU process group of distributed training",
    present: () => existsSync("/usr/include/gloo/config.h"),
  },
  {
    name: "libjpeg62-turbo",
    why: "JPEG decoding (ImageFolder, LMDB, RecordIO)",
    present: () => hasLibrary("libjpeg.so.62"),
  },
  { name: "libpng16-16", why: "PNG decoding", present: () => hasLibrary("libpng16.so.16") },
  { name: "liblmdb0", why: "LMDB datasets", present: () => hasLibrary("liblmdb.so.0") },
  {
    name: "fonts-dejavu-core",
    why: "text in the plots",
    present: () => existsSync("/usr/share/fonts/truetype/dejavu"),
  },
  {
    name: "dataset-fashion-mnist",
    why: "the embedded default dataset of the demo and the tests",
    present: () => existsSync("/usr/share/datasets/fashion-mnist"),
  },
];

/** Whether apt-get can be run here: as root, or through passwordless sudo. */
function aptRunner(): string[] | null {
  if (!onPath("apt-get")) return null;
  if (Deno.uid?.() === 0) return [];
  const sudo = new Deno.Command("sudo", { args: ["-n", "true"], stdout: "null", stderr: "null" });
  try {
    return sudo.outputSync().success ? ["sudo", "-n"] : null;
  } catch {
    return null;
  }
}

function run(cmd: string[], env: Record<string, string> = {}): boolean {
  const r = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env,
    stdout: "inherit",
    stderr: "inherit",
  }).outputSync();
  return r.success;
}

/**
 * Installs the missing system packages, or throws with the exact command when it cannot.
 * Returns the names installed.
 */
export function ensureSystemPackages(log: (m: string) => void = console.error): string[] {
  const missing = SYSTEM_PACKAGES.filter((p) => !p.present());
  if (missing.length === 0) return [];
  const names = missing.map((p) => p.name);
  const list = missing.map((p) => `  ${p.name}: ${p.why}`).join("\n");
  const command = `sudo apt-get update && sudo apt-get install -y --no-install-recommends ${
    names.join(" ")
  }`;
  if (Deno.env.get("SLIMCLR_NO_SYSTEM_PACKAGES") === "1") {
    log(`slimclr: SLIMCLR_NO_SYSTEM_PACKAGES=1: not installing\n${list}`);
    return [];
  }
  const runner = aptRunner();
  if (!runner) {
    throw new Error(
      `missing system packages:\n${list}\nInstall them with:\n  ${command}\n` +
        "(or set SLIMCLR_NO_SYSTEM_PACKAGES=1 to go on without them)",
    );
  }
  log(`slimclr: installing ${names.join(", ")} with apt-get`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  if (
    !run([...runner, "apt-get", "update", "-qq"], env) ||
    !run([...runner, "apt-get", "install", "-y", "-qq", "--no-install-recommends", ...names], env)
  ) {
    throw new Error(`apt-get could not install ${names.join(" ")}; run:\n  ${command}`);
  }
  const still = missing.filter((p) => !p.present()).map((p) => p.name);
  if (still.length) throw new Error(`apt-get ran, but ${still.join(", ")} is still missing`);
  return names;
}

if (import.meta.main) {
  try {
    ensureSystemPackages();
    await buildShim();
  } catch (e) {
    console.error(`setup: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
