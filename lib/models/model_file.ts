/**
 * Model files: a slimmable network's configuration and state dict in one `torch.save`-compatible
 * file (`torch.load(weights_only=True)` reads it), and reconstruction of a network from such a
 * file, a slimclr training checkpoint (supervised or pretraining), an official SlimCLR checkpoint
 * or a run folder.
 */
import type { RawTensor } from "../serialize/raw.ts";
import { SerializationError } from "../serialize/raw.ts";
import { OrderedDict } from "../serialize/pytypes.ts";
import { fromRaw, stateDictToRaw } from "../serialize/tensors.ts";
import { loadTorchFile, saveTorchFile } from "../serialize/torch_file.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import {
  DEFAULT_WIDTHS,
  type HeadKind,
  SlimmableResNet,
  type SlimmableResNetOptions,
} from "./slimmable_resnet.ts";
import { detectOfficialParts, type OfficialPart, officialPart } from "./official.ts";
import { RESNET_DEPTHS, type ResNetArch } from "./resnet.ts";
import {
  entryOf,
  isTrainingCheckpoint,
  pretrainEncoder,
  rawEntries,
  resolveModelPath,
} from "./model_source.ts";
import { CHECKPOINT_FORMAT } from "../train/checkpoint.ts";

/** Marker of slimclr model files. */
export const MODEL_FORMAT = "slimclr-model";

/** Writes `net` (configuration and weights) atomically to `path`. */
export async function saveModel(path: string, net: SlimmableResNet): Promise<void> {
  await saveTorchFile(path, modelRecord(net));
}

/** The serialisable record of a network: `{format, version, config, state_dict}`. */
export function modelRecord(net: SlimmableResNet): Record<string, unknown> {
  const { plan: _plan, ...config } = net.slimOptions;
  return {
    format: MODEL_FORMAT,
    version: 1,
    config: { ...config, widths: [...net.widths] },
    state_dict: new OrderedDict(stateDictToRaw(net.stateDict())),
  };
}

/** Options when reading an official checkpoint. */
export interface OfficialOptions {
  /** Which part to take (default: the query/base encoder, or the network of a probe). */
  part?: OfficialPart;
  arch?: ResNetArch;
  widths?: readonly number[];
}

/** Infers the head, its output size and hidden width from a state dict's `fc.*` keys. */
export function inferHead(
  sd: Map<string, RawTensor>,
): { head: HeadKind; numClasses: number; mlpDim?: number } {
  const shape = (k: string) => sd.get(k)?.shape;
  if (shape("fc.linears.0.weight")) {
    return { head: "supervised_switch", numClasses: shape("fc.linears.0.weight")![0] };
  }
  // A MoCo v2 projector records its hidden width only when it is not the feature width.
  const mocov2 = (head: HeadKind, first: string, last: string) => {
    const [hiddenOut, featIn] = shape(first)!;
    return {
      head,
      numClasses: shape(last)![0],
      ...(hiddenOut !== featIn ? { mlpDim: hiddenOut } : {}),
    };
  };
  if (shape("fc.0.linears.0.weight")) {
    return mocov2("mocov2_switch", "fc.0.linears.0.weight", "fc.2.linears.0.weight");
  }
  if (shape("fc.1.bn.0.running_mean")) {
    const affineLast = sd.has("fc.4.bn.0.weight");
    return {
      head: affineLast ? "simclr_slim" : "mocov3_slim",
      numClasses: shape("fc.3.weight")![0],
      mlpDim: shape("fc.0.weight")![0],
    };
  }
  if (shape("fc.2.weight")) return mocov2("mocov2_slim", "fc.0.weight", "fc.2.weight");
  if (shape("fc.weight")) return { head: "supervised", numClasses: shape("fc.weight")![0] };
  return { head: "none", numClasses: 0 };
}

function widthCount(sd: Map<string, RawTensor>): number {
  let n = 0;
  while (sd.has(`bn1.bn.${n}.running_mean`)) n++;
  return n;
}

