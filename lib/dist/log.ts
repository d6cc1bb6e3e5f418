/**
 * Rank-aware logging (spec §5.6): informational lines only on rank 0, in the reference's
 * `time | LEVEL | Rank 0 | message` shape; errors on every rank, tagged with the rank.
 */

/** Something with a rank (a `ProcessGroup`, a `Communicator`, a `DistEnv`). */
export interface HasRank {
  readonly rank: number;
}

/** A logger that writes info and warnings on rank 0 only, errors on every rank. */
export interface RankLogger {
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

function stamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())},` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** A rank-aware logger writing through `sink` (default `console.error`). */
export function rankLogger(
  who: HasRank | number,
  sink: (line: string) => void = (l) => console.error(l),
): RankLogger {
  const rank = typeof who === "number" ? who : who.rank;
  const line = (level: string, args: unknown[]) =>
    `${stamp()} | ${level} | Rank ${rank} | ${
      args.map((a) => (typeof a === "string" ? a : Deno.inspect(a))).join(" ")
    }`;
  return {
    info: (...a) => rank === 0 && sink(line("INFO", a)),
    warn: (...a) => rank === 0 && sink(line("WARNING", a)),
    error: (...a) => sink(line("ERROR", a)),
  };
}

/** Runs `fn` on rank 0 only; other ranks get undefined. */
export function onRankZero<T>(who: HasRank | number, fn: () => T): T | undefined {
  return (typeof who === "number" ? who : who.rank) === 0 ? fn() : undefined;
}
