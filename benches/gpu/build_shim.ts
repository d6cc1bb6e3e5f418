/**
 * Builds the shim like `deno task build:ffi`, plus the distributed backends: Gloo when gloo headers
 * are found (`SLIMCLR_GLOO_INCLUDE`, `<cache>/gloo/usr/include`, `/usr/include`), NCCL when the
 * LibTorch is a CUDA build and `nccl.h` is found (`SLIMCLR_NCCL_INCLUDE`, the pip `nvidia` folders).
 * `SLIMCLR_NO_GLOO=1` / `SLIMCLR_NO_NCCL=1` leave a backend out. Used by the GPU check
 * (`benches/gpu/check.sh`) and for scratch builds (`SLIMCLR_CACHE=/tmp/x`); prints the library path.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { generateHeader, generateSource } from "../../ffi/codegen.ts";
import { cacheDir, shimLibraryPath } from "../../lib/ffi/paths.ts";
import { compileFlags, locateLibTorch } from "../../tasks/build_ffi.ts";

function first(paths: (string | undefined)[], file: string): string | null {
  for (const p of paths) if (p && existsSync(join(p, file))) return p;
  return null;
}

function findNccl(torchRoot: string): string | null {
  const site = join(torchRoot, "..");
  const fixed = [
    Deno.env.get("SLIMCLR_NCCL_INCLUDE"),
    join(site, "nvidia", "nccl", "include"),
    join(site, "nvidia", "cu13", "include"),
    "/usr/include",
    "/usr/local/cuda/include",
  ];
  const found = first(fixed, "nccl.h");
  if (found) return found;
  try {
    for (const e of Deno.readDirSync(join(site, "nvidia"))) {
      const p = join(site, "nvidia", e.name, "include");
      if (existsSync(join(p, "nccl.h"))) return p;
    }
  } catch { /* no pip nvidia packages */ }
  return null;
}

const t = await locateLibTorch();
const gen = join(cacheDir(), "build", "gen");
await Deno.mkdir(gen, { recursive: true });
// tasks/build_ffi.ts may already add the backends (once its distributed flags land): add what it
// lacks, and drop what SLIMCLR_NO_GLOO / SLIMCLR_NO_NCCL leave out
const flags = compileFlags(t, gen);
const cuda = flags.includes("-DSLIMCLR_WITH_CUDA");
const gloo = Deno.env.get("SLIMCLR_NO_GLOO") === "1" ? null : first(
  [
    Deno.env.get("SLIMCLR_GLOO_INCLUDE"),
    join(cacheDir(), "gloo", "usr", "include"),
    "/usr/include",
  ],
  "gloo/config.h",
);
const nccl = cuda && Deno.env.get("SLIMCLR_NO_NCCL") !== "1" ? findNccl(t.root) : null;
const want = (define: string, include: string | null) => {
  const i = flags.indexOf(define);
  if (i >= 0) flags.splice(i, 1);
  if (include) flags.push(define, `-I${include}`);
};
want("-DSLIMCLR_WITH_GLOO", gloo);
want("-DSLIMCLR_WITH_NCCL", nccl);
await Deno.writeTextFile(join(gen, "ops.cpp"), generateSource());
await Deno.writeTextFile(join(gen, "slimclr.h"), generateHeader());
const out = shimLibraryPath();
console.error(
  `build_shim: LibTorch ${t.version} (${t.root}); gloo ${gloo ?? "not found"}; ` +
    `nccl ${cuda ? (nccl ?? "not found") : "not a CUDA build"}`,
);
const t0 = performance.now();
const r = await new Deno.Command("g++", {
  args: [join(gen, "ops.cpp"), "-o", `${out}.tmp`, ...flags],
  stdout: "inherit",
  stderr: "inherit",
}).output();
if (!r.success) Deno.exit(1);
await Deno.rename(`${out}.tmp`, out);
await Deno.remove(join(cacheDir(), "build", "libslimclr.stamp")).catch(() => {});
console.error(`build_shim: built ${out} in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
console.log(out);
