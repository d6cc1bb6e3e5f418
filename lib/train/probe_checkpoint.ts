/**
 * What a linear-probe checkpoint holds and how one is checked and loaded: the heads' weights only
 * (the frozen backbone comes from `--model` and is identified by a fingerprint), the optimizer
 * state, the position in the schedule, the running loss of the epoch in progress, the default RNG
 * state, the resolved config and the pretrained model's path.
 */
import { createHash } from "node:crypto";
import type { Device } from "../dtype.ts";
import type { SlimmableResNet } from "../models/slimmable_resnet.ts";
import type { Optimizer } from "../optim.ts";
import { scope } from "../scope.ts";
import { OrderedDict } from "../serialize/pytypes.ts";
import { type RawTensor, SerializationError } from "../serialize/raw.ts";
import { toRaw } from "../serialize/tensors.ts";
import {
  configMismatches,
  loadRawStateDict,
  loadTrainerState,
  trainerStateRecord,
  valueAt,
} from "./checkpoint.ts";
import type { EpochLog, EpochLogState } from "./run_metrics.ts";

/** The `task` entry of probe checkpoints. */
export const PROBE_TASK = "probe";

/** The frozen backbone a probe trains on, and the settings a checkpoint must share to resume. */
export interface ProbeIdentity {
  /** The resolved config (saved whole; its data and seed settings must match on resume). */
  config: object;
  /** The pretrained model file the backbone was read from. */
  model: string;
  /** `backboneFingerprint` of that backbone. */
  fingerprint: string;
  /** Processes training together (each sees its shard: the batches depend on it). */
  worldSize: number;
}

/** Settings a probe checkpoint must share with the run that resumes it (they fix the batches). */
export const PROBE_RESUME_KEYS = [
  "data.dataset",
  "data.recipe",
  "data.crop_min",
  "data.jitter",
  "data.image_size",
  "data.batch_size",
  "data.subset",
  "probe.cache_features",
  "run.seed",
] as const;

const isHead = (k: string) => k.startsWith("fc.");

/**
 * SHA-256 (hex) of every state entry of `net` outside the heads (`fc.*`): names, dtypes, shapes and
 * bytes, in state-dict order. Equal fingerprints mean the same frozen backbone, bit for bit.
 */
export function backboneFingerprint(net: SlimmableResNet): string {
  const hash = createHash("sha256");
  for (const [k, t] of net.stateDict()) {
    if (isHead(k)) continue;
    hash.update(`${k}:${t.dtype}:[${t.shape}];`);
    hash.update(t.toBytes());
  }
  return hash.digest("hex");
}

/** The checkpoint record of a probe at `step` (the manager adds the epoch and step). */
export function probeRecord(
  net: SlimmableResNet,
  optimizer: Optimizer<object>,
  id: ProbeIdentity,
  fractionalEpoch: number,
  epochLog: EpochLog,
): Record<string, unknown> {
  return scope(() => ({
    task: PROBE_TASK,
    config: id.config,
    heads: new OrderedDict(
      [...net.stateDict()].filter(([k]) => isHead(k)).map(([k, t]) => [k, toRaw(t)]),
    ),
    ...trainerStateRecord(optimizer, null),
    backbone: { model: id.model, sha256: id.fingerprint },
    world_size: id.worldSize,
    fractional_epoch: fractionalEpoch,
    epoch_log: epochLog.state(),
  }));
}

/**
 * Throws unless checkpoint record `rec` (read from `path`) can continue a probe of `id`: it must be
 * a probe checkpoint, of the same backbone (else the error names the checkpoint's model file and
 * this one), with the same data settings, seed and process count.
 */
export function assertProbeResumable(
  rec: Record<string, unknown>,
  id: ProbeIdentity,
  path: string,
): void {
  if (rec.task !== PROBE_TASK) {
    const what = typeof rec.task === "string"
      ? `a '${rec.task}' checkpoint`
      : valueAt(rec, "config.method")
      ? `a '${valueAt(rec, "config.method")}' pretraining checkpoint`
      : "no 'task: probe' entry";
    throw new SerializationError(`${path}: not a probe checkpoint (${what})`);
  }
  const backbone = rec.backbone as { model?: string; sha256?: string } | undefined;
  if (backbone?.sha256 !== id.fingerprint) {
    throw new SerializationError(
      `${path}: the checkpoint's probe was trained on the backbone of ${backbone?.model} ` +
        `(sha256 ${
          String(backbone?.sha256).slice(0, 12)
        }…), but --model ${id.model} holds another ` +
        `backbone (sha256 ${
          id.fingerprint.slice(0, 12)
        }…); resume with --model ${backbone?.model}, ` +
        `or start a new probe with another --out`,
    );
  }
  const problems = configMismatches(rec.config, id.config, PROBE_RESUME_KEYS);
  if (rec.world_size !== id.worldSize) {
    problems.push(`it ran on ${rec.world_size} process(es), this probe on ${id.worldSize}`);
  }
  if (problems.length) {
    throw new SerializationError(
      `${path}: the checkpoint does not fit this probe: ${problems.join("; ")}`,
    );
  }
}

/** Where a restored probe continues. */
export interface ProbeResumePoint {
  step: number;
  /** The sums of the epoch in progress. */
  epochLog: EpochLogState | null;
}

/**
 * Loads a checked record's heads into `net`, its optimizer state into `optimizer` (on `device`)
 * and its default RNG state; returns the step and the epoch sums to continue from.
 */
export function loadProbeRecord(
  rec: Record<string, unknown>,
  net: SlimmableResNet,
  optimizer: Optimizer<object>,
  device: Device,
  path: string,
): ProbeResumePoint {
  const heads = rec.heads as Map<string, RawTensor> | undefined;
  const saved = new Map([...(heads ?? [])].map(([k, r]) => [String(k), r]));
  const expected = [...net.stateDict().keys()].filter(isHead);
  const missing = expected.filter((k) => !saved.has(k));
  const foreign = [...saved.keys()].filter((k) => !isHead(k) || !expected.includes(k));
  if (missing.length || foreign.length) {
    throw new SerializationError(
      `${path}: the checkpoint's heads do not fit this probe network (` +
        [
          missing.length ? `missing ${missing.join(", ")}` : "",
          foreign.length ? `unexpected ${foreign.join(", ")}` : "",
        ].filter(Boolean).join("; ") + ")",
    );
  }
  loadRawStateDict(net, saved, path, false);
  loadTrainerState(rec, optimizer, device, null);
  return {
    step: Number(rec.step),
    epochLog: (rec.epoch_log as EpochLogState | undefined) ?? null,
  };
}
