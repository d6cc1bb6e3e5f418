/**
 * Where a network comes from besides a model file: a run folder (its `model.pt`, else its newest
 * checkpoint) and a pretraining checkpoint (`RUN/checkpoints/ckpt_*.pt`), which holds the
 * contrastive method's whole state dict (query or base encoder, key or momentum encoder, queue,
 * predictor) and the resolved pretraining config the encoder is rebuilt from.
 */
import { existsSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { isRawTensor, type RawTensor, SerializationError } from "../serialize/raw.ts";
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointManager } from "../train/checkpoint.ts";
import type { ResNetArch, Stem } from "./resnet.ts";
import type { SlimmableResNetOptions } from "./slimmable_resnet.ts";

/** A config's `model` section as far as the backbone goes (pretraining and supervised). */
export interface BackboneSettings {
  arch: string;
  stem: string;
  in_channels: number;
  base_width: number;
  widths: readonly number[];
  overlap?: boolean;
  zero_init_residual?: boolean;
  linear_init?: string;
}

/**
 * The network options a config's `model` section describes (the head is the caller's); keys an
 * older saved config lacks take their defaults.
 */
export function backboneOptions(m: BackboneSettings): SlimmableResNetOptions {
  return {
    arch: m.arch as ResNetArch,
    stem: m.stem as Stem,
    inChannels: m.in_channels,
    baseWidth: m.base_width,
    widths: [...m.widths],
    overlap: m.overlap ?? true,
    zeroInitResidual: m.zero_init_residual ?? false,
    linearInit: m.linear_init as "paper" | "default" | undefined,
  };
}

/** The state-dict prefix of the encoder each contrastive method trains (query or base encoder). */
export const ENCODER_PREFIX: Readonly<Record<string, string>> = {
  mocov2: "encoder_q.",
  simclr: "encoder_q.",
  mocov3: "base_encoder.",
};

/**
 * The file a `--model` path means: a file is itself; a folder gives the first of `names` it holds,
 * else the newest checkpoint in its `checkpoints/` folder (or in itself). A missing path or a
 * folder with neither is an error naming it.
 */
export function resolveModelPath(path: string, names: readonly string[] = ["model.pt"]): string {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    throw new SerializationError(`${path}: no such file or folder`);
  }
  if (!isDir) return path;
  for (const name of names) if (existsSync(join(path, name))) return join(path, name);
  const latest = new CheckpointManager(join(path, "checkpoints")).latest() ??
    new CheckpointManager(path).latest();
  if (latest) return latest.path;
  throw new SerializationError(
    `${path} is a folder without ${names.join(" or ")} or a checkpoints/ckpt_*.pt file`,
  );
}

/**
 * The folder a `--model` path writes beside: a folder itself, a file's folder, and for a file in
 * a run's `checkpoints/` folder the run folder.
 */
export function modelHome(path: string): string {
  try {
    if (statSync(path).isDirectory()) return path;
  } catch { /* not there (yet): its folder */ }
  const dir = dirname(path);
  return basename(dir) === "checkpoints" ? dirname(dir) : dir;
}

/** An entry of a loaded torch file's dict (a Map or a plain object); undefined when missing. */
export function entryOf(tree: unknown, key: string): unknown {
  if (tree instanceof Map) return tree.get(key);
  if (tree && typeof tree === "object") return (tree as Record<string, unknown>)[key];
  return undefined;
}

/** The tensors of a loaded state dict (a Map or a plain object), by key; other entries are left out. */
export function rawEntries(tree: unknown): Map<string, RawTensor> {
  const entries = tree instanceof Map
    ? [...tree]
    : Object.entries((tree ?? {}) as Record<string, unknown>);
  return new Map(
    entries.filter(([, v]) => isRawTensor(v)).map(([k, v]) => [String(k), v as RawTensor]),
  );
}

/** Whether a loaded torch file is a slimclr training checkpoint (pretraining or supervised). */
export function isTrainingCheckpoint(tree: unknown): boolean {
  return entryOf(tree, "format") === CHECKPOINT_FORMAT;
}

/**
 * The trained encoder of a pretraining checkpoint record: its network options from the saved
 * config (the head is left to the weights: `inferHead`) and its weights with the method's
 * prefix stripped. Errors name `path` and what is missing.
 */
export function pretrainEncoder(
  path: string,
  record: unknown,
): { options: SlimmableResNetOptions; stateDict: Map<string, RawTensor> } {
  const version = entryOf(record, "version");
  if (version !== CHECKPOINT_VERSION) {
    throw new SerializationError(
      `${path}: checkpoint version ${version}, this slimclr reads version ${CHECKPOINT_VERSION}`,
    );
  }
  const config = entryOf(record, "config");
  const method = entryOf(config, "method");
  const model = entryOf(config, "model");
  if (typeof method !== "string" || !(method in ENCODER_PREFIX) || !model) {
    throw new SerializationError(
      `${path} is a slimclr training checkpoint without a model record or a pretraining config ` +
        `(its config names no contrastive method: ${JSON.stringify(method ?? null)})`,
    );
  }
  const prefix = ENCODER_PREFIX[method];
  const weights = rawEntries(entryOf(record, "model"));
  const stateDict = new Map<string, RawTensor>();
  for (const [k, v] of weights) {
    if (k.startsWith(prefix)) stateDict.set(k.slice(prefix.length), v);
  }
  if (!stateDict.size) {
    const prefixes = [...new Set([...weights.keys()].map((k) => k.split(".")[0]))];
    throw new SerializationError(
      `${path} has no encoder weights: a ${method} checkpoint keeps them as '${prefix}*', ` +
        `this one has ${prefixes.length ? prefixes.map((p) => `'${p}'`).join(", ") : "no keys"}`,
    );
  }
  const options = backboneOptions(
    (model instanceof Map ? Object.fromEntries(model) : model) as BackboneSettings,
  );
  return { options, stateDict };
}
