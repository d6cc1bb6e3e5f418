/**
 * Run logging: a live progress line on a terminal (plain lines otherwise) with loss per width,
 * throughput and ETA, and JSONL metrics appended to the run folder.
 */
import { atomicWriteFileSync } from "../serialize/fs.ts";

/** Formats seconds as h:mm:ss or m:ss. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** A progress display for one run. */
export class Progress {
  readonly #tty: boolean;
  readonly #start = performance.now();
  #lastPlain = 0;
  constructor(
    readonly totalSteps: number,
    readonly out: { isTerminal(): boolean; writeSync(b: Uint8Array): number } = Deno.stderr,
    readonly plainEverySeconds = 10,
    /** Steps a resumed run had done before this process: rate and ETA count only the rest. */
    readonly firstStep = 0,
  ) {
    this.#tty = out.isTerminal();
  }

  /**
   * Shows `step` (1-based) with named values; `images` is the number the run processed so far, a
   * resumed run's earlier ones included (the rate counts only this process's share).
   */
  update(step: number, epoch: number, values: Record<string, number>, images: number): void {
    const elapsed = (performance.now() - this.#start) / 1000;
    const done = Math.max(step - this.firstStep, 0);
    const rate = (images * done) / Math.max(step, 1) / Math.max(elapsed, 1e-9);
    const eta = ((this.totalSteps - step) * elapsed) / Math.max(done, 1);
    const parts = Object.entries(values).map(([k, v]) => `${k} ${fmt(v)}`);
    const line =
      `epoch ${epoch.toFixed(2)} step ${step}/${this.totalSteps} | ${parts.join(" ")} | ` +
      `${rate.toFixed(0)} img/s | eta ${formatDuration(eta)}`;
    if (this.#tty) this.#write(`\r\x1b[2K${line}`);
    else if (elapsed - this.#lastPlain >= this.plainEverySeconds || step === this.totalSteps) {
      this.#lastPlain = elapsed;
      this.#write(line + "\n");
    }
  }

  /** Ends the live line (prints a newline on a terminal). */
  done(message = ""): void {
    if (this.#tty) this.#write("\n");
    if (message) this.#write(message + "\n");
  }

  #write(s: string): void {
    this.out.writeSync(new TextEncoder().encode(s));
  }
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e4) ? v.toExponential(2) : v.toFixed(4);
}

/** Appends one JSON object per line to a metrics file. */
export class MetricsLog {
  #file: Deno.FsFile;
  /**
   * Opens `path` for appending. A resumed run passes `resumeStep`: the rows an interrupted run
   * wrote after that step are dropped first (atomically), so no step is logged twice.
   */
  constructor(readonly path: string, options: { resumeStep?: number } = {}) {
    if (options.resumeStep !== undefined) dropRowsAfter(path, options.resumeStep);
    this.#file = Deno.openSync(path, { append: true, create: true });
  }
  /** Writes a record (a `time` field is added). */
  write(record: Record<string, unknown>): void {
    const line = JSON.stringify({ time: new Date().toISOString(), ...record }) + "\n";
    this.#file.writeSync(new TextEncoder().encode(line));
  }
  close(): void {
    this.#file.close();
  }
}

/**
 * Rewrites a metrics file atomically without the rows whose `step` is after `step`. A torn last
 * line (a run killed mid-write) is dropped too; any other line that is not JSON is an error naming
 * the file and line.
 */
function dropRowsAfter(path: string, step: number): void {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  const lines = text.split("\n").filter(Boolean);
  const kept = lines.filter((line, i) => {
    let row: { step?: unknown };
    try {
      row = JSON.parse(line);
    } catch {
      if (i === lines.length - 1) return false;
      throw new Error(`${path}:${i + 1}: not a JSON metrics row`);
    }
    return typeof row.step !== "number" || row.step <= step;
  });
  if (kept.length === lines.length) return;
  atomicWriteFileSync(path, new TextEncoder().encode(kept.map((l) => l + "\n").join("")));
}

/** Reads a metrics file back (for plots and resumed runs). */
export function readMetrics(path: string): Record<string, unknown>[] {
  try {
    return Deno.readTextFileSync(path).split("\n").filter(Boolean).map((l) => JSON.parse(l));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}
