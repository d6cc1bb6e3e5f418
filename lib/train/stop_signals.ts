/** Ctrl-C and SIGTERM as a flag a training loop checks between steps. */

/** A wrapper known to drop signals: npm's `npx`/`npm exec`, the Deno npm package's Node shim. */
const SIGNAL_DROPPING_WRAPPER = /\bbin\.cjs\b|\bnpm exec\b|\bnpx\b|node_modules\/\.bin\/deno\b/;

/** Fields after the command name of /proc/PID/stat: state, ppid, pgrp, … (null if gone). */
function statFields(pid: number | "self"): string[] | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

/**
 * The ancestors of this process up to the outermost wrapper that drops signals, or none when no
 * ancestor is such a wrapper (Linux /proc; elsewhere none). `bin.cjs` runs Deno with a blocking
 * spawn and passes no signal on; `npm exec` passes them to a shell that dies of them.
 */
function wrappedAncestors(): number[] {
  const chain: number[] = [];
  let outermost = 0;
  let pid = Deno.ppid;
  for (let depth = 0; depth < 12 && pid > 1; depth++) {
    let cmd: string;
    try {
      cmd = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
    } catch {
      break;
    }
    chain.push(pid);
    if (SIGNAL_DROPPING_WRAPPER.test(cmd)) outermost = chain.length;
    pid = Number(statFields(pid)?.[1] ?? 0);
  }
  return chain.slice(0, outermost);
}

/** Whether process `pid` runs (a zombie counts as gone). */
function running(pid: number): boolean {
  const f = statFields(pid);
  return f !== null && f[0] !== "Z";
}

/**
 * Listens for SIGINT and SIGTERM until disposed; `stopped` turns true when one arrives. Deno
 * delivers signals as event-loop tasks, and a step whose batch is already prefetched never leaves
 * the microtask queue, so the loop calls `poll()` after each step: it yields to the event loop at
 * most every `intervalMs` (about 2 ms per half second).
 *
 * Under a wrapper that drops signals (`npx deno task …`), a SIGTERM to the outermost process can
 * kill the wrappers and never reach this one: the ancestors up to that wrapper are watched at the
 * same interval, and one that is gone stops the run as the signal would have. A run started
 * without such a wrapper (`deno task`, `nohup … &`) is never stopped by its parent exiting.
 */
export class StopSignals implements Disposable {
  /** Whether a stop signal has arrived (or a watched launcher is gone). */
  stopped = false;
  /** Why the run stops: the signal's name, or the launcher that exited. */
  reason = "";
  #lastYield = performance.now();
  readonly #watched = wrappedAncestors();
  readonly #handlers = new Map<Deno.Signal, () => void>();

  /**
   * `anyRank` makes data-parallel ranks agree: each `poll()` sets `stopped` on every rank when any
   * rank has it (`DistributedDataParallel.anyRank`), so all of them stop after the same step.
   */
  constructor(
    readonly options: { intervalMs?: number; anyRank?: (flag: boolean) => boolean } = {},
  ) {
    for (const s of ["SIGINT", "SIGTERM"] as const) {
      const on = () => {
        this.stopped = true;
        this.reason ||= s;
      };
      this.#handlers.set(s, on);
      Deno.addSignalListener(s, on);
    }
  }

  /**
   * Call after every step: lets pending signals through when the interval (default 500 ms) has
   * passed since the last time, then agrees with the other ranks, if any.
   */
  async poll(): Promise<void> {
    if (performance.now() - this.#lastYield >= (this.options.intervalMs ?? 500)) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      this.#lastYield = performance.now();
      if (!this.stopped && this.#watched.some((pid) => !running(pid))) {
        this.stopped = true;
        this.reason = "its launcher (npx) exited";
      }
    }
    if (this.options.anyRank) this.stopped = this.options.anyRank(this.stopped);
  }

  /** Stops listening. */
  [Symbol.dispose](): void {
    for (const [s, on] of this.#handlers) Deno.removeSignalListener(s, on);
    this.#handlers.clear();
  }
}
