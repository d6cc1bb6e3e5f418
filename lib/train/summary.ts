/**
 * The end of a run: a table of parameters, MACs and accuracy per width, `summary.json`, and the
 * plots (accuracy against MACs, loss curves) in the run folder.
 */
import { join } from "node:path";
import type { SlimmableResNet } from "../models/slimmable_resnet.ts";
import { profileWidths } from "../models/profile.ts";
import { atomicWriteFile } from "../serialize/fs.ts";
import { accuracyVsMacsSpec, type Baseline, lossCurvesSpec, renderChart } from "../log/plots.ts";
import { readMetrics } from "../log/progress.ts";

/** One width's row of the summary. */
export interface WidthSummary {
  width: number;
  params: number;
  macs: number;
  /** Top-1 in percent under the named protocol, or null if not evaluated. */
  top1: number | null;
}

/** The per-width rows for `net` at `inputSize`, with accuracies (0–1) where known. */
export function widthRows(
  net: SlimmableResNet,
  inputSize: number,
  acc: Map<number, number> | null,
): WidthSummary[] {
  return profileWidths(net, inputSize).map((p) => ({
    width: p.width,
    params: p.params,
    macs: p.macs,
    top1: acc?.has(p.width) ? Number((acc.get(p.width)! * 100).toFixed(2)) : null,
  }));
}

/** The kNN protocol in words, as summaries record it. */
export function knnProtocol(k: number, t: number, bank: number, bnRecalibrate = 0): string {
  const recal = bnRecalibrate
    ? `, BatchNorm statistics recomputed per width on ${
      Math.min(bnRecalibrate, bank)
    } clean bank images`
    : "";
  return `kNN top-1, k=${k}, t=${t}, cosine, ${bank} bank images${recal}`;
}

/** An aligned text table of the rows. */
export function formatTable(rows: WidthSummary[], metric: string): string {
  const head = ["width", "params", "MACs", metric];
  const body = rows.map((r) => [
    `×${r.width}`,
    `${(r.params / 1e6).toFixed(3)}M`,
    r.macs >= 1e9 ? `${(r.macs / 1e9).toFixed(3)}G` : `${(r.macs / 1e6).toFixed(2)}M`,
    r.top1 === null ? "-" : `${r.top1.toFixed(2)}%`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join("  ");
  return [line(head), ...body.map(line)].join("\n");
}

/**
 * Renders `accuracy_vs_macs.{svg,png}` in `runDir` from the widths' top-1, with optional baselines
 * (nothing when no width has an accuracy).
 */
export async function writeAccuracyPlot(
  runDir: string,
  widths: WidthSummary[],
  metric: string,
  baselines: Baseline[] = [],
): Promise<void> {
  const points = widths.filter((w) => w.top1 !== null).map((w) => ({
    width: w.width,
    macs: w.macs,
    accuracy: w.top1! / 100,
  }));
  if (!points.length) return;
  await renderChart(
    accuracyVsMacsSpec(points, metric, baselines),
    join(runDir, "accuracy_vs_macs"),
  );
}

/** Writes `summary.json` and the plots; returns the summary's path. */
export async function writeSummary(
  runDir: string,
  summary: Record<string, unknown> & { widths: WidthSummary[] },
  metric: string,
): Promise<string> {
  const path = join(runDir, "summary.json");
  await atomicWriteFile(path, new TextEncoder().encode(JSON.stringify(summary, null, 2) + "\n"));
  await writeAccuracyPlot(runDir, summary.widths, metric);
  const rows = readMetrics(join(runDir, "metrics.jsonl"))
    .filter((r) => r.kind === "train")
    .flatMap((r) =>
      Object.entries(r)
        .filter(([k, v]) => k.startsWith("loss/") && typeof v === "number")
        .map(([k, v]) => ({ step: r.step as number, series: k, value: v as number }))
    );
  if (rows.length) {
    await renderChart(lossCurvesSpec(rows, "training loss per width"), join(runDir, "loss"));
  }
  return path;
}
