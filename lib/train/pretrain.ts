/**
 * The pretraining loop: per-iteration schedule (warm-up, cosine or step, the slow start's optional
 * LR reset), correct gradient accumulation, clipping, checkpoints every N epochs and at the end
 * (atomic; the last K kept), exact resume, a clean stop on SIGINT/SIGTERM, JSONL and TensorBoard
 * metrics, a live progress line and a per-epoch kNN monitor per width.
 */
import { join } from "node:path";
import { PRETRAIN_SCHEMA, type PretrainConfig } from "../config/pretrain.ts";
import { defaults } from "../config/schema.ts";
import { SerializationError } from "../serialize/raw.ts";
import { OrderedDict } from "../serialize/pytypes.ts";
import { fromRaw, toRaw } from "../serialize/tensors.ts";
import type { RawTensor } from "../serialize/raw.ts";
import type { Optimizer } from "../optim.ts";
import { type AmpSetting, autocast, GradScaler, resolveAmp } from "../amp.ts";
import type { Device } from "../dtype.ts";
import { cuda } from "../device.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import type { SlimSSLMethod, StepMetrics } from "../ssl/mod.ts";
import {
  CheckpointManager,
  configMismatches,
  loadRawStateDict,
  loadTrainerState,
  readCheckpoint,
  trainerStateRecord,
  widthValuesOf,
  widthValuesRecord,
} from "./checkpoint.ts";
import { learningRate } from "./schedule.ts";
import { StopSignals } from "./stop_signals.ts";
import { applyGradients, openRunLogs, stepsEvery } from "./loop.ts";
import { WeightEma } from "./weight_ema.ts";
import {
  type BestMetric,
  betterOf,
  EpochLog,
  type EpochLogState,
  epochScalars,
  type LoopEnd,
  type LoopOptions,
} from "./run_metrics.ts";
import type { LabeledSplit, TwoViewSource } from "./source.ts";
import { knnPerWidthOn } from "./monitor.ts";
import { recalibrateBatchNorm, withRecalibratedBatchNorm } from "../eval/bn_recalibration.ts";

/** Everything a pretraining run needs. */
export interface PretrainRun extends LoopOptions {
  config: PretrainConfig;
  /** Folder of this run (created; checkpoints, metrics, config and summary go here). */
  runDir: string;
  method: SlimSSLMethod;
  optimizer: Optimizer<object>;
  source: TwoViewSource;
  /**
   * kNN data: the bank, the test queries (the final evaluation; also the monitor's without
   * `holdout`) and the held-out training images the monitor queries instead. No kNN without it.
   */
  knn?: { train: LabeledSplit; test: LabeledSplit; holdout?: LabeledSplit | null };
}

/** How a run ended, with its last metrics. */
export interface PretrainResult extends LoopEnd {
  /** kNN top-1 (0–1) per width at the last evaluation. */
  knn: Map<number, number> | null;
  lastMetrics: StepMetrics | null;
  dataWaitSeconds: number;
}

/** Settings a checkpoint must share with the config that resumes it. */
const RESUME_KEYS = [
  "method",
  "model.arch",
  "model.stem",
  "model.in_channels",
  "model.base_width",
  "model.widths",
  "model.overlap",
  "ssl.dim",
  "ssl.queue",
  "ssl.mlp_dim",
  "data.dataset",
  "data.subset",
  "data.batch_size",
  "optim.name",
  "optim.grad_accum",
  "run.seed",
  "run.knn_holdout",
] as const;

