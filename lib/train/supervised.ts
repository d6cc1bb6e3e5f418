/**
 * The supervised slimmable loop (spec §3.2): every width on every batch, widest first, sub-widths
 * optionally learning by in-place distillation from the full width; per-iteration schedule,
 * mixed precision (bf16 autocast, fp16 with loss scaling), clipping, checkpoints every N epochs and
 * at the end (atomic; the last K kept), exact resume, a clean stop on SIGINT/SIGTERM, JSONL and
 * TensorBoard metrics (per logging step and per epoch), a live progress line and test top-1 per
 * width every N epochs.
 */
import { join } from "node:path";
import { SUPERVISED_SCHEMA, type SupervisedConfig } from "../config/supervised.ts";
import { defaults } from "../config/schema.ts";
import { type AmpSetting, autocast, GradScaler, resolveAmp } from "../amp.ts";
import type { Loader } from "../data/mod.ts";
import type { Device } from "../dtype.ts";
import { modelRecord } from "../models/model_file.ts";
import type { SlimmableResNet } from "../models/slimmable_resnet.ts";
import type { Optimizer } from "../optim.ts";
import { scope } from "../scope.ts";
import { type RawTensor, SerializationError } from "../serialize/raw.ts";
import type { Tensor } from "../tensor.ts";
import {
  CheckpointManager,
  configMismatches,
  loadRawStateDict,
  loadTrainerState,
  readCheckpoint,
  trainerStateRecord,
  valueAt,
  widthValuesOf,
  widthValuesRecord,
} from "./checkpoint.ts";
import { classificationTerms, top1PerWidth } from "./probe.ts";
import { learningRate } from "./schedule.ts";
import { StopSignals } from "./stop_signals.ts";
import { applyGradients, openRunLogs, stepsEvery } from "./loop.ts";
import {
  type BestMetric,
  betterOf,
  EpochLog,
  type EpochLogState,
  epochScalars,
  type LoopEnd,
  type LoopOptions,
} from "./run_metrics.ts";
import type { LabeledSplit } from "./source.ts";

/** Everything a supervised run needs. */
export interface SupervisedRun extends LoopOptions {
  config: SupervisedConfig;
  /** Folder of this run (created; checkpoints, metrics and config go here). */
  runDir: string;
  /** The slimmable classifier, already on `device`. */
  net: SlimmableResNet;
  optimizer: Optimizer<object>;
  /** Training batches (one view and labels), on `device`. */
  loader: Loader;
  /** Test split for top-1 per width (in host memory); no evaluation without it. */
  test?: LabeledSplit;
  /** Processes that train together (for images/s; default 1). */
  worldSize?: number;
}

/** How a run ended. */
export interface SupervisedResult extends LoopEnd {
  /** Test top-1 (0–1) per width at the last evaluation. */
  top1: Map<number, number> | null;
}

/** Settings (and the class count) a checkpoint must share with the run that resumes it. */
const RESUME_KEYS = [
  "model.arch",
  "model.stem",
  "model.in_channels",
  "model.base_width",
  "model.widths",
  "model.head",
  "data.dataset",
  "data.subset",
  "data.batch_size",
  "run.seed",
] as const;

/** What a restored run continues with. */
interface Resumed {
  step: number;
  top1: Map<number, number> | null;
  best: BestMetric | null;
  /** The sums of the epoch in progress. */
  epochLog: EpochLogState | null;
}

/**
 * Why checkpoint record `rec` cannot continue `run` (empty when it can): not a supervised
 * checkpoint, or a model of another shape or class count.
 */
export function resumeMismatch(rec: Record<string, unknown>, run: SupervisedRun): string[] {
  if (rec.task !== "supervised") {
    const method = valueAt(rec, "config.method");
    return [
      `not a supervised checkpoint (${
        method ? `it holds a '${method}' pretraining run` : "no 'task: supervised' entry"
      })`,
    ];
  }
  const out = configMismatches(rec.config, run.config, RESUME_KEYS, defaults(SUPERVISED_SCHEMA));
  const classes = valueAt(rec, "model.config.numClasses");
  if (classes !== run.net.slimOptions.numClasses) {
    out.push(`the classifier has ${classes} classes there, ${run.net.slimOptions.numClasses} here`);
  }
  return out;
}

