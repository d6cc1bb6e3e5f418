/**
 * Bridges between live tensors and the serialization layer's raw tensors, and state-dict files
 * in either format (safetensors or `torch.save`).
 */
import { fromBytes, type Tensor } from "../tensor.ts";
import { isRawTensor, type RawTensor, SerializationError } from "./raw.ts";
import { loadSafetensors, saveSafetensors } from "./safetensors.ts";
import { readTorchFile, saveTorchFile } from "./torch_file.ts";
import { ZipReader } from "./zip.ts";
import { OrderedDict } from "./pytypes.ts";

/** A CPU, contiguous, little-endian copy of `t`. */
export function toRaw(t: Tensor): RawTensor {
  return { dtype: t.dtype, shape: t.shape, data: t.toBytes() };
}

/** A tensor holding a copy of `r`. */
export function fromRaw(r: RawTensor): Tensor {
  return fromBytes(r.data, r.dtype, r.shape);
}

/** Raw copies of every tensor of a state dict, in order. */
export function stateDictToRaw(sd: Map<string, Tensor>): Map<string, RawTensor> {
  return new Map([...sd].map(([k, t]) => [k, toRaw(t)]));
}

/** Writes a state dict atomically: `.safetensors` or (any other extension) a `torch.save` file. */
export async function saveStateDict(
  path: string,
  sd: Map<string, Tensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const raw = stateDictToRaw(sd);
  if (path.endsWith(".safetensors")) await saveSafetensors(path, raw, metadata);
  else await saveTorchFile(path, new OrderedDict(raw));
}

/**
 * Reads the raw tensors of a state-dict file: safetensors, or a `torch.save` file holding a state
 * dict (at the top, or under `key`, e.g. "state_dict").
 */
export async function loadRawStateDict(
  path: string,
  key?: string,
): Promise<Map<string, RawTensor>> {
  const bytes = await Deno.readFile(path);
  if (!ZipReader.isZip(bytes)) {
    if (key) throw new SerializationError(`${path}: a safetensors file has no key '${key}'`);
    return (await loadSafetensors(path)).tensors;
  }
  let tree = await readTorchFile(bytes);
  if (key) {
    const sub = tree instanceof Map ? tree.get(key) : (tree as Record<string, unknown>)?.[key];
    if (sub === undefined) {
      throw new SerializationError(`${path}: no entry '${key}' at the top level`);
    }
    tree = sub;
  }
  const entries = tree instanceof Map ? [...tree] : Object.entries(tree as Record<string, unknown>);
  const out = new Map<string, RawTensor>();
  for (const [k, v] of entries) {
    if (isRawTensor(v)) out.set(String(k), v);
  }
  if (!out.size) {
    throw new SerializationError(`${path}: no tensors found${key ? ` under '${key}'` : ""}`);
  }
  return out;
}
