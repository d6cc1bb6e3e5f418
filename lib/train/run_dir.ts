/** Run folders: a new run never replaces an earlier one. */
import { join } from "node:path";
import { ConfigError } from "../config/schema.ts";

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