/** Loads a checkpoint into the run after checking it fits; nothing is written. */
async function restore(
  run: SupervisedRun,
  path: string,
  scaler: GradScaler | null,
): Promise<Resumed> {
  const rec = await readCheckpoint(path);
  const problems = resumeMismatch(rec, run);
  if (problems.length) {
    throw new SerializationError(
      `${path}: the checkpoint does not fit this run: ${problems.join("; ")}`,
    );
  }
  loadRawStateDict(run.net, valueAt(rec, "model.state_dict") as Map<string, RawTensor>, path);
  loadTrainerState(rec, run.optimizer, run.device ?? "cpu", scaler);
  const top1 = widthValuesOf(rec.top1);
  return {
    step: Number(rec.step),
    top1,
    best: (rec.best as BestMetric | undefined) ?? null,
    epochLog: (rec.epoch_log as EpochLogState | undefined) ?? null,
  };
}

/** Runs (or continues) supervised training until the schedule ends, `max_steps`, or a signal. */
export async function runSupervised(run: SupervisedRun): Promise<SupervisedResult> {
  const c = run.config;
  const { net, optimizer, loader } = run;
  const isMain = run.isMain ?? true;
  const device: Device = run.device ?? "cpu";
  const started = performance.now();
  const perEpoch = loader.batchesPerEpoch;
  if (perEpoch < 1) {
    throw new RangeError(
      `an epoch has no complete batch of ${loader.batchSize}; lower 'data.batch_size'`,
    );
  }
  const totalSteps = Math.max(1, Math.ceil(c.schedule.epochs * perEpoch));
  const lastStep = c.run.max_steps ? Math.min(totalSteps, c.run.max_steps) : totalSteps;
  const ckpts = new CheckpointManager(join(run.runDir, "checkpoints"), c.run.keep_last);
  const amp = resolveAmp(c.run.amp as AmpSetting, device);
  const scaler = amp === "fp16" ? new GradScaler() : null;

  // Restore first: a checkpoint that does not fit stops the run before any file is written.
  const resumeFrom = run.resume === "auto" ? ckpts.latest()?.path : run.resume;
  let { step, top1, best, epochLog: epochLogState } = resumeFrom
    ? await restore(run, resumeFrom, scaler)
    : { step: 0, top1: null, best: null, epochLog: null } as Resumed;
  const epochLog = new EpochLog(epochLogState);
  // Any resume, even one that found no checkpoint (step 0), replaces what a killed run logged
  // after the step it continues from.
  const logs = await openRunLogs(run.runDir, c, {
    isMain,
    progress: run.progress ?? true,
    lastStep,
    resumeStep: run.resume ? step : undefined,
  });
  const { metrics, tb, progress } = logs;

  const ddp = run.ddp?.active ? run.ddp : null;
  const signals = new StopSignals({ anyRank: ddp ? (flag) => ddp.anyRank(flag) : undefined });

  const epochAt = (s: number) => s / perEpoch;
  const ckptEvery = stepsEvery(c.run.ckpt_every, perEpoch);
  const evalEvery = stepsEvery(c.run.eval_every, perEpoch);
  const imagesPerStep = loader.batchSize * (run.worldSize ?? 1);
  const params = net.parameters();
  let checkpoint: string | null = ckpts.latest()?.path ?? null;
  let status: SupervisedResult["status"] = "completed";

  const saveCheckpoint = async () => {
    if (!isMain) return;
    const record = scope(() => ({
      task: "supervised",
      config: c,
      model: modelRecord(net),
      ...trainerStateRecord(optimizer, scaler),
      fractional_epoch: epochAt(step),
      epoch_log: epochLog.state(),
      top1: widthValuesRecord(top1),
      best,
    }));
    checkpoint = await ckpts.save(Math.floor(epochAt(step)), step, record);
  };
  const evaluate = () => {
    if (!run.test) return;
    top1 = top1PerWidth(net, run.test);
    const full = top1.get(net.widths[0])!;
    best = betterOf(best, `top1/w${net.widths[0]}`, full, step);
    const values = Object.fromEntries([...top1].map(([w, a]) => [`top1/w${w}`, a * 100]));
    metrics?.write({ kind: "eval", step, epoch: epochAt(step), ...values });
    tb?.scalars(step, values);
  };
  /** One optimizer step on a batch; returns the total loss and, when asked, each width's. */
  const trainStep = (x: Tensor, y: Tensor, perWidth: boolean) =>
    scope(() => {
      run.ddp?.syncBuffers();
      const labels = device === "cpu" ? y : y.to(device);
      const losses = () => {
        const logits = net.widths.map((w) => net.withWidth(w, () => net.forward(x)));
        return classificationTerms(logits, labels, {
          inplaceDistill: c.model.inplace_distill,
          mixed: false,
        });
      };
      const terms = amp === "none"
        ? losses()
        : autocast(device, amp === "bf16" ? "bfloat16" : "float16", losses);
      const loss = terms.reduce((a, b) => a.add(b));
      optimizer.zeroGrad();
      (scaler ? scaler.scaleLoss(loss) : loss).backward();
      run.ddp?.allReduceGradients();
      applyGradients(optimizer, params, scaler, c.optim.clip_grad);
      return { loss: loss.item(), widths: perWidth ? terms.map((t) => t.item()) : [] };
    });

  try {
    net.train();
    while (step < lastStep && !signals.stopped) {
      const e = Math.floor(step / perEpoch);
      for (const batch of loader.epoch(e, { skip: step - e * perEpoch })) {
        const lr = learningRate({
          lr: c.optim.lr,
          totalSteps,
          warmupSteps: Math.round(c.schedule.warmup_epochs * perEpoch),
          kind: c.schedule.decay as "cosine" | "step",
          milestones: c.schedule.milestones,
          stepsPerEpoch: perEpoch,
        }, step);
        optimizer.setLr(lr);
        const log = (step + 1) % c.run.log_every === 0 || step + 1 === lastStep;
        let out: { loss: number; widths: number[] };
        try {
          out = trainStep(batch.views[0], batch.labels, log);
        } finally {
          batch.dispose();
        }
        step++;
        if (!Number.isFinite(out.loss) && !scaler) {
          throw new Error(
            `the loss became ${out.loss} at step ${step}; lower 'optim.lr' or check the data`,
          );
        }
        epochLog.add({ loss: out.loss, lr }, imagesPerStep);
        if (log) {
          const scalars: Record<string, number> = { loss: out.loss, lr };
          net.widths.forEach((w, i) => scalars[`loss/w${w}`] = out.widths[i]);
          if (scaler) scalars.loss_scale = scaler.scale;
          metrics?.write({
            kind: "train",
            step,
            epoch: epochAt(step),
            ...scalars,
            data_wait_s: loader.totalWaitMs / 1000,
          });
          tb?.scalars(step, scalars);
        }
        progress?.update(step, epochAt(step), { loss: out.loss, lr }, step * imagesPerStep);
        if (step % perEpoch === 0 || step === totalSteps) {
          const row = epochLog.take(epochAt(step), step);
          metrics?.write(row);
          tb?.scalars(step, epochScalars(row));
        }
        if (evalEvery && step % evalEvery === 0 && step < lastStep) evaluate();
        if (ckptEvery && step % ckptEvery === 0 && step < lastStep) await saveCheckpoint();
        await signals.poll();
        if (signals.stopped || step >= lastStep) break;
      }
    }
    if (signals.stopped) status = "interrupted";
    else if (step < totalSteps) status = "max_steps";
    if (status === "completed") evaluate();
    await saveCheckpoint();
  } finally {
    signals[Symbol.dispose]();
    logs.close();
  }
  return {
    status,
    step,
    epoch: epochAt(step),
    top1,
    best,
    checkpoint,
    wallSeconds: (performance.now() - started) / 1000,
  };
}
