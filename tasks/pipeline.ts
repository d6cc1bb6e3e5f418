/**
 * `deno task pipeline [pretrain flags …]`: pretrain → kNN → linear probe → report, each step a
 * `deno task` run through dax, so every stage is the same command a user would type. The kNN and
 * probe stages see the data the run was pretrained on (its resolved config's dataset, folder, crop
 * size and training subset). Writes `report.md` and `report.json` in the run folder
 * and prints the report's path last.
 */
import { $ } from "dax";
import { dirname, join } from "node:path";
import { atomicWriteFile } from "../lib/serialize/fs.ts";
import { PROJECT_ROOT } from "../lib/ffi/paths.ts";

interface WidthRow {
  width: number;
  params: number;
  macs: number;
  top1: number | null;
}

/** The data settings every evaluation stage takes from the pretraining run's resolved config. */
const SHARED_DATA_KEYS = ["dataset", "root", "image_size", "subset", "workers"] as const;

/**
 * The flags that make an evaluation stage see the data the run was pretrained on (dataset,
 * folder, crop size, training subset) and use its device and thread count, in `--key=value` form.
 */
export function sharedFlags(config: {
  data: Record<string, unknown>;
  run: Record<string, unknown>;
}): string[] {
  const flags = SHARED_DATA_KEYS.map((k) => `--data.${k}=${config.data[k]}`);
  flags.push(`--run.device=${config.run.device}`);
  if (config.run.threads) flags.push(`--run.threads=${config.run.threads}`);
  return flags;
}

/**
 * Whether the probe stage should continue an earlier probe: the pretraining stage resumes
 * (`--resume …`) and the probe flags choose no `--resume` of their own.
 */
export function resumesProbe(args: readonly string[], probeArgs: readonly string[]): boolean {
  const resumes = (a: readonly string[]) =>
    a.some((x) => x === "--resume" || x.startsWith("--resume="));
  return resumes(args) && !resumes(probeArgs);
}

/** Runs one stage, naming it when it fails (its own error is already on stderr). */
async function stage<T>(name: string, run: () => PromiseLike<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    throw new Error(`the ${name} stage failed: ${(e as Error).message}`);
  }
}

const HELP = `deno task pipeline [pretrain flags ...] [--probe probe flags ...]

Runs pretrain -> knn -> probe -> report, each stage as its own deno task, and prints the path of
report.md (beside report.json in the run folder). The flags before --probe go to pretrain (see
deno task pretrain --help); those after it to probe (see deno task probe --help). The knn and probe
stages use the run's resolved data settings (data.dataset, data.root, data.image_size, data.subset,
data.workers), run.device and run.threads. With --resume, the probe stage continues the probe an
earlier pipeline left in the run folder (or re-evaluates a finished one).`;

/** Runs the pipeline; returns the report's path (null after `--help`). */
export async function pipeline(args: string[], probeArgs: string[] = []): Promise<string | null> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(HELP);
    return null;
  }
  const deno = Deno.execPath();
  const lastLine = (text: string) => text.trim().split("\n").pop()!;
  const task = (name: string) => join(PROJECT_ROOT, "tasks", `${name}.ts`);
  const summaryPath = lastLine(
    await stage("pretrain", () => $`${deno} run -A ${task("pretrain")} ${args} --quiet`.text()),
  );
  const runDir = dirname(summaryPath);
  const model = join(runDir, "model.pt");
  const summary = JSON.parse(await Deno.readTextFile(summaryPath));
  const shared = sharedFlags(summary.config);
  await stage("knn", () => $`${deno} run -A ${task("knn")} --model ${model} ${shared}`);
  // A resumed pipeline continues (or re-evaluates) the probe its earlier run left in the folder.
  const probeResume = resumesProbe(args, probeArgs) ? ["--resume", "auto"] : [];
  await stage(
    "probe",
    () => $`${deno} run -A ${task("probe")} --model ${model} ${shared} ${probeResume} ${probeArgs}`,
  );
  const knn = JSON.parse(await Deno.readTextFile(join(runDir, "knn.json")));
  const probe = JSON.parse(await Deno.readTextFile(join(runDir, "probe.json")));
  const rows = (summary.widths as WidthRow[]).map((w, i) => ({
    width: w.width,
    params: w.params,
    macs: w.macs,
    knn_top1: (knn.widths as WidthRow[])[i]?.top1 ?? null,
    probe_top1: (probe.widths as WidthRow[])[i]?.top1 ?? null,
  }));
  const report = {
    run: runDir,
    dataset: summary.dataset,
    method: summary.config.method,
    raw_pixels_knn_top1: knn.raw_pixels_top1,
    widths: rows,
  };
  const md = [
    `# slimclr report: ${summary.config.method} on ${summary.dataset}`,
    "",
    `Run folder: \`${runDir}\`. kNN: k=${knn.protocol.k}, t=${knn.protocol.t}, cosine; raw pixels ` +
    `under the same protocol: ${knn.raw_pixels_top1 ?? "n/a"}%. Probe: ${probe.protocol}.`,
    "",
    "| width | params | MACs | kNN top-1 | probe top-1 |",
    "|---|---|---|---|---|",
    ...rows.map((r) =>
      `| ×${r.width} | ${(r.params / 1e6).toFixed(3)}M | ${(r.macs / 1e6).toFixed(2)}M | ` +
      `${r.knn_top1 ?? "-"}% | ${r.probe_top1 ?? "-"}% |`
    ),
    "",
  ].join("\n");
  await atomicWriteFile(
    join(runDir, "report.json"),
    new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"),
  );
  const path = join(runDir, "report.md");
  await atomicWriteFile(path, new TextEncoder().encode(md));
  return path;
}

if (import.meta.main) {
  const split = Deno.args.indexOf("--probe");
  const [args, probeArgs] = split < 0
    ? [Deno.args, []]
    : [Deno.args.slice(0, split), Deno.args.slice(split + 1)];
  try {
    const report = await pipeline(args, probeArgs);
    if (report) console.log(report);
  } catch (e) {
    console.error(`pipeline: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