/** A network's options and weights, as read from one of the files `loadModel` accepts. */
interface NetworkSource {
  config: SlimmableResNetOptions;
  sd: Map<string, RawTensor>;
}

/** What `loadModel` reads, for errors. */
const ACCEPTED = "slimclr model, checkpoint or official SlimCLR checkpoint";

/** Reads a torch file; a file that is not one is an error naming it. */
async function readModelFile(path: string): Promise<unknown> {
  try {
    return await loadTorchFile(path);
  } catch (e) {
    if (!(e instanceof SerializationError)) throw e;
    throw new SerializationError(`${path} is not a ${ACCEPTED} (${e.message})`);
  }
}

/** The options and weights of an official SlimCLR checkpoint's part. */
function officialSource(
  path: string,
  raw: Map<string, RawTensor>,
  parts: OfficialPart[],
  official: OfficialOptions,
): NetworkSource {
  const part = official.part ?? parts[0];
  const arch = official.arch ?? "resnet50";
  const sd = officialPart(raw, part, arch);
  const n = widthCount(sd);
  const widths = official.widths ?? DEFAULT_WIDTHS.slice(0, n);
  if (widths.length !== n) {
    throw new SerializationError(
      `${path}: the checkpoint has ${n} widths per batch norm, --widths gives ${widths.length}`,
    );
  }
  const stemShape = sd.get("conv1.weight")?.shape;
  const config: SlimmableResNetOptions = {
    arch,
    widths,
    stem: stemShape && stemShape[2] === 7 ? "imagenet" : "small",
    inChannels: stemShape?.[1] ?? 3,
    baseWidth: stemShape?.[0] ?? 64,
    ...inferHead(sd),
  };
  return { config, sd };
}

/** What a loaded file holds: a model record, a training checkpoint or an official checkpoint. */
function networkSource(path: string, tree: unknown, official: OfficialOptions): NetworkSource {
  const record = entryOf(tree, "format") === MODEL_FORMAT
    ? tree
    : entryOf(entryOf(tree, "model"), "format") === MODEL_FORMAT
    ? entryOf(tree, "model")
    : null;
  if (record) {
    return {
      config: entryOf(record, "config") as SlimmableResNetOptions,
      sd: rawEntries(entryOf(record, "state_dict")),
    };
  }
  if (isTrainingCheckpoint(tree)) {
    const { options, stateDict } = pretrainEncoder(path, tree);
    return { config: { ...options, ...inferHead(stateDict) }, sd: stateDict };
  }
  const raw = rawEntries(entryOf(tree, "state_dict") ?? tree);
  const parts = detectOfficialParts(raw);
  if (!parts.length) {
    throw new SerializationError(
      `${path} is not a ${ACCEPTED}: it has no '${MODEL_FORMAT}' record, no ` +
        `'${CHECKPOINT_FORMAT}' marker and no module.encoder_q/base_encoder/conv1 keys`,
    );
  }
  return officialSource(path, raw, parts, official);
}

/**
 * Builds a network from a model file, a slimclr checkpoint (a supervised one's `model` record, or
 * a pretraining one's query/base encoder rebuilt from its saved config), an official SlimCLR
 * checkpoint, or a run folder (its `model.pt`, else its newest checkpoint), and loads its weights
 * strictly. Errors name the file and what is wrong with it.
 */
export async function loadModel(
  path: string,
  official: OfficialOptions = {},
): Promise<SlimmableResNet> {
  path = resolveModelPath(path);
  const { config, sd } = networkSource(path, await readModelFile(path), official);
  if (!(config.arch in RESNET_DEPTHS)) {
    throw new SerializationError(`${path}: unknown arch '${config.arch}'`);
  }
  const net = new SlimmableResNet(config);
  try {
    scope(() =>
      net.loadStateDict(new Map<string, Tensor>([...sd].map(([k, r]) => [k, fromRaw(r)])))
    );
  } catch (e) {
    net.dispose();
    throw new SerializationError(`${path}: ${(e as Error).message}`);
  }
  return net;
}
