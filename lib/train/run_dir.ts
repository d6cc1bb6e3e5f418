/** Run folders: a new run never replaces an earlier one. */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type ParsedCommandLine, resumeCommandLine, type TaskFlags } from "../config/cli.ts";
import { ConfigError, type Schema } from "../config/schema.ts";

/** Whether `dir` already holds a run (its saved config or a checkpoints folder). */
export function holdsRun(dir: string): boolean {
  return ["config.json", "checkpoints"].some((f) => {
    try {
      Deno.statSync(join(dir, f));
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * Refuses to start a new run in a folder that holds one (it would replace that run's config,
 * metrics, summary and model, and prune its checkpoints); resuming it is what `--resume` is for.
 */
export function assertNewRun(dir: string, resuming: boolean): void {
  if (resuming || !holdsRun(dir)) return;
  throw new ConfigError(
    `${dir} already holds a run; continue it with --resume auto --run-dir ${dir}, ` +
      `or start a new one under another 'run.name'`,
  );
}

/**
 * Settings a resumed run may take from the command line: where the run lives, logging and
 * checkpoint cadence. Anything else would make the run differ from the one it continues.
 */
export const RESUME_MAY_CHANGE: readonly string[] = [
  "run.out",
  "run.name",
  "run.log_every",
  "run.ckpt_every",
  "run.keep_last",
];

/** Settings of one invocation: a resume starts them from their defaults (run to the end). */
export const RESUME_PER_INVOCATION: readonly string[] = ["run.max_steps"];

/**
 * The command line a task runs with: for `--resume` into a folder that holds a saved
 * `config.json`, that config with the overrides given now (`resumeCommandLine`, which refuses
 * one that would change the result); otherwise `parsed` as it is.
 */
export function commandLineForRun<S extends Schema>(
  schema: S,
  args: string[],
  taskFlags: TaskFlags,
  parsed: ParsedCommandLine<S>,
  runDir: string | null,
  log: (m: string) => void,
): ParsedCommandLine<S> {
  const saved = runDir && join(runDir, "config.json");
  if (!parsed.flags.resume || !saved || !existsSync(saved)) return parsed;
  const r = resumeCommandLine(
    schema,
    args,
    taskFlags,
    saved,
    RESUME_MAY_CHANGE,
    RESUME_PER_INVOCATION,
  );
  if (r.recipes.length) {
    log(
      `resuming ${runDir} with its saved config.json; --config ${r.recipes.join(", ")} is not read`,
    );
  }
  return r;
}
