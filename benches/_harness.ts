/** Shared benchmark helpers: timing, machine load, JSON lines, the Python PyTorch reference. */
import { join } from "node:path";
import { PROJECT_ROOT } from "../lib/ffi/paths.ts";

/** Median milliseconds per call of `fn` after `warmup` calls. */
export function timeMs(fn: () => void, iters: number, warmup = Math.max(1, iters / 10)): number {
  for (let i = 0; i < warmup; i++) fn();
  const samples: number[] = [];
  const rounds = Math.min(iters, 7);
  const per = Math.max(1, Math.floor(iters / rounds));
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < per; i++) fn();
    samples.push((performance.now() - t0) / per);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)];
}

/** The 1-minute load average (the machine is shared: record it with every result). */
export function loadAverage(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
  } catch {
    return NaN;
  }
}

/** Prints one result line. */
export function report(
  bench: string,
  oursMs: number,
  pytorchMs: number | null,
  extra: Record<string, unknown> = {},
) {
  console.log(JSON.stringify({
    bench,
    ours_ms: round(oursMs),
    pytorch_ms: pytorchMs === null ? null : round(pytorchMs),
    ratio: pytorchMs === null ? null : round(oursMs / pytorchMs),
    load: loadAverage(),
    ...extra,
  }));
}

function round(x: number): number {
  return Number(x.toPrecision(4));
}

/** Runs a Python reference script; returns its JSON output, or null (with a note) without torch. */
export async function runPython(
  script: string,
  args: string[],
): Promise<Record<string, number> | null> {
  const path = join(PROJECT_ROOT, "benches", "python", script);
  for (const py of ["python3", "python"]) {
    try {
      const out = await new Deno.Command(py, {
        args: [path, ...args],
        stdout: "piped",
        stderr: "piped",
      })
        .output();
      if (out.success) {
        const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
        return JSON.parse(lines[lines.length - 1]);
      }
      console.error(
        `bench: ${py} ${script} failed: ${
          new TextDecoder().decode(out.stderr).trim().split("\n").pop()
        }`,
      );
    } catch { /* try the next interpreter */ }
  }
  console.error("bench: no Python torch found; PyTorch columns are null");
  return null;
}
