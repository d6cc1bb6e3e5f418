/**
 * Pieces the pretraining and supervised loops share: the run folder's logs, step intervals given
 * in epochs, and the end of an optimizer step (loss-scale check, clipping, step, scaler update).
 */
import { join } from "node:path";
import type { GradScaler } from "../amp.ts";
import { MetricsLog, Progress } from "../log/progress.ts";
import { TensorBoardWriter } from "../log/tensorboard.ts";
import { clipGradNorm, type Optimizer } from "../optim.ts";
import { atomicWriteFile } from "../serialize/fs.ts";
import type { Tensor } from "../tensor.ts";

/** What a loop writes into its run folder while it runs (null on ranks other than 0). */
export interface RunLogs {
  metrics: MetricsLog | null;
  tb: TensorBoardWriter | null;
  progress: Progress | null;
  /** Ends the progress line and closes the files. */
  close(): void;
}

/**
 * Writes `config.json` into `runDir` and opens `metrics.jsonl`, the TensorBoard events and the
 * progress line, on the main rank only. A resume (`resumeStep` given, even 0) first drops what a
 * killed run logged after that step.
 */
export async function openRunLogs(
  runDir: string,
  config: unknown,
  o: { isMain: boolean; progress: boolean; lastStep: number; resumeStep?: number },
): Promise<RunLogs> {
  await Deno.mkdir(runDir, { recursive: true });
  if (!o.isMain) {
    return { metrics: null, tb: null, progress: null, close: () => {} };
  }
  await atomicWriteFile(
    join(runDir, "config.json"),
    new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n"),
  );
  const resumed = o.resumeStep === undefined ? {} : { resumeStep: o.resumeStep };
  const metrics = new MetricsLog(join(runDir, "metrics.jsonl"), resumed);
  const tb = new TensorBoardWriter(join(runDir, "tensorboard"), resumed);
  const progress = o.progress ? new Progress(o.lastStep, Deno.stderr, 10, o.resumeStep ?? 0) : null;
  return {
    metrics,
    tb,
    progress,
    close() {
      progress?.done();
      metrics.close();
      tb.close();
    },
  };
}

/** An interval given in (fractional) epochs as a step count; 0 (off) stays 0, else at least 1. */
export function stepsEvery(epochs: number, stepsPerEpoch: number): number {
  return epochs > 0 ? Math.max(1, Math.round(epochs * stepsPerEpoch)) : 0;
}

/**
 * Ends an optimizer step whose gradients are in place: unscales them (fp16), clips their global
 * norm (`clip` > 0), steps unless the scaler found inf/NaN, and updates the scaler.
 */
export function applyGradients(
  optimizer: Optimizer<object>,
  params: readonly Tensor[],
  scaler: GradScaler | null,
  clip: number,
): void {
  if (scaler) {
    scaler.step(optimizer, params, clip);
    return;
  }
  if (clip > 0) clipGradNorm(params, clip);
  optimizer.step();
}
