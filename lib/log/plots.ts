/**
 * Plots of a run, rendered with Vega-Lite to SVG and with resvg to PNG: accuracy against MACs per
 * width (the paper's trade-off curve) and loss curves per width.
 */
import { Resvg } from "@resvg/resvg-js";
import * as vega from "vega";
import * as vl from "vega-lite";
import { atomicWriteFile } from "../serialize/fs.ts";

/** Renders a Vega-Lite spec to `<prefix>.svg` and `<prefix>.png`; returns both paths. */
export async function renderChart(
  spec: vl.TopLevelSpec,
  prefix: string,
): Promise<[string, string]> {
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: "none" });
  const svg = await view.toSVG();
  view.finalize();
  const png = new Resvg(svg, { background: "white", font: { loadSystemFonts: true } }).render()
    .asPng();
  await atomicWriteFile(`${prefix}.svg`, new TextEncoder().encode(svg));
  await atomicWriteFile(`${prefix}.png`, png);
  return [`${prefix}.svg`, `${prefix}.png`];
}

/** One width's point on the accuracy/compute trade-off. */
export interface WidthPoint {
  width: number;
  macs: number;
  accuracy: number;
}

/** A reference accuracy drawn across the plot (e.g. kNN on raw pixels). */
export interface Baseline {
  label: string;
  accuracy: number;
}

/**
 * Accuracy (%) against MACs (log scale), one labelled point per width, and each baseline as a
 * dashed, labelled horizontal rule.
 */
export function accuracyVsMacsSpec(
  points: WidthPoint[],
  title: string,
  baselines: Baseline[] = [],
): vl.TopLevelSpec {
  const values = points.map((p) => ({
    width: `×${p.width}`,
    mmacs: p.macs / 1e6,
    accuracy: p.accuracy * 100,
  }));
  const x = {
    field: "mmacs",
    type: "quantitative",
    title: "MACs (M)",
    scale: { type: "log" },
  } as const;
  const y = {
    field: "accuracy",
    type: "quantitative",
    title: "top-1 (%)",
    scale: { zero: false },
  } as const;
  return {
    title,
    width: 420,
    height: 300,
    data: { values },
    layer: [
      { mark: { type: "line", point: { size: 60 } }, encoding: { x, y } },
      {
        mark: { type: "text", dy: -12 },
        encoding: { x, y, text: { field: "width", type: "nominal" } },
      },
      ...baselines.flatMap((b) => {
        const data = { values: [{ accuracy: b.accuracy * 100, label: b.label }] };
        return [
          {
            data,
            mark: { type: "rule" as const, strokeDash: [4, 4], color: "gray" },
            encoding: { y },
          },
          {
            data,
            mark: {
              type: "text" as const,
              align: "left" as const,
              dx: 4,
              dy: -6,
              x: 0,
              color: "gray",
            },
            encoding: { y, text: { field: "label", type: "nominal" as const } },
          },
        ];
      }),
    ],
  };
}

/** Loss per step, one line per series (e.g. `loss/w0.5`). */
export function lossCurvesSpec(
  rows: { step: number; series: string; value: number }[],
  title: string,
): vl.TopLevelSpec {
  return {
    title,
    width: 480,
    height: 300,
    data: { values: rows },
    mark: { type: "line" },
    encoding: {
      x: { field: "step", type: "quantitative", title: "step" },
      y: { field: "value", type: "quantitative", title: "loss", scale: { zero: false } },
      color: { field: "series", type: "nominal", title: null },
    },
  };
}
