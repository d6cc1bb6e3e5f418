import assert from "node:assert/strict";
import { join } from "node:path";

Deno.test("the demo pipeline runs end to end on a tiny subset", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../tasks/demo.ts", import.meta.url).pathname,
        "--run.out",
        dir,
        "--run.name",
        "tiny",
        "--data.subset",
        "600",
        "--data.batch_size",
        "128",
        "--ssl.queue",
        "256",
        "--schedule.epochs",
        "1",
        "--slim.start_epoch",
        "0.5",
        "--run.knn_every",
        "0",
        "--quiet",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const last = stdout.trim().split("\n").pop()!;
    assert.equal(last, join(dir, "tiny", "summary.json"));
    const summary = JSON.parse(await Deno.readTextFile(last));
    assert.deepEqual(summary.widths.map((w: { width: number }) => w.width), [1, 0.75, 0.5, 0.25]);
    for (const w of summary.widths) {
      assert.ok(w.params > 0 && w.macs > 0 && w.top1 > 10, JSON.stringify(w));
      assert.equal(typeof w.margin_over_raw_pixels, "number");
    }
    assert.ok(summary.raw_pixels_top1 > 50);
    assert.equal(summary.config.method, "mocov2");
    for (
      const f of [
        "accuracy_vs_macs.png",
        "accuracy_vs_macs.svg",
        "loss.png",
        "model.pt",
        "config.json",
      ]
    ) {
      await Deno.stat(join(dir, "tiny", f));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("every task is importable from mod.ts and prints its --help", async () => {
  const { tasks } = await import("../mod.ts");
  const printed: string[] = [];
  const log = console.log;
  console.log = (...xs: unknown[]) => printed.push(xs.join(" "));
  try {
    const runs: [string, () => unknown][] = [
      ["pretrain", () => tasks.pretrain(["--help"])],
      ["knn", () => tasks.knn(["--help"])],
      ["probe", () => tasks.probe(["--help"])],
      ["supervised", () => tasks.supervised(["--help"])],
      ["export", () => tasks.exportModel(["--help"])],
      ["profile", () => tasks.profile(["--help"])],
      ["pipeline", () => tasks.pipeline(["--help"])],
      ["demo", () => tasks.demo(["--help"])],
    ];
    for (const [name, run] of runs) {
      printed.length = 0;
      await run();
      assert.match(printed.join("\n"), new RegExp(`^deno task ${name}\\b`), name);
    }
  } finally {
    console.log = log;
  }
});

Deno.test("the training loops and their pieces are importable from mod.ts", async () => {
  const { train } = await import("../mod.ts");
  for (
    const f of [
      train.runPretrain,
      train.runSupervised,
      train.runProbe,
      train.knnPerWidth,
      train.buildMethod,
      train.openDataset,
      train.learningRate,
    ]
  ) assert.equal(typeof f, "function");
  assert.equal(typeof train.CheckpointManager, "function");
});
