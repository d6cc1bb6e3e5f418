/**
 * A linear probe as a resumable run: the heads train one step at a time (`ProbeTrainer`), with
 * checkpoints every N epochs and at the end (atomic; the last K kept) in the output folder's
 * `probe_checkpoints/`, exact resume from one, `max_steps`, and a clean stop with a checkpoint on
 * SIGINT/SIGTERM. A new probe never replaces an earlier one's output (`assertNewProbe`).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../config/schema.ts";
import type { Device } from "../dtype.ts";
import type { SlimmableResNet } from "../models/slimmable_resnet.ts";
import { CheckpointManager, readCheckpoint } from "./checkpoint.ts";
import { addEpochLoss, type ProbeData, type ProbeOptions, ProbeTrainer } from "./probe.ts";
import {
  assertProbeResumable,
  loadProbeRecord,
  type ProbeIdentity,
  probeRecord,
} from "./probe_checkpoint.ts";
import { MetricsLog } from "../log/progress.ts";
import { StopSignals } from "./stop_signals.ts";
import { stepsEvery } from "./loop.ts";
import { EpochLog, type EpochLogState } from "./run_metrics.ts";

/** The folder (inside a probe's output folder) that holds its checkpoints. */
export const PROBE_CHECKPOINTS = "probe_checkpoints";

/** The probe's metrics (JSON lines: `train`, `epoch` and `test` rows) in its output folder. */
export const PROBE_METRICS = "probe_metrics.jsonl";

/**
 * Opens the probe's metrics file in `outDir`. A new probe (`resumeStep` 0) starts it afresh; a
 * resumed one drops the rows an interrupted run wrote after its checkpoint's step.
 */
export function probeMetrics(outDir: string, resumeStep: number): MetricsLog {
  Deno.mkdirSync(outDir, { recursive: true });
  return new MetricsLog(join(outDir, PROBE_METRICS), { resumeStep });
}

/** The files a finished probe writes into its output folder. */
export const PROBE_OUTPUTS = ["probe.json", "probe_model.pt"] as const;

/** The checkpoints of the probe writing into `outDir`. */
export function probeCheckpoints(outDir: string, keepLast = 2): CheckpointManager {
  return new CheckpointManager(join(outDir, PROBE_CHECKPOINTS), keepLast);
}

/**
 * Refuses to start a new probe whose output folder holds an earlier probe's results or
 * checkpoints (it would replace them); the error names the file and suggests `--out` or
 * `--resume auto`. Resuming (`resuming`: a checkpoint to continue from was found) is allowed.
 */
export function assertNewProbe(outDir: string, resuming: boolean): void {
  if (resuming) return;
  for (const name of [...PROBE_OUTPUTS, PROBE_CHECKPOINTS]) {
    const path = join(outDir, name);
    if (!existsSync(path)) continue;
    const what = name === PROBE_CHECKPOINTS
      ? "holds an unfinished probe's checkpoints"
      : "already holds an earlier probe's output";
    throw new ConfigError(
      `${path} ${what}, which a new probe would replace; write the new probe elsewhere with ` +
        `--out DIR, or continue that probe with --resume auto`,
    );
  }
}

/** Everything a resumable probe needs. */
export interface ProbeRun {
  /** The probe network (frozen backbone, one head per width), on `device`. */
  net: SlimmableResNet;
  options: ProbeOptions;
  data: ProbeData;
  /** Saved in each checkpoint and checked against the one resumed from. */
  identity: ProbeIdentity;
  /** Where checkpoints go (`probeCheckpoints(outDir, keepLast)`). */
  checkpoints: CheckpointManager;
  /** Checkpoint every this many epochs (fractional allowed); 0: only at the end. */
  ckptEvery: number;
  /** Stop after this many steps with a checkpoint (0: the schedule). */
  maxSteps?: number;
  /** The checkpoint to continue from (`readProbeCheckpoint`). */
  resume?: ProbeCheckpoint;
  /** Only rank 0 writes checkpoints (default true). */
  isMain?: boolean;
  /** The device the network lives on (optimizer state is restored there; default the CPU). */
  device?: Device;
  /** Called after each backward pass (data parallelism averages the heads' gradients here). */
  afterBackward?: () => void;
  /** With several ranks: whether a flag is set on any (a stop signal stops all after one step). */
  anyRank?: (flag: boolean) => boolean;
  /** Called at the end of each epoch with its mean loss. */
  onEpoch?: (epoch: number, loss: number) => void;
  /**
   * Receives a `train` row (step, epoch, loss, lr) every `logEvery` steps and an `epoch` row (mean
   * loss, seconds, images per second) at the end of each epoch (`probeMetrics`).
   */
  metrics?: { write(row: Record<string, unknown>): void };
  /** Steps between `train` rows (default 50). */
  logEvery?: number;
}

