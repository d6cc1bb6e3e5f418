/**
 * `deno task profile`: parameters and multiply-accumulates of each width of a slimmable ResNet
 * (spec §5.9, counted from layer shapes by `profileWidths`). Prints an aligned table and then one
 * JSON document (only the JSON with `--json`). Bad flags exit with code 2.
 */
import { parseArgs } from "node:util";
import { profileWidths, type WidthProfile } from "../lib/models/profile.ts";
import { RESNET_DEPTHS, type ResNetArch, type Stem, STEMS } from "../lib/models/resnet.ts";
import { type HeadKind, SlimmableResNet } from "../lib/models/slimmable_resnet.ts";

/** A command-line mistake: the message names the flag and what it expects (exit code 2). */
export class UsageError extends Error {
  /** The process exit code for usage errors. */
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const HEADS: readonly HeadKind[] = [
  "none",
  "supervised",
  "supervised_switch",
  "mocov2_slim",
  "mocov2_switch",
  "mocov3_slim",
  "simclr_slim",
];

/** The `--help` text. */
export const HELP = `deno task profile [flags]

Parameters and multiply-accumulates (MACs, one image) of each width of a slimmable ResNet,
computed from layer shapes. MACs count convolutions (Cout·Cin/groups·k·k·Hout·Wout), linears
(in·out) and the global average pool (C·H·W), as the reference's profiler does; batch norm,
ReLU, max pooling and residual additions count zero. Parameters are those of the exported
width (sliced weights, that width's batch norms, the classifier of supervised heads).

Flags:
  --arch NAME            ${Object.keys(RESNET_DEPTHS).join(", ")} (default resnet50)
  --widths LIST          comma-separated widths in (0, 1] (default 1,0.75,0.5,0.25)
  --input-size N|HxW     input side, or height x width (default 224)
  --stem KIND            imagenet (7x7/2 + max-pool), small (3x3/1) or small_s2 (3x3/2)
                         (default imagenet)
  --in-channels N        input channels (default 3)
  --base-width N         stem channels at width 1 (default 64)
  --num-classes N        classifier outputs, or the projection size of SSL heads (default 1000)
  --head KIND            ${HEADS.slice(0, 5).join(", ")},
                         ${HEADS.slice(5).join(", ")} (default supervised)
  --mlp-dim N            hidden width of the mocov3_slim / simclr_slim projector at width 1
  --include-projector    also count SSL projector heads (left out of exports by default)
  --json                 print only the JSON document
  -h, --help             this text
`;

/** The JSON document `profile` prints. */
export interface ProfileReport {
  arch: ResNetArch;
  input_size: [number, number];
  stem: Stem;
  in_channels: number;
  base_width: number;
  num_classes: number;
  head: HeadKind;
  include_projector: boolean;
  widths: WidthProfile[];
}

function positiveInt(flag: string, v: string, allowZero = false): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || (!allowZero && n === 0)) {
    throw new UsageError(
      `--${flag}: expected a ${allowZero ? "non-negative" : "positive"} integer, got '${v}'`,
    );
  }
  return n;
}

function oneOf<T extends string>(flag: string, v: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v)) {
    throw new UsageError(`--${flag}: expected one of ${allowed.join(", ")}, got '${v}'`);
  }
  return v as T;
}

function parseWidths(v: string): number[] {
  const parts = v.split(",").map((s) => s.trim());
  const widths = parts.map(Number);
  parts.forEach((p, i) => {
    const w = widths[i];
    if (p === "" || !Number.isFinite(w) || !(w > 0 && w <= 1)) {
      throw new UsageError(
        `--widths: expected comma-separated numbers in (0, 1] such as 1,0.5, got '${v}'`,
      );
    }
  });
  const sorted = [...widths].sort((a, b) => b - a);
  if (sorted.some((w, i) => i > 0 && w === sorted[i - 1])) {
    throw new UsageError(`--widths: each width may appear once, got '${v}'`);
  }
  return sorted;
}

function parseInputSize(v: string): [number, number] {
  const m = /^\s*(\d+)\s*(?:[x×,]\s*(\d+)\s*)?$/.exec(v);
  const h = m ? Number(m[1]) : 0;
  const w = m ? Number(m[2] ?? m[1]) : 0;
  if (!m || h < 1 || w < 1) {
    throw new UsageError(`--input-size: expected a positive integer N or HxW, got '${v}'`);
  }
  return [h, w];
}

