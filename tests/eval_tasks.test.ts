import assert from "node:assert/strict";
import { join } from "node:path";
import { cuda, manualSeed, models } from "../mod.ts";
import { ConfigError } from "../lib/config/schema.ts";
import { knnTask } from "../tasks/knn.ts";
import { probe } from "../tasks/probe.ts";
import { tinyEncoder, workerHandles } from "./_helpers.ts";
import { tinyRun } from "./fixtures/tiny_run.ts";

Deno.test("knn and probe tasks evaluate every width of a saved model and write their JSON", async () => {
  manualSeed(0);
  const dir = await Deno.makeTempDir();
  const net = new models.SlimmableResNet({
    arch: "resnet18",
    stem: "small",
    inChannels: 1,
    baseWidth: 4,
    widths: [1, 0.5],
    head: "mocov2_slim",
    numClasses: 16,
    linearInit: "default",
  });
  try {
    const model = join(dir, "model.pt");
    await models.saveModel(model, net);
    const knn = await knnTask(["--model", model, "--knn.samples", "2000"]);
    const rows = knn!.widths as { width: number; top1: number }[];
    assert.deepEqual(rows.map((r) => r.width), [1, 0.5]);
    // Even a random network's features beat chance (10 classes) under kNN.
    for (const r of rows) assert.ok(r.top1 > 20, JSON.stringify(r));
    assert.ok((knn!.raw_pixels_top1 as number) > 60);
    // Statistics recomputed from 1000 bank images change what the untrained network computes.
    const recal = await knnTask([
      "--model",
      model,
      "--knn.samples",
      "2000",
      "--knn.bn_recalibrate",
      "1000",
      "--knn.raw_pixels",
      "false",
      "--out",
      join(dir, "recal.json"),
    ]);
    assert.equal((recal!.protocol as { bn_recalibrate: number }).bn_recalibrate, 1000);
    const recalRows = recal!.widths as { top1: number }[];
    assert.ok(recalRows.some((r, i) => r.top1 !== rows[i].top1), JSON.stringify(recalRows));
    const p = await probe([
      "--model",
      model,
      "--data.subset",
      "1000",
      "--probe.epochs",
      "3",
    ]);
    assert.equal(p!.backbone_unchanged, true);
    assert.deepEqual((p!.widths as { width: number }[]).map((r) => r.width), [1, 0.5]);
    await Deno.stat(join(dir, "probe.json"));
    await Deno.stat(join(dir, "knn.json"));
    // --test-only on the folder evaluates the probe_model.pt the probe wrote: the same numbers,
    // nothing trained or written, every tensor it made freed.
    const written = (await Deno.stat(join(dir, "probe.json"))).mtime;
    const before = workerHandles();
    const only = await probe(["--test-only", "--model", dir]);
    assert.equal(workerHandles(), before);
    assert.equal(only!.model, join(dir, "probe_model.pt"));
    assert.deepEqual(only!.widths, p!.widths);
    assert.deepEqual((await Deno.stat(join(dir, "probe.json"))).mtime, written);
    // The probe checkpointed its heads beside its output; a second probe into the same folder is
    // refused before it loads anything, and the first one's files stay as they were.
    assert.equal(p!.status, "completed");
    assert.equal(p!.checkpoint, join(dir, "probe_checkpoints", "ckpt_e0003_s9.pt"));
    const files = ["probe.json", "probe_model.pt"].map((f) => join(dir, f));
    const contents = await Promise.all(files.map((f) => Deno.readFile(f)));
    await assert.rejects(() => probe(["--model", model, "--probe.epochs", "1"]), (e: Error) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.match(
        e.message,
        new RegExp(
          `^${
            files[0]
          } already holds an earlier probe's output, which a new probe would replace; ` +
            `write the new probe elsewhere with --out DIR, or continue that probe with --resume auto`,
        ),
      );
      return true;
    });
    for (const [i, f] of files.entries()) assert.deepEqual(await Deno.readFile(f), contents[i], f);
    assert.deepEqual((await Deno.stat(files[0])).mtime, written);
    // The pretrained encoder is no classifier.
    await assert.rejects(
      () => probe(["--test-only", "--model", model]),
      new RegExp(
        `--test-only evaluates a classifier, but ${model} has a 'mocov2_slim' head`,
      ),
    );
    if (!cuda.isAvailable()) {
      await assert.rejects(
        () => knnTask(["--model", model, "--run.device", "cuda"]),
        /'run\.device: cuda' but this LibTorch has no usable CUDA device/,
      );
    }
  } finally {
    net.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("supervised task trains every width, checkpoints, resumes, and --test-only evaluates", async () => {
  const { supervised } = await import("../tasks/supervised.ts");
  const dir = await Deno.makeTempDir();
  try {
    const args = [
      "--run.out",
      dir,
      "--run.name",
      "sup",
      "--data.subset",
      "512",
      "--data.batch_size",
      "64",
      "--model.base_width",
      "4",
      "--model.widths",
      "1,0.5",
      "--model.inplace_distill",
      "--schedule.epochs",
      "1",
    ];
    const summaryPath = await supervised(args);
    const summary = JSON.parse(await Deno.readTextFile(summaryPath!));
    assert.equal(summary.steps, 8);
    for (const w of summary.widths) assert.ok(w.top1 >= 0 && w.top1 <= 100, JSON.stringify(w));
    // Resuming a finished run continues from its last checkpoint and does no more steps.
    const again = JSON.parse(
      await Deno.readTextFile((await supervised([...args, "--resume", "auto"]))!),
    );
    assert.equal(again.steps, 8);
    assert.equal(await supervised(["--test-only", "--model", join(dir, "sup", "model.pt")]), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("knn on a pretraining checkpoint gives the numbers of its run's model.pt", async () => {
  const dir = await Deno.makeTempDir();
  // The 3×3/2 stem keeps feature extraction over the 10k test images short (the tiny run's own
  // 8-px images pass through it all the same; 16 px is what validation asks of this stem).
  const run = await tinyRun(dir, ["--model.stem=small_s2", "--data.image_size=16"]);
  for (const t of run.state.values()) t.dispose();
  try {
    const args = ["--knn.samples", "500", "--knn.raw_pixels", "false"];
    // The run folder means its model.pt, and knn.json goes into it.
    const fromModel = await knnTask(["--model", dir, ...args]);
    assert.equal(fromModel!.model, run.model);
    await Deno.stat(join(dir, "knn.json"));
    const fromCkpt = await knnTask([
      "--model",
      run.checkpoint,
      ...args,
      "--out",
      join(dir, "ckpt_knn.json"),
    ]);
    assert.deepEqual(fromCkpt!.widths, fromModel!.widths);
    assert.equal((fromModel!.widths as unknown[]).length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("knn and probe refuse a model whose input channels differ from the dataset's", async () => {
  const dir = await Deno.makeTempDir();
  const rgb = tinyEncoder({ inChannels: 3 });
  try {
    const model = join(dir, "rgb.pt");
    await models.saveModel(model, rgb);
    const message = new RegExp(
      `--model ${model} takes 3-channel images, but 'data\\.dataset' fashion-mnist has ` +
        `1-channel images`,
    );
    const before = workerHandles();
    for (const task of [knnTask, probe]) {
      await assert.rejects(() => task(["--model", model]), (e: Error) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.match(e.message, message);
        return true;
      });
    }
    assert.equal(workerHandles(), before);
  } finally {
    rgb.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
