/**
 * Starting local ranks: N child processes with the torchrun variables (`rankEnv`), their output
 * forwarded line by line, and (with `failFast`) every other rank ended as soon as one exits
 * non-zero: SIGTERM, then SIGKILL after a grace period. `tasks/launch.ts` is the command line.
 */
import { rankEnv } from "./env.ts";

/** How one rank ended. */
export interface RankExit {
  rank: number;
  code: number;
  signal: Deno.Signal | null;
  /** Whether the launcher stopped it because another rank failed. */
  stopped: boolean;
}

/** Options of `spawnRanks`. */
export interface SpawnOptions {
  nproc: number;
  /** Executable and arguments, the same for every rank. */
  command: readonly string[];
  masterAddr?: string;
  /** Default: a free port. */
  masterPort?: number;
  /** Working directory of every rank (default: this process's). */
  cwd?: string;
  /** Extra environment for every rank (after the inherited one). */
  env?: Record<string, string>;
  /** Called with each output line (default: print it with a `[rank]` prefix). */
  onLine?: (rank: number, stream: "stdout" | "stderr", line: string) => void;
  /** End the other ranks when one exits non-zero (default true). */
  failFast?: boolean;
  /** Milliseconds between SIGTERM and SIGKILL (default 5000). */
  graceMs?: number;
}

/** A free TCP port on the loopback interface (closed again; racy only against other binders). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function forwardLines(
  stream: ReadableStream<Uint8Array>,
  emit: (line: string) => void,
): Promise<void> {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      emit(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
  }
  if (pending) emit(pending);
}

function defaultSink(rank: number, stream: "stdout" | "stderr", line: string): void {
  const text = new TextEncoder().encode(`[${rank}] ${line}\n`);
  (stream === "stdout" ? Deno.stdout : Deno.stderr).writeSync(text);
}

/** Running local ranks. */
export class Ranks {
  readonly children: Deno.ChildProcess[];
  readonly masterPort: number;
  readonly #stopped = new Set<number>();
  readonly #failures: RankExit[] = [];
  readonly #done: Promise<RankExit[]>;
  readonly #grace: number;
  #killTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(o: SpawnOptions) {
    if (!(o.nproc >= 1) || !Number.isInteger(o.nproc)) {
      throw new RangeError(`nproc must be a positive integer, got ${o.nproc}`);
    }
    const [cmd, ...args] = o.command;
    if (!cmd) throw new Error("no command to launch");
    this.masterPort = o.masterPort ?? freePort();
    this.#grace = o.graceMs ?? 5000;
    const sink = o.onLine ?? defaultSink;
    const threads = String(Math.max(1, Math.floor(navigator.hardwareConcurrency / o.nproc)));
    this.children = Array.from({ length: o.nproc }, (_, rank) =>
      new Deno.Command(cmd, {
        args,
        cwd: o.cwd,
        env: {
          OMP_NUM_THREADS: Deno.env.get("OMP_NUM_THREADS") ?? threads,
          ...o.env,
          ...rankEnv(rank, o.nproc, o.masterAddr ?? "127.0.0.1", this.masterPort),
        },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn());
    const failFast = o.failFast ?? true;
    const exits = this.children.map(async (child, rank): Promise<RankExit> => {
      const io = Promise.all([
        forwardLines(child.stdout, (l) => sink(rank, "stdout", l)),
        forwardLines(child.stderr, (l) => sink(rank, "stderr", l)),
      ]);
      const s = await child.status;
      await io;
      // stopped: signalled by us and ended by the signal (128+n is how `deno task` reports it)
      const bySignal = s.signal !== null || s.code === 143 || s.code === 137;
      const exit = {
        rank,
        code: s.code,
        signal: s.signal,
        stopped: this.#stopped.has(rank) && bySignal,
      };
      if (s.code !== 0 && !exit.stopped) {
        this.#failures.push(exit);
        if (failFast) this.stopAll(rank);
      }
      return exit;
    });
    this.#done = Promise.all(exits).finally(() => clearTimeout(this.#killTimer));
  }

  /** Sends `signal` to one rank. */
  kill(rank: number, signal: Deno.Signal = "SIGKILL"): void {
    try {
      this.children[rank].kill(signal);
    } catch { /* already gone */ }
  }

  /**
   * Ends every rank except `except`: SIGTERM now, SIGKILL after `graceMs` (default: the
   * launcher's grace period).
   */
  stopAll(except = -1, graceMs = this.#grace): void {
    if (this.#killTimer !== undefined) return;
    for (let r = 0; r < this.children.length; r++) {
      if (r === except) continue;
      this.#stopped.add(r);
      this.kill(r, "SIGTERM");
    }
    this.#killTimer = setTimeout(() => {
      for (const r of this.#stopped) this.kill(r, "SIGKILL");
    }, graceMs);
  }

  /** Every rank's exit, once all have ended. */
  wait(): Promise<RankExit[]> {
    return this.#done;
  }

  /** The first rank that failed on its own (not stopped by the launcher), or null. */
  get firstFailure(): RankExit | null {
    return this.#failures[0] ?? null;
  }
}

/** Starts `nproc` local ranks of `command`. */
export function spawnRanks(o: SpawnOptions): Ranks {
  return new Ranks(o);
}