/** A probe checkpoint read from `path` and checked against the probe that continues it. */
export interface ProbeCheckpoint {
  path: string;
  record: Record<string, unknown>;
}

/**
 * Reads the checkpoint at `path` and checks that it can continue a probe of `identity` (same
 * backbone, data settings, seed and process count); throws an error naming the files otherwise.
 */
export async function readProbeCheckpoint(
  path: string,
  identity: ProbeIdentity,
): Promise<ProbeCheckpoint> {
  const record = await readCheckpoint(path);
  assertProbeResumable(record, identity, path);
  return { path, record };
}

/** How a probe run ended. */
export interface ProbeRunResult {
  status: "completed" | "interrupted" | "max_steps";
  /** Steps done (of `totalSteps`). */
  step: number;
  totalSteps: number;
  epoch: number;
  /** The newest checkpoint written (or found, when nothing was left to do). */
  checkpoint: string | null;
}

/**
 * Trains (or continues) the heads until the schedule ends, `maxSteps`, or a stop signal; a
 * checkpoint is written every `ckptEvery` epochs and whenever the run ends.
 */
export async function runProbe(run: ProbeRun): Promise<ProbeRunResult> {
  const isMain = run.isMain ?? true;
  // Listen first: a signal during feature extraction stops the run after its first step.
  using signals = new StopSignals({ anyRank: run.anyRank });
  using trainer = new ProbeTrainer(run.net, run.options, run.data, run.afterBackward);
  let step = 0;
  let epochLog = new EpochLog();
  if (run.resume) {
    const { record, path } = run.resume;
    let saved: EpochLogState | null;
    ({ step, epochLog: saved } = loadProbeRecord(
      record,
      run.net,
      trainer.optimizer,
      run.device ?? "cpu",
      path,
    ));
    epochLog = new EpochLog(saved);
  }
  const { stepsPerEpoch, totalSteps } = trainer;
  const lastStep = run.maxSteps ? Math.min(totalSteps, run.maxSteps) : totalSteps;
  const ckptEvery = stepsEvery(run.ckptEvery, stepsPerEpoch);
  const epochAt = (s: number) => s / stepsPerEpoch;
  const logEvery = Math.max(1, run.logEvery ?? 50);
  let checkpoint: string | null = run.resume?.path ?? null;
  const save = async () => {
    if (!isMain) return;
    const record = probeRecord(run.net, trainer.optimizer, run.identity, epochAt(step), epochLog);
    checkpoint = await run.checkpoints.save(Math.floor(epochAt(step)), step, record);
  };

  if (step < lastStep) {
    for (const s of trainer.steps(step)) {
      step = s.step;
      if (step % logEvery === 0) {
        run.metrics?.write({ kind: "train", step, epoch: epochAt(step), loss: s.loss, lr: s.lr });
      }
      const row = addEpochLoss(epochLog, s, trainer);
      if (row !== null) {
        run.metrics?.write(row);
        run.onEpoch?.(s.epoch, row.loss as number);
      }
      if (step >= lastStep) break;
      if (ckptEvery && step % ckptEvery === 0) await save();
      await signals.poll();
      if (signals.stopped) break;
    }
  }
  trainer.assertBackboneUnchanged();
  const status = step >= totalSteps ? "completed" : signals.stopped ? "interrupted" : "max_steps";
  await save();
  return { status, step, totalSteps, epoch: epochAt(step), checkpoint };
}