/** Loads a checkpoint into the run, checking it fits; returns the step to continue from. */
async function restore(
  run: PretrainRun,
  path: string,
  scaler: GradScaler | null,
): Promise<{
  step: number;
  knn: Map<number, number> | null;
  best: BestMetric | null;
  epochLog: EpochLogState | null;
  weightEma: { updates: number; tensors: RawTensor[] } | null;
}> {
  const rec = await readCheckpoint(path);
  if (rec.task === "supervised") {
    throw new SerializationError(
      `${path}: a supervised checkpoint; pretraining resumes from its own run's checkpoints`,
    );
  }
  const mismatched = configMismatches(
    rec.config,
    run.config,
    RESUME_KEYS,
    defaults(PRETRAIN_SCHEMA),
  );
  if (mismatched.length) {
    throw new SerializationError(
      `${path}: the checkpoint does not fit this config: ${mismatched.join("; ")}`,
    );
  }
  loadRawStateDict(run.method, rec.model as Map<string, RawTensor>, path);
  loadTrainerState(rec, run.optimizer, run.device ?? "cpu", scaler);
  const rng = rec.rng as { method?: RawTensor } | undefined;
  if (rng?.method && run.method.generator) {
    const generator = run.method.generator;
    scope(() => generator.setState(fromRaw(rng.method!)));
  }
  const knn = widthValuesOf(rec.knn);
  return {
    step: Number(rec.step),
    knn,
    best: (rec.best as BestMetric | undefined) ?? null,
    epochLog: (rec.epoch_log as EpochLogState | undefined) ?? null,
    weightEma: (rec.weight_ema as { updates: number; tensors: RawTensor[] } | undefined) ?? null,
  };
}

function checkpointRecord(
  run: PretrainRun,
  epoch: number,
  knn: Map<number, number> | null,
  best: BestMetric | null,
  epochLog: EpochLog,
  ema: WeightEma | null,
  scaler: GradScaler | null,
) {
  return scope(() => ({
    config: run.config,
    model: new OrderedDict([...run.method.stateDict()].map(([k, t]) => [k, toRaw(t)])),
    ...trainerStateRecord(
      run.optimizer,
      scaler,
      run.method.generator ? { method: toRaw(run.method.generator.getState()) } : {},
    ),
    fractional_epoch: epoch,
    knn: widthValuesRecord(knn),
    best,
    epoch_log: epochLog.state(),
    weight_ema: ema ? { updates: ema.updates, tensors: ema.averages.map((t) => toRaw(t)) } : null,
  }));
}

/** CUDA allocator statistics (MiB) for the metrics of a CUDA run; nothing on the CPU. */
function cudaMemory(device: Device): Record<string, number> {
  if (!device.startsWith("cuda")) return {};
  const index = device === "cuda" ? 0 : Number(device.split(":")[1]);
  const m = cuda.memoryStats(index);
  const mib = (b: number) => Number((b / 2 ** 20).toFixed(1));
  return {
    cuda_allocated_mib: mib(m.allocated),
    cuda_reserved_mib: mib(m.reserved),
    cuda_peak_allocated_mib: mib(m.peakAllocated),
  };
}

/** Flattens step metrics into named scalars (`loss`, `loss/w0.5`, `distill/w0.5`, `top1/w1`, …). */
export function scalarMetrics(m: StepMetrics, lr: number): Record<string, number> {
  const out: Record<string, number> = { loss: m.loss, lr };
  if (m.momentum !== null) out.momentum = m.momentum;
  for (const w of m.widths) {
    out[`loss/w${w.width}`] = w.loss;
    out[`contrastive/w${w.width}`] = w.contrastive;
    if (w.distill !== null) out[`distill/w${w.width}`] = w.distill;
    out[`top1/w${w.width}`] = w.top1;
  }
  if (m.grad) {
    const g = m.grad as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(g)) {
      if (Array.isArray(v)) {
        v.forEach((x, i) => typeof x === "number" && (out[`grad/${k}/${i}`] = x));
      }
    }
  }
  return out;
}