function parseFlags(args: string[]) {
  try {
    return parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        arch: { type: "string", default: "resnet50" },
        widths: { type: "string", default: "1,0.75,0.5,0.25" },
        "input-size": { type: "string", default: "224" },
        stem: { type: "string", default: "imagenet" },
        "in-channels": { type: "string", default: "3" },
        "base-width": { type: "string", default: "64" },
        "num-classes": { type: "string", default: "1000" },
        head: { type: "string", default: "supervised" },
        "mlp-dim": { type: "string" },
        "include-projector": { type: "boolean", default: false },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }).values;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const code = (e as { code?: string }).code;
    const flag = /'(-[^' ]+)/.exec(msg)?.[1] ?? "";
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
      throw new UsageError(`${flag}: unknown flag (see --help)`);
    }
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
      throw new UsageError(
        /does not take an argument/.test(msg)
          ? `${flag}: takes no value`
          : `${flag}: expected a value after the flag (write ${flag}=-X for a value that ` +
            `starts with a dash)`,
      );
    }
    if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
      throw new UsageError(`unexpected argument ${msg.match(/'[^']*'/)?.[0]}: expected flags only`);
    }
    throw new UsageError(msg);
  }
}

/** Fixed decimals for a column: at least 3, more until its smallest entry shows 3 digits. */
function decimals(values: number[]): number {
  const smallest = Math.min(...values.filter((v) => v > 0));
  if (!Number.isFinite(smallest) || smallest >= 0.1) return 3;
  return Math.min(9, 2 - Math.floor(Math.log10(smallest)));
}

function table(rows: WidthProfile[]): string {
  const m = rows.map((r) => r.params / 1e6);
  const g = rows.map((r) => r.macs / 1e9);
  const [dm, dg] = [decimals(m), decimals(g)];
  const cells = rows.map((r, i) => [String(r.width), m[i].toFixed(dm), g[i].toFixed(dg)]);
  const head = ["width", "params (M)", "MACs (G)"];
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((x, i) => x.padStart(widths[i])).join("  ");
  return [line(head), ...cells.map(line)].join("\n");
}

/**
 * Runs the profile command on `args` (flags as on the command line): prints the table and the
 * JSON document (or the help text) and returns the report (null for `--help`). Throws a
 * `UsageError` for a bad flag.
 */
export function profile(args: string[]): ProfileReport | null {
  const v = parseFlags(args);
  if (v.help) {
    console.log(HELP.trimEnd());
    return null;
  }
  const arch = oneOf("arch", v.arch, Object.keys(RESNET_DEPTHS) as ResNetArch[]);
  const widths = parseWidths(v.widths);
  const inputSize = parseInputSize(v["input-size"]);
  const stem = oneOf("stem", v.stem, STEMS);
  const inChannels = positiveInt("in-channels", v["in-channels"]);
  const baseWidth = positiveInt("base-width", v["base-width"]);
  const numClasses = positiveInt("num-classes", v["num-classes"], true);
  const head = oneOf("head", v.head, HEADS);
  const mlpDim = v["mlp-dim"] === undefined ? undefined : positiveInt("mlp-dim", v["mlp-dim"]);
  if (head !== "none" && numClasses === 0) {
    throw new UsageError(`--num-classes: expected a positive integer with --head ${head}, got 0`);
  }
  if (widths.some((w) => Math.trunc(baseWidth * w) < 1)) {
    throw new UsageError(
      `--base-width: ${baseWidth} leaves no channels at width ${Math.min(...widths)}; ` +
        `expected base-width × width ≥ 1`,
    );
  }
  const net = new SlimmableResNet({
    arch,
    widths,
    stem,
    inChannels,
    baseWidth,
    numClasses,
    head,
    mlpDim,
  });
  let rows: WidthProfile[];
  try {
    rows = profileWidths(net, inputSize, { includeProjector: v["include-projector"] });
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(`--input-size: ${e.message}`);
    throw e;
  } finally {
    net.dispose();
  }
  const report: ProfileReport = {
    arch,
    input_size: inputSize,
    stem,
    in_channels: inChannels,
    base_width: baseWidth,
    num_classes: numClasses,
    head,
    include_projector: v["include-projector"],
    widths: rows,
  };
  if (!v.json) {
    console.log(
      `${arch}, ${stem} stem, ${inChannels}×${inputSize[0]}×${inputSize[1]} input, ` +
        `head ${head}${head === "none" ? "" : ` (${numClasses})`}`,
    );
    console.log(table(rows));
  }
  console.log(JSON.stringify(report));
  return report;
}

if (import.meta.main) {
  try {
    profile(Deno.args);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`profile: ${e.message}`);
      Deno.exit(e.exitCode);
    }
    throw e;
  }
}
