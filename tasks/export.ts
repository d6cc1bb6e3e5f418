/**
 * `deno task export --checkpoint PATH --width W --out PREFIX`: writes one width of a slimmable
 * network as a dense, standalone torchvision-style ResNet: `PREFIX.safetensors`, `PREFIX.pt`
 * (readable by `torch.load(weights_only=True)`, keys `conv1`, `bn1`, `layer1.0.conv1`,
 * `layer1.0.downsample.0`, `fc`) and `PREFIX.json` (channel counts). Existing outputs are never
 * overwritten. The network may come from a model file, a supervised or pretraining checkpoint, a
 * run folder or an official SlimCLR checkpoint (see `loadModel`).
 */
import { existsSync } from "node:fs";
import { parseArgs } from "node:util";
import { describeWidth, exportDense } from "../lib/models/slimmable_resnet.ts";
import { loadModel } from "../lib/models/model_file.ts";
import { OFFICIAL_PARTS, type OfficialPart } from "../lib/models/official.ts";
import { RESNET_DEPTHS, type ResNetArch } from "../lib/models/resnet.ts";
import { saveStateDict } from "../lib/serialize/tensors.ts";
import { atomicWriteFile } from "../lib/serialize/fs.ts";

const HELP = `deno task export --checkpoint PATH --width W --out PREFIX [options]

Writes one width of a slimmable network as a dense ResNet with torchvision key names.

  --checkpoint PATH   a slimclr model file (a run's model.pt), a checkpoint (supervised, or
                      pretraining: its query/base encoder), a run folder (its model.pt, else its
                      newest checkpoint), or an official SlimCLR .pth.tar
  --width W           the width to export (one of the network's widths, e.g. 0.5)
  --out PREFIX        writes PREFIX.safetensors, PREFIX.pt and PREFIX.json (never overwritten)
  --part NAME         official checkpoints: ${Object.keys(OFFICIAL_PARTS).join(", ")}
  --arch NAME         official checkpoints: ${
  Object.keys(RESNET_DEPTHS).join(", ")
} (default resnet50)
  --widths LIST       official checkpoints: widths, descending (default 1,0.75,0.5,0.25)
  -h, --help          this text`;

/** Usage errors name the flag and what was expected. */
export class UsageError extends Error {}

function number(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`--${flag}: expected a number, got '${v}'`);
  return n;
}

/** Runs the export; returns the written paths. */
export async function exportTask(args: string[]): Promise<string[]> {
  const { values } = parseArgs({
    args,
    options: {
      checkpoint: { type: "string" },
      width: { type: "string" },
      out: { type: "string" },
      part: { type: "string" },
      arch: { type: "string" },
      widths: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(HELP);
    return [];
  }
  for (const f of ["checkpoint", "width", "out"] as const) {
    if (!values[f]) throw new UsageError(`--${f} is required (see --help)`);
  }
  if (values.part && !(values.part in OFFICIAL_PARTS)) {
    throw new UsageError(
      `--part: expected one of ${Object.keys(OFFICIAL_PARTS).join(", ")}, got '${values.part}'`,
    );
  }
  if (values.arch && !(values.arch in RESNET_DEPTHS)) {
    throw new UsageError(
      `--arch: expected one of ${Object.keys(RESNET_DEPTHS).join(", ")}, got '${values.arch}'`,
    );
  }
  if (!existsSync(values.checkpoint!)) {
    throw new UsageError(`--checkpoint: no such file or folder ${values.checkpoint}`);
  }
  const width = number("width", values.width!);
  const outputs = ["safetensors", "pt", "json"].map((ext) => `${values.out}.${ext}`);
  const taken = outputs.filter((p) => existsSync(p));
  if (taken.length) throw new UsageError(`--out: refusing to overwrite ${taken.join(", ")}`);

  const net = await loadModel(values.checkpoint!, {
    part: values.part as OfficialPart | undefined,
    arch: values.arch as ResNetArch | undefined,
    widths: values.widths?.split(",").map((w) => number("widths", w)),
  });
  try {
    if (!net.widths.includes(width)) {
      throw new UsageError(
        `--width: ${width} is not one of this network's widths [${net.widths.join(", ")}]`,
      );
    }
    const dense = exportDense(net, width);
    try {
      const sd = dense.stateDict();
      const info = { ...describeWidth(net, width), parameters: dense.numParameters() };
      await saveStateDict(outputs[0], sd, { format: "slimclr-dense", width: String(width) });
      await saveStateDict(outputs[1], sd);
      await atomicWriteFile(
        outputs[2],
        new TextEncoder().encode(JSON.stringify(info, null, 2) + "\n"),
      );
    } finally {
      dense.dispose();
    }
  } finally {
    net.dispose();
  }
  return outputs;
}

if (import.meta.main) {
  try {
    const written = await exportTask(Deno.args);
    for (const p of written) console.log(p);
  } catch (e) {
    console.error(`export: ${(e as Error).message}`);
    Deno.exit(e instanceof UsageError ? 2 : 1);
  }
}
