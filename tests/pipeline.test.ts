import assert from "node:assert/strict";
import { join } from "node:path";

/** Runs the pipeline task with `extra` flags added to the pretraining flags. */
function pipeline(dir: string, extra: string[] = []) {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../tasks/pipeline.ts", import.meta.url).pathname,
      ...extra,
      "--config",
      new URL("../configs/demo_fashion_mnist.yaml", import.meta.url).pathname,
      "--run.out",
      dir,
      "--run.name",
      "tiny",
      "--model.base_width",
      "4",
      "--model.widths",
      "1,0.5",
      "--data.subset",
      "512",
      "--data.batch_size",
      "128",
      "--ssl.queue",
      "256",
      "--schedule.epochs",
      "1",
      "--slim.start_epoch",
      "0.5",
      "--run.bn_recalibrate",
      "0",
      "--probe",
      "--probe.epochs",
      "30",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
}

Deno.test("the pipeline runs pretrain → kNN → probe → report on the run's own data", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = await pipeline(dir);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const last = new TextDecoder().decode(out.stdout).trim().split("\n").pop()!;
    assert.equal(last, join(dir, "tiny", "report.md"));
    const report = JSON.parse(await Deno.readTextFile(join(dir, "tiny", "report.json")));
    assert.deepEqual(report.widths.map((w: { width: number }) => w.width), [1, 0.5]);
    for (const w of report.widths) {
      assert.ok(w.knn_top1 > 15 && typeof w.probe_top1 === "number", JSON.stringify(w));
    }
    // 60 probe steps lift the full width well above chance (the half width's 16 features are ten
    // times smaller and need more).
    assert.ok(report.widths[0].probe_top1 > 25, JSON.stringify(report.widths[0]));
    // Both evaluation stages saw the run's 512-image training subset, not the whole split.
    const knn = JSON.parse(await Deno.readTextFile(join(dir, "tiny", "knn.json")));
    assert.equal(knn.protocol.bank, 512, JSON.stringify(knn.protocol));
    const probe = JSON.parse(await Deno.readTextFile(join(dir, "tiny", "probe.json")));
    assert.equal(probe.dataset, "fashion-mnist/train[512]");
    assert.match(await Deno.readTextFile(last), /\| ×0\.5 \|/);
    // The probe logged each of its 30 epochs and its test result.
    const rows = (await Deno.readTextFile(join(dir, "tiny", "probe_metrics.jsonl"))).trim()
      .split("\n").map((l) => JSON.parse(l));
    assert.equal(rows.filter((r) => r.kind === "epoch").length, 30);
    assert.deepEqual(rows.filter((r) => r.kind === "test").map((r) => r["top1/w0.5"]), [
      probe.widths[1].top1,
    ]);
    // Run again with --resume: every stage finds its work done and the report is unchanged.
    const again = await pipeline(dir, ["--resume", "auto"]);
    assert.equal(again.code, 0, new TextDecoder().decode(again.stderr));
    const report2 = JSON.parse(await Deno.readTextFile(join(dir, "tiny", "report.json")));
    assert.deepEqual(report2.widths, report.widths);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
