/**
 * The paper's released checkpoints (spec §2.3): key mapping from the reference layout
 * (`module.encoder_q.features.{k}.conv1.weight`, `…shortcut.1.bn.{i}…`) to slimclr's
 * torchvision-style names (`layer{s}.{b}.conv1.weight`, `…downsample.1.bn.{i}…`), and loading.
 */
import type { RawTensor } from "../serialize/raw.ts";
import { SerializationError } from "../serialize/raw.ts";
import { fromRaw, loadRawStateDict } from "../serialize/tensors.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import type { Module } from "../nn/module.ts";
import { RESNET_DEPTHS, type ResNetArch } from "./resnet.ts";

/** Prefixes of the parts of an official checkpoint. */
export const OFFICIAL_PARTS = {
  /** MoCo v2 / SimCLR query encoder. */
  encoder_q: "module.encoder_q.",
  /** MoCo v2 key encoder. */
  encoder_k: "module.encoder_k.",
  /** MoCo v3 base encoder (with the projector as `fc`). */
  base_encoder: "module.base_encoder.",
  /** MoCo v3 momentum encoder. */
  momentum_encoder: "module.momentum_encoder.",
  /** MoCo v3 predictor. */
  predictor: "module.predictor.",
  /** A linear-probe or supervised checkpoint (the network itself). */
  network: "module.",
} as const;

/** A part of an official checkpoint. */
export type OfficialPart = keyof typeof OFFICIAL_PARTS;

/** Maps `features.{k}` to `layer{s}.{b}` for an architecture. */
function blockIndex(arch: ResNetArch): Map<number, string> {
  const out = new Map<number, string>();
  let k = 0;
  RESNET_DEPTHS[arch].layers.forEach((n, s) => {
    for (let b = 0; b < n; b++) out.set(k++, `layer${s + 1}.${b}`);
  });
  return out;
}

/**
 * Our name for a key of the reference layout (prefix already stripped), or an error naming it.
 * `features.{k}` → `layer{s}.{b}`, `shortcut` → `downsample`; everything else is unchanged.
 */
export function officialKeyToOurs(key: string, arch: ResNetArch = "resnet50"): string {
  const m = /^features\.(\d+)\.(.*)$/.exec(key);
  if (!m) return key;
  const block = blockIndex(arch).get(Number(m[1]));
  if (!block) {
    throw new SerializationError(
      `checkpoint key '${key}': block ${m[1]} does not exist in ${arch} ` +
        `(${[...blockIndex(arch).keys()].length} blocks)`,
    );
  }
  return `${block}.${m[2].replace(/^shortcut\./, "downsample.")}`;
}

/** The reference key for one of our names (the inverse of `officialKeyToOurs`). */
export function oursToOfficialKey(name: string, arch: ResNetArch = "resnet50"): string {
  const m = /^layer(\d)\.(\d+)\.(.*)$/.exec(name);
  if (!m) return name;
  const { layers } = RESNET_DEPTHS[arch];
  const k = layers.slice(0, Number(m[1]) - 1).reduce((a, b) => a + b, 0) + Number(m[2]);
  return `features.${k}.${m[3].replace(/^downsample\./, "shortcut.")}`;
}

/**
 * Picks one part of an official state dict and renames its keys to ours. Keys of other parts are
 * ignored; a key of this part that does not map is an error naming it.
 */
export function officialPart(
  sd: Map<string, RawTensor>,
  part: OfficialPart,
  arch: ResNetArch = "resnet50",
): Map<string, RawTensor> {
  const prefix = OFFICIAL_PARTS[part];
  const others = Object.values(OFFICIAL_PARTS).filter((p) => p !== prefix && p.startsWith(prefix));
  const out = new Map<string, RawTensor>();
  for (const [k, v] of sd) {
    if (!k.startsWith(prefix) || others.some((o) => k.startsWith(o))) continue;
    const rest = k.slice(prefix.length);
    if (part === "network" && (rest === "queue" || rest === "queue_ptr")) continue;
    out.set(part === "predictor" ? rest : officialKeyToOurs(rest, arch), v);
  }
  if (!out.size) {
    const seen = [...new Set([...sd.keys()].map((k) => k.split(".").slice(0, 2).join(".")))];
    throw new SerializationError(
      `the checkpoint has no '${prefix}*' keys (its key prefixes: ${seen.slice(0, 8).join(", ")})`,
    );
  }
  return out;
}

/** Which parts a checkpoint holds, judged from its keys. */
export function detectOfficialParts(sd: Map<string, RawTensor>): OfficialPart[] {
  const keys = [...sd.keys()];
  const has = (p: string) => keys.some((k) => k.startsWith(p));
  const parts = (Object.keys(OFFICIAL_PARTS) as OfficialPart[]).filter((p) =>
    p !== "network" && has(OFFICIAL_PARTS[p])
  );
  return parts.length ? parts : has("module.conv1.") ? ["network"] : [];
}

/**
 * Loads one part of an official `.pth.tar` (its `state_dict`) into `module`, strictly: missing
 * keys, unexpected keys and shape mismatches are reported by name.
 */
export async function loadOfficialCheckpoint(
  path: string,
  module: Module,
  part: OfficialPart,
  arch: ResNetArch = "resnet50",
): Promise<void> {
  let sd: Map<string, RawTensor>;
  try {
    sd = await loadRawStateDict(path, "state_dict");
  } catch (e) {
    if (!(e instanceof SerializationError)) throw e;
    sd = await loadRawStateDict(path);
  }
  const mine = officialPart(sd, part, arch);
  scope(() => {
    const tensors = new Map<string, Tensor>([...mine].map(([k, r]) => [k, fromRaw(r)]));
    try {
      module.loadStateDict(tensors);
    } catch (e) {
      throw new SerializationError(`${path} (${OFFICIAL_PARTS[part]}*): ${(e as Error).message}`);
    }
  });
}
