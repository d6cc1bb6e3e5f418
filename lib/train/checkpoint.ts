/**
 * Training checkpoints: written atomically (temporary file, fsync, rename) as `torch.save`-
 * compatible files, the last K kept, the newest found again on resume. A checkpoint is a plain
 * record (model, optimizer, schedule position, method state, RNG states, epoch, step, best metric,
 * config); the trainer decides its contents, this module only stores and finds them.
 */
import { join } from "node:path";
import { loadTorchFile, saveTorchFile } from "../serialize/torch_file.ts";
import { isRawTensor, SerializationError } from "../serialize/raw.ts";
import { OrderedDict } from "../serialize/pytypes.ts";
import { fromRaw, toRaw } from "../serialize/tensors.ts";
import type { Optimizer, OptimizerStateDict } from "../optim.ts";
import type { Tensor } from "../tensor.ts";
import type { Device } from "../dtype.ts";
import type { GradScaler } from "../amp.ts";
import type { Module } from "../nn/module.ts";
import { defaultGeneratorState, setDefaultGeneratorState } from "../random.ts";
import { scope } from "../scope.ts";
import type { RawTensor } from "../serialize/raw.ts";

/** Marker and version of slimclr training checkpoints. */
export const CHECKPOINT_FORMAT = "slimclr-checkpoint";
export const CHECKPOINT_VERSION = 1;

const NAME = /^ckpt_e(\d+)_s(\d+)\.pt$/;

/** A checkpoint file found on disk. */
export interface CheckpointFile {
  path: string;
  epoch: number;
  step: number;
}

/** Stores and finds the checkpoints of one run folder. */
export class CheckpointManager {
  constructor(readonly dir: string, readonly keepLast = 3) {
    if (!Number.isInteger(keepLast) || keepLast < 1) {
      throw new RangeError(`keepLast must be a positive integer, got ${keepLast}`);
    }
  }

  /** Checkpoints in the folder, oldest first. */
  list(): CheckpointFile[] {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(this.dir)];
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return [];
      throw e;
    }
    return entries
      .map((e) => ({ e, m: NAME.exec(e.name) }))
      .filter(({ e, m }) => e.isFile && m)
      .map(({ e, m }) => ({
        path: join(this.dir, e.name),
        epoch: Number(m![1]),
        step: Number(m![2]),
      }))
      .sort((a, b) => a.step - b.step || a.epoch - b.epoch);
  }

  /** The newest checkpoint, or null. */
  latest(): CheckpointFile | null {
    const all = this.list();
    return all.length ? all[all.length - 1] : null;
  }

  /**
   * Writes `record` as the checkpoint of (epoch, step) atomically, then removes all but the newest
   * `keepLast`. An existing file of the same name is replaced only by a complete new one.
   */
  async save(epoch: number, step: number, record: Record<string, unknown>): Promise<string> {
    await Deno.mkdir(this.dir, { recursive: true });
    const path = join(this.dir, `ckpt_e${String(epoch).padStart(4, "0")}_s${step}.pt`);
    await saveTorchFile(path, {
      format: CHECKPOINT_FORMAT,
      version: CHECKPOINT_VERSION,
      epoch,
      step,
      ...record,
    });
    const all = this.list();
    for (const old of all.slice(0, Math.max(0, all.length - this.keepLast))) {
      if (old.path !== path) await Deno.remove(old.path).catch(() => {});
    }
    return path;
  }
}

/** Reads a checkpoint record; a damaged or foreign file is an error naming it and the problem. */
export async function readCheckpoint(path: string): Promise<Record<string, unknown>> {
  let tree: unknown;
  try {
    tree = await loadTorchFile(path, { verifyCrc: true });
  } catch (e) {
    throw new SerializationError(`${path}: unreadable checkpoint (${(e as Error).message})`);
  }
  const rec = tree as Record<string, unknown>;
  if (!rec || typeof rec !== "object" || rec.format !== CHECKPOINT_FORMAT) {
    throw new SerializationError(
      `${path}: not a slimclr training checkpoint (no '${CHECKPOINT_FORMAT}' marker)`,
    );
  }
  if (rec.version !== CHECKPOINT_VERSION) {
    throw new SerializationError(
      `${path}: checkpoint version ${rec.version}, this slimclr reads version ${CHECKPOINT_VERSION}`,
    );
  }
  return rec;
}

const isTensor = (v: unknown): v is Tensor =>
  !!v && typeof v === "object" && "ptr" in v && "dtype" in v && "dispose" in v;

function rawTree(value: unknown): unknown {
  if (isTensor(value)) return toRaw(value);
  if (value instanceof Map) return new OrderedDict([...value].map(([k, v]) => [k, rawTree(v)]));
  if (Array.isArray(value)) return value.map(rawTree);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rawTree(v)]));
  }
  return value;
}

function tensorTree(value: unknown): unknown {
  if (isRawTensor(value)) return fromRaw(value);
  if (value instanceof Map) return new Map([...value].map(([k, v]) => [k, tensorTree(v)]));
  if (Array.isArray(value)) return value.map(tensorTree);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, tensorTree(v)]));
  }
  return value;
}

