/**
 * `deno task launch --nproc N <script.ts | task | command> [args…]`: starts N local ranks with the
 * torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
 * prefixes each output line with `[rank]`, and ends every rank as soon as one fails. The exit code
 * is the first failing rank's (0 when all succeed). A script runs under `deno run --allow-all`; a
 * deno.json task has its dependencies run once, then its command per rank; anything else is run
 * as a command. Multi-node jobs use torchrun (`torchrun --no-python deno run -A …`) or SLURM.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { PROJECT_ROOT } from "../lib/ffi/paths.ts";
import { freePort, spawnRanks } from "../lib/dist/launcher.ts";

const USAGE = `deno task launch --nproc N [options] <script.ts | task | command> [args…]

Options:
  --nproc N           local ranks to start (required)
  --master-addr A     rendezvous address (default 127.0.0.1)
  --master-port P     rendezvous port (default: a free port)
  --grace-ms MS       after Ctrl-C or SIGTERM, how long ranks may take to finish their step and
                      save a checkpoint before SIGKILL (default 30000; after a rank fails, the
                      others get 5000)`;

interface Cli {
  nproc: number;
  masterAddr: string;
  masterPort: number;
  graceMs: number;
  target: string;
  rest: string[];
}

/** Parses the launcher's options up to the target; everything after belongs to the ranks. */
export function parseCli(argv: readonly string[]): Cli | null {
  const opts: Record<string, string> = {};
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-h" || a === "--help") return null;
    if (a === "--") {
      i++;
      break;
    }
    if (!a.startsWith("--")) break;
    const eq = a.indexOf("=");
    const key = eq > 0 ? a.slice(2, eq) : a.slice(2);
    if (!["nproc", "master-addr", "master-port", "grace-ms"].includes(key)) {
      throw new Error(`unknown launcher option ${a}`);
    }
    opts[key] = eq > 0 ? a.slice(eq + 1) : argv[++i];
  }
  const [target, ...rest] = argv.slice(i);
  const nproc = Number(opts.nproc);
  if (!target) throw new Error("nothing to launch");
  if (!Number.isInteger(nproc) || nproc < 1) throw new Error("--nproc N (N ≥ 1) is required");
  const integer = (flag: string, min: number, max: number): number | undefined => {
    if (opts[flag] === undefined) return undefined;
    const v = Number(opts[flag]);
    if (!Number.isInteger(v) || v < min || v > max) {
      throw new Error(`--${flag} expects an integer from ${min} to ${max}, got '${opts[flag]}'`);
    }
    return v;
  };
  return {
    nproc,
    masterAddr: opts["master-addr"] ?? "127.0.0.1",
    masterPort: integer("master-port", 1, 65535) ?? freePort(),
    graceMs: integer("grace-ms", 0, 86_400_000) ?? 30_000,
    target,
    rest,
  };
}

const quote = (s: string) => /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;

type Task = string | { command?: string; dependencies?: string[] };

function denoTask(name: string): Task | null {
  const path = join(PROJECT_ROOT, "deno.json");
  if (!existsSync(path)) return null;
  const tasks = JSON.parse(readFileSync(path, "utf8")).tasks ?? {};
  return tasks[name] ?? null;
}

/** The per-rank command for the target, after running a task's dependencies once. */
async function resolve(target: string, rest: string[]): Promise<string[]> {
  const deno = Deno.execPath();
  if (/\.(ts|mts|tsx|js|mjs|jsx)$/.test(target)) {
    // `deno task` runs from the project root; INIT_CWD is where the user typed the command
    const here = [target, join(Deno.env.get("INIT_CWD") ?? ".", target)].find((p) => existsSync(p));
    if (here) return [deno, "run", "--allow-all", here, ...rest];
  }
  const task = denoTask(target);
  if (task === null) return [target, ...rest];
  const command = typeof task === "string" ? task : task.command;
  if (!command) throw new Error(`task '${target}' has no command`);
  for (const dep of typeof task === "string" ? [] : task.dependencies ?? []) {
    console.error(`launch: running dependency '${dep}' once`);
    const s = await new Deno.Command(deno, { args: ["task", dep], cwd: PROJECT_ROOT }).spawn()
      .status;
    if (!s.success) throw new Error(`dependency '${dep}' of '${target}' failed (${s.code})`);
  }
  return [deno, "task", "--eval", [command, ...rest.map(quote)].join(" ")];
}

if (import.meta.main) {
  let cli: Cli | null;
  try {
    cli = parseCli(Deno.args);
  } catch (e) {
    console.error(`launch: ${(e as Error).message}\n\n${USAGE}`);
    Deno.exit(2);
  }
  if (!cli) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const command = await resolve(cli.target, cli.rest);
  const ranks = spawnRanks({
    nproc: cli.nproc,
    command,
    cwd: denoTask(cli.target) ? PROJECT_ROOT : undefined,
    masterAddr: cli.masterAddr,
    masterPort: cli.masterPort,
    // After a rank fails the others are usually stuck in a collective: end them sooner.
    graceMs: 5000,
  });
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(sig, () => {
      console.error(`launch: ${sig}, stopping every rank`);
      ranks.stopAll(-1, cli.graceMs);
    });
  }
  const exits = await ranks.wait();
  const failed = ranks.firstFailure;
  if (failed) {
    const how = failed.signal
      ? `was killed by ${failed.signal}`
      : `exited with code ${failed.code}`;
    const stopped = exits.filter((e) => e.stopped).map((e) => e.rank);
    console.error(
      `launch: rank ${failed.rank} ${how}` +
        (stopped.length
          ? `; stopped rank${stopped.length > 1 ? "s" : ""} ${stopped.join(", ")}`
          : ""),
    );
    Deno.exit(failed.code || 1);
  }
  const other = exits.find((e) => e.code !== 0);
  Deno.exit(other ? other.code || 1 : 0);
}
