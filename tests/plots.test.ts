import assert from "node:assert/strict";
import { join } from "node:path";
import { accuracyVsMacsSpec, lossCurvesSpec, renderChart } from "../lib/log/plots.ts";

Deno.test("plots render to SVG and PNG", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const [svg, png] = await renderChart(
      accuracyVsMacsSpec([
        { width: 1, macs: 4.09e9, accuracy: 0.7 },
        { width: 0.5, macs: 1.05e9, accuracy: 0.65 },
      ], "demo"),
      join(dir, "acc"),
    );
    const text = await Deno.readTextFile(svg);
    assert.ok(text.startsWith("<svg") && text.includes("×0.5"));
    assert.ok(!text.includes("raw pixels"));
    const [withBaseline] = await renderChart(
      accuracyVsMacsSpec([{ width: 1, macs: 4.09e9, accuracy: 0.7 }], "demo", [
        { label: "raw pixels", accuracy: 0.6 },
      ]),
      join(dir, "acc_baseline"),
    );
    assert.ok((await Deno.readTextFile(withBaseline)).includes("raw pixels"));
    const bytes = await Deno.readFile(png);
    assert.deepEqual([...bytes.subarray(1, 4)], [0x50, 0x4e, 0x47]);
    await renderChart(
      lossCurvesSpec(
        [{ step: 1, series: "a", value: 2 }, { step: 2, series: "a", value: 1 }],
        "loss",
      ),
      join(dir, "loss"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