function disposeTree(value: unknown): void {
  if (isTensor(value)) value.dispose();
  else if (value instanceof Map) { for (const v of value.values()) disposeTree(v); }
  else if (Array.isArray(value)) value.forEach(disposeTree);
  else if (value && typeof value === "object") Object.values(value).forEach(disposeTree);
}

/** An optimizer's state as a serialisable record (raw tensors, torch.optim layout). */
export function optimizerRecord(opt: Optimizer<object>): unknown {
  const sd = opt.stateDict();
  try {
    return rawTree(sd);
  } finally {
    disposeTree(sd.state);
  }
}

/**
 * Restores an optimizer from `optimizerRecord`'s output (as read back from a checkpoint); its state
 * tensors go to `device`, where the optimizer's parameters live.
 */
export function loadOptimizerRecord(
  opt: Optimizer<object>,
  record: unknown,
  device: Device = "cpu",
): void {
  const tree = tensorTree(record) as {
    state: Map<number, Record<string, Tensor>> | Record<string, Record<string, Tensor>>;
    param_groups: Record<string, unknown>[];
  };
  const entries = tree.state instanceof Map ? [...tree.state] : Object.entries(tree.state ?? {});
  const state: OptimizerStateDict["state"] = {};
  for (const [k, v] of entries) state[Number(k)] = v;
  try {
    if (device !== "cpu") {
      for (const entry of Object.values(state)) {
        for (const [name, t] of Object.entries(entry)) {
          if (!isTensor(t)) continue;
          entry[name] = t.to(device);
          t.dispose();
        }
      }
    }
    opt.loadStateDict({ state, param_groups: tree.param_groups });
  } finally {
    disposeTree(state);
  }
}

/** The value at a dotted key path of a checkpoint record or config (undefined when missing). */
export function valueAt(obj: unknown, path: string): unknown {
  return path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown>)?.[k], obj);
}

/**
 * The settings a checkpoint's saved config and the resuming config disagree on, each as
 * "KEY is SAVED there, CURRENT here" (empty when they fit).
 */
export function configMismatches(
  saved: unknown,
  current: unknown,
  keys: readonly string[],
  /** Values for keys a checkpoint of an older version lacks (the option did not exist yet). */
  defaults?: unknown,
): string[] {
  const show = (config: unknown, k: string) => JSON.stringify(valueAt(config, k));
  const showSaved = (k: string) =>
    valueAt(saved, k) === undefined && defaults !== undefined ? show(defaults, k) : show(saved, k);
  return keys.filter((k) => showSaved(k) !== show(current, k)).map((k) =>
    `${k} is ${showSaved(k)} there, ${show(current, k)} here`
  );
}

/**
 * The entries every trainer's checkpoint holds besides its model: the optimizer state, the loss
 * scaler (null without one) and the default RNG state, plus `rng` entries of the trainer's own.
 * Call it inside a scope.
 */
export function trainerStateRecord(
  optimizer: Optimizer<object>,
  scaler: GradScaler | null,
  rng: Record<string, RawTensor> = {},
): { optimizer: unknown; scaler: unknown; rng: Record<string, RawTensor> } {
  return {
    optimizer: optimizerRecord(optimizer),
    scaler: scaler?.stateDict() ?? null,
    rng: { default: toRaw(defaultGeneratorState()), ...rng },
  };
}

/** Restores `trainerStateRecord`'s entries: optimizer state onto `device`, scaler, default RNG. */
export function loadTrainerState(
  rec: Record<string, unknown>,
  optimizer: Optimizer<object>,
  device: Device,
  scaler: GradScaler | null,
): void {
  loadOptimizerRecord(optimizer, rec.optimizer, device);
  const rng = rec.rng as { default?: RawTensor } | undefined;
  if (rng?.default) scope(() => setDefaultGeneratorState(fromRaw(rng.default!)));
  if (scaler && rec.scaler) {
    scaler.loadStateDict(rec.scaler as { scale: number; good_steps: number });
  }
}

/** Loads a checkpoint's state dict into `module`; an error names the checkpoint `path`. */
export function loadRawStateDict(
  module: Module,
  state: Map<string, RawTensor>,
  path: string,
  strict = true,
): void {
  scope(() => {
    const tensors = new Map([...state].map(([k, r]) => [String(k), fromRaw(r)]));
    try {
      module.loadStateDict(tensors, strict);
    } catch (e) {
      throw new SerializationError(`${path}: ${(e as Error).message}`);
    }
  });
}

/** Per-width values as a checkpoint stores them (widths as string keys); null stays null. */
export function widthValuesRecord(
  values: Map<number, number> | null,
): Record<string, number> | null {
  return values ? Object.fromEntries([...values].map(([w, a]) => [String(w), a])) : null;
}

/** `widthValuesRecord`'s output read back. */
export function widthValuesOf(record: unknown): Map<number, number> | null {
  if (!record) return null;
  return new Map(Object.entries(record as Record<string, number>).map(([w, a]) => [Number(w), a]));
}
