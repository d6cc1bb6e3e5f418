/** Where slimclr keeps its project cache and build outputs. */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The project root (the folder holding deno.json). */
export const PROJECT_ROOT: string = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** The gitignored cache: LibTorch, datasets, build outputs. `SLIMCLR_CACHE` overrides it. */
export function cacheDir(): string {
  return Deno.env.get("SLIMCLR_CACHE") ?? join(PROJECT_ROOT, ".cache");
}

/** The built shim library. `SLIMCLR_LIB` overrides it. */
export function shimLibraryPath(): string {
  return Deno.env.get("SLIMCLR_LIB") ?? join(cacheDir(), "build", "libslimclr.so");
}