/** Runs (or continues) pretraining until the schedule ends, `max_steps`, or a stop signal. */
export async function runPretrain(run: PretrainRun): Promise<PretrainResult> {
  const c = run.config;
  const isMain = run.isMain ?? true;
  const started = performance.now();
  const accum = c.optim.grad_accum;
  const stepsPerEpoch = Math.floor(run.source.stepsPerEpoch / accum);
  if (stepsPerEpoch < 1) {
    throw new RangeError(
      `an epoch has ${run.source.stepsPerEpoch} batches, fewer than 'optim.grad_accum' (${accum})`,
    );
  }
  const totalSteps = Math.max(1, Math.ceil(c.schedule.epochs * stepsPerEpoch));
  const lastStep = c.run.max_steps ? Math.min(totalSteps, c.run.max_steps) : totalSteps;
  const ckpts = new CheckpointManager(join(run.runDir, "checkpoints"), c.run.keep_last);

  const device: Device = run.device ?? "cpu";
  const amp = resolveAmp(c.run.amp as AmpSetting, device);
  const scaler = amp === "fp16" ? new GradScaler() : null;
  let step = 0;
  let knn: Map<number, number> | null = null;
  let best: BestMetric | null = null;
  let epochLogState: EpochLogState | null = null;
  let savedEma: { updates: number; tensors: RawTensor[] } | null = null;
  const resumeFrom = run.resume === "auto" ? ckpts.latest()?.path : run.resume;
  if (resumeFrom) {
    ({ step, knn, best, epochLog: epochLogState, weightEma: savedEma } = await restore(
      run,
      resumeFrom,
      scaler,
    ));
  }
  // The average starts from the (restored) weights; a checkpoint that kept one continues it.
  const ema = c.run.weight_ema > 0
    ? new WeightEma(run.method.encoder.parameters(), c.run.weight_ema)
    : null;
  if (ema && savedEma) {
    const { updates, tensors } = savedEma;
    try {
      scope(() => ema.load({ updates, tensors: tensors.map(fromRaw) }));
    } catch (e) {
      ema[Symbol.dispose]();
      throw new SerializationError(`${resumeFrom}: ${(e as Error).message}`);
    }
  }
  // Any resume, even one that found no checkpoint (step 0), replaces what a killed run logged
  // after the step it continues from.
  const logs = await openRunLogs(run.runDir, c, {
    isMain,
    progress: run.progress ?? true,
    lastStep,
    resumeStep: run.resume ? step : undefined,
  });
  const { metrics, tb, progress } = logs;
  const epochLog = new EpochLog(epochLogState);

  const ddp = run.ddp?.active ? run.ddp : null;
  const signals = new StopSignals({ anyRank: ddp ? (flag) => ddp.anyRank(flag) : undefined });

  const epochAt = (s: number) => s / stepsPerEpoch;
  const ckptEvery = stepsEvery(c.run.ckpt_every, stepsPerEpoch);
  const knnEvery = stepsEvery(c.run.knn_every, stepsPerEpoch);
  let lastMetrics: StepMetrics | null = null;
  let checkpoint: string | null = ckpts.latest()?.path ?? null;
  let status: PretrainResult["status"] = "completed";
  const params = run.method.trainableParameters();
  const forward = (a: Tensor, b: Tensor, ctx: { epoch: number; step: number }) =>
    amp === "none"
      ? run.method.trainingStep(a, b, ctx)
      : autocast(device, amp === "bf16" ? "bfloat16" : "float16", () =>
        run.method.trainingStep(a, b, ctx));
  const saveCheckpoint = async () => {
    if (!isMain) return;
    checkpoint = await ckpts.save(
      Math.floor(epochAt(step)),
      step,
      checkpointRecord(run, epochAt(step), knn, best, epochLog, ema, scaler),
    );
  };
  /** The `epoch` row of the steps since the last one. */
  const writeEpochRow = () => {
    const row = epochLog.take(epochAt(step), step);
    metrics?.write(row);
    tb?.scalars(step, epochScalars(row));
  };
  /**
   * kNN per width on the monitor's queries (the held-out images, else the test split), and at the
   * end (`final`) on the test split too; `final` keeps recalibrated BatchNorm statistics in the
   * model. The monitor's widest width sets `best`; the test split's result is `knn`.
   */
  const evaluate = (final: boolean) => {
    if (!run.knn) return;
    const { train, test, holdout } = run.knn;
    const encoder = run.method.encoder;
    const splits: [string, LabeledSplit][] = holdout
      ? [["holdout", holdout], ...(final ? [["test", test] as [string, LabeledSplit]] : [])]
      : [["test", test]];
    const measure = () =>
      knnPerWidthOn(encoder, train, splits.map(([, q]) => q), { k: c.run.knn_k, t: c.run.knn_t });
    const recal = { samples: c.run.bn_recalibrate };
    // The finished model is the weight average, when one is kept.
    if (final) ema?.copyTo();
    let results: Map<number, number>[];
    if (!recal.samples) results = measure();
    else if (final) {
      recalibrateBatchNorm(encoder, train.images, recal);
      results = measure();
    } else results = withRecalibratedBatchNorm(encoder, train.images, recal, measure);
    // Evaluation batches differ in shape from training ones: hand their blocks back.
    if (device.startsWith("cuda")) cuda.emptyCache();
    splits.forEach(([split], i) => {
      const acc = results[i];
      const prefix = split === "test" ? "knn" : `knn_${split}`;
      if (i === 0) {
        const widest = Math.max(...acc.keys());
        best = betterOf(best, `${prefix}/w${widest}`, acc.get(widest)!, step);
      }
      if (split === "test") knn = acc;
      const values = Object.fromEntries([...acc].map(([w, a]) => [`${prefix}/w${w}`, a * 100]));
      metrics?.write({ kind: "eval", split, step, epoch: epochAt(step), ...values });
      tb?.scalars(step, values);
    });
  };

  try {
    let epoch = -1;
    run.method.train();
    while (step < lastStep && !signals.stopped) {
      const e = Math.floor(step / stepsPerEpoch);
      if (e !== epoch) {
        epoch = e;
        run.source.startEpoch(e, (step - e * stepsPerEpoch) * accum);
      }
      const frac = epochAt(step);
      const lr = learningRate({
        lr: run.method.baseLr(c.optim.lr, frac),
        totalSteps,
        warmupSteps: Math.round(c.schedule.warmup_epochs * stepsPerEpoch),
        kind: c.schedule.decay as "cosine" | "step",
        milestones: c.schedule.milestones,
        stepsPerEpoch,
      }, step);
      run.optimizer.setLr(lr);
      run.optimizer.zeroGrad();
      let stepMetrics: StepMetrics | null = null;
      for (let micro = 0; micro < accum; micro++) {
        if (run.ddp?.active) run.ddp.syncBuffers();
        const views = await run.source.next();
        if (!views) throw new Error(`the data source ended early in epoch ${e} (step ${step})`);
        try {
          stepMetrics = scope(() => {
            const { loss, metrics } = forward(views.a, views.b, { epoch: frac, step });
            const l = accum > 1 ? loss.div(accum) : loss;
            (scaler ? scaler.scaleLoss(l) : l).backward();
            return metrics;
          });
        } finally {
          views.a.dispose();
          views.b.dispose();
        }
      }
      if (run.ddp?.active) run.ddp.allReduceGradients();
      applyGradients(run.optimizer, params, scaler, c.optim.clip_grad);
      run.method.afterOptimizerStep({ epoch: frac, step });
      ema?.update();
      step++;
      lastMetrics = stepMetrics;
      if (stepMetrics && !Number.isFinite(stepMetrics.loss) && !scaler) {
        throw new Error(
          `the loss became ${stepMetrics.loss} at step ${step}; lower 'optim.lr' or check the data`,
        );
      }
      const scalars = scalarMetrics(stepMetrics!, lr);
      if (step % c.run.log_every === 0 || step === lastStep) {
        metrics?.write({
          kind: "train",
          step,
          epoch: epochAt(step),
          ...scalars,
          data_wait_s: run.source.waitSeconds,
          // fp16: the loss scale, and whether this step was skipped for inf/NaN gradients
          ...(scaler ? { loss_scale: scaler.scale, step_skipped: scaler.skipped } : {}),
          ...cudaMemory(device),
        });
        tb?.scalars(step, scalars);
      }
      epochLog.add(scalars, accum * run.source.batchSize);
      if (step % stepsPerEpoch === 0) writeEpochRow();
      const shown: Record<string, number> = { lr };
      for (const w of stepMetrics!.widths) shown[`w${w.width}`] = w.loss;
      progress?.update(step, epochAt(step), shown, step * accum * run.source.batchSize);
      if (knnEvery && step % knnEvery === 0 && step < lastStep) evaluate(false);
      if (ckptEvery && step % ckptEvery === 0 && step < lastStep) await saveCheckpoint();
      await signals.poll();
    }
    if (signals.stopped) status = "interrupted";
    else if (step < totalSteps) status = "max_steps";
    // A fractional last epoch gets its row; a stopped run's epoch continues after a resume.
    if (status === "completed" && epochLog.steps) writeEpochRow();
    if (status === "completed") evaluate(true);
    await saveCheckpoint();
  } finally {
    signals[Symbol.dispose]();
    ema?.[Symbol.dispose]();
    logs.close();
  }
  return {
    status,
    step,
    epoch: epochAt(step),
    knn,
    best,
    lastMetrics,
    checkpoint,
    dataWaitSeconds: run.source.waitSeconds,
    wallSeconds: (performance.now() - started) / 1000,
  };
}
