import assert from "node:assert/strict";
import { join } from "node:path";
import { readCheckpoint } from "../lib/train/checkpoint.ts";
import { readMetrics } from "../lib/log/progress.ts";
import { pretrain } from "../tasks/pretrain.ts";
import { tinyConfig, tinyPretrain } from "./fixtures/tiny_pretrain.ts";

/** Whether two files' bytes are identical. */
const sameBytes = (a: Uint8Array, b: Uint8Array) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** Runs the tiny pretraining in its own process (its own thread count and RNG state). */
async function tinyRun(dir: string, ...args: string[]): Promise<{ status: string; step: number }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./fixtures/tiny_pretrain.ts", import.meta.url).pathname,
      dir,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
}

Deno.test("pretrain → checkpoint → resume equals an uninterrupted run, bit for bit", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const full = await tinyRun(join(dir, "a"));
    assert.equal(full.status, "completed");
    assert.equal(full.step, 16);
    const first = await tinyRun(join(dir, "b"), "--run.max_steps=6");
    assert.equal(first.status, "max_steps");
    // What a run killed after its step-6 checkpoint leaves behind: rows of steps 7–9 and a row
    // torn mid-write.
    const killed = [7, 8, 9].map((step) => JSON.stringify({ kind: "train", step, loss: -1 }));
    await Deno.writeTextFile(
      join(dir, "b", "metrics.jsonl"),
      killed.join("\n") + '\n{"kind":"train","st',
      { append: true },
    );
    const rest = await tinyRun(join(dir, "b"), "--resume", "auto");
    assert.equal(rest.step, 16);
    const a = await Deno.readFile(join(dir, "a", "final.safetensors"));
    const b = await Deno.readFile(join(dir, "b", "final.safetensors"));
    assert.ok(a.length > 1000 && sameBytes(a, b), "states differ");

    const log = readMetrics(join(dir, "a", "metrics.jsonl"));
    const train = log.filter((r) => r.kind === "train");
    assert.equal(train.length, 16);
    assert.ok(
      "loss/w0.5" in train[15] && !("loss/w0.5" in train[0]),
      "slow start: w0.5 only after epoch 0.5",
    );
    assert.ok(log.some((r) => r.kind === "eval" && "knn/w0.5" in r));
    const config = JSON.parse(await Deno.readTextFile(join(dir, "a", "config.json")));
    assert.equal(config.model.base_width, 4);

    // Epoch rows: the mean of the epoch's step losses, once per epoch.
    const epochs = log.filter((r) => r.kind === "epoch");
    assert.deepEqual(epochs.map((r) => [r.step, r.steps]), [[8, 8], [16, 8]]);
    const mean = (rows: Record<string, unknown>[]) =>
      rows.reduce((s, r) => s + (r.loss as number), 0) / rows.length;
    assert.ok(Math.abs((epochs[1].loss as number) - mean(train.slice(8))) < 1e-6);
    // The resumed run logs every step once: the killed run's rows after step 6 are gone.
    const resumed = readMetrics(join(dir, "b", "metrics.jsonl"));
    const steps = resumed.filter((r) => r.kind === "train").map((r) => r.step);
    assert.deepEqual(steps, train.map((r) => r.step));
    // The epoch split by the resume gets the row an uninterrupted run writes.
    const means = (rows: Record<string, unknown>[]) =>
      rows.filter((r) => r.kind === "epoch").map((
        { time: _t, seconds: _s, images_per_s: _i, ...r },
      ) => r);
    assert.deepEqual(means(resumed), means(log));
    // The best widest-width kNN is kept in the checkpoint and survives the resume.
    const ckpt = async (run: string) => {
      const folder = join(dir, run, "checkpoints");
      const names = [...Deno.readDirSync(folder)].map((e) => e.name).sort();
      return await readCheckpoint(join(folder, names[names.length - 1]));
    };
    const knn1 = log.filter((r) => r.kind === "eval").map((r) => r["knn/w1"] as number);
    const best = (await ckpt("a")).best as { metric: string; value: number; step: number };
    assert.equal(best.metric, "knn/w1");
    assert.ok(Math.abs(best.value * 100 - Math.max(...knn1)) < 1e-9);
    assert.deepEqual((await ckpt("b")).best, best);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("BatchNorm recalibration: monitors leave training bit for bit as it was; the finished model keeps it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const run = (name: string, images: number, ...extra: string[]) =>
      tinyRun(join(dir, name), `--run.bn_recalibrate=${images}`, ...extra);
    const read = (name: string) => Deno.readFile(join(dir, name, "final.safetensors"));
    // Stopped before the end: only the per-epoch monitors ran, with and without recalibration.
    await run("stopped", 0, "--run.max_steps=12");
    await run("stopped_recal", 40, "--run.max_steps=12");
    assert.ok(sameBytes(await read("stopped"), await read("stopped_recal")), "training changed");
    const evals = (name: string) =>
      readMetrics(join(dir, name, "metrics.jsonl")).filter((r) => r.kind === "eval").map((r) =>
        Object.entries(r).filter(([k]) => k.startsWith("knn/"))
      );
    assert.notDeepEqual(evals("stopped"), evals("stopped_recal"), "the monitor saw no change");
    // A finished run: the model keeps statistics recalibrated on the bank's first 40 images.
    await run("finished", 0);
    await run("finished_recal", 40);
    const [c, d] = [await read("finished"), await read("finished_recal")];
    assert.ok(c.length === d.length && !sameBytes(c, d), "statistics not kept");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resuming with a config that does not fit names the keys", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r = await tinyPretrain(dir, tinyConfig(["--run.max_steps=2"]));
    for (const t of r.state.values()) t.dispose();
    await assert.rejects(
      () => tinyPretrain(dir, tinyConfig(["--model.widths=1,0.25"]), "auto"),
      /does not fit this config: model\.widths is \[1,0\.5\] there, \[1,0\.25\] here/,
    );
    // Another seed would draw other batches: not the run that was stopped.
    await assert.rejects(
      () => tinyPretrain(dir, tinyConfig(["--run.seed=7"]), "auto"),
      /does not fit this config: run\.seed is 0 there, 7 here/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SIGTERM mid-epoch stops cleanly with a loadable checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./fixtures/tiny_pretrain.ts", import.meta.url).pathname,
        dir,
        "--schedule.epochs=200",
        // No checkpoint or kNN pass until the end: the loop itself must notice the signal.
        "--run.ckpt_every=0",
        "--run.knn_every=0",
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // Wait until training is under way, then ask it to stop.
    const metrics = join(dir, "metrics.jsonl");
    for (
      let i = 0;
      i < 600 && readMetrics(metrics).filter((r) => r.kind === "train").length < 3;
      i++
    ) {
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill("SIGTERM");
    const out = await child.output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const line = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
    assert.equal(line.status, "interrupted");
    assert.ok(line.step >= 3 && line.step < 200 * 8);
    const rec = await readCheckpoint(line.checkpoint);
    assert.equal(rec.step, line.step);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bf16 autocast training runs on the CPU", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { result, state } = await tinyPretrain(
      dir,
      tinyConfig(["--run.amp=bf16", "--run.max_steps=3"]),
    );
    for (const t of state.values()) t.dispose();
    assert.equal(result.status, "max_steps");
    assert.ok(result.lastMetrics && Number.isFinite(result.lastMetrics.loss));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a new pretraining run refuses a folder that holds an earlier run", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const earlier = join(dir, "earlier");
    await Deno.mkdir(earlier);
    await Deno.writeTextFile(join(earlier, "config.json"), "{}\n");
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../tasks/pretrain.ts", import.meta.url).pathname,
        "--run-dir",
        earlier,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 2);
    assert.match(
      new TextDecoder().decode(out.stderr),
      /earlier already holds a run; continue it with --resume auto --run-dir .*earlier/,
    );
    assert.equal(await Deno.readTextFile(join(earlier, "config.json")), "{}\n"); // untouched
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--resume auto without a run name is an error: an unnamed run has nothing to resume", async () => {
  await assert.rejects(
    () => pretrain(["--resume", "auto", "--run.name", ""]),
    /--resume auto needs 'run\.name' or --run-dir/,
  );
});

Deno.test("a subset larger than the dataset is an error naming data.subset", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      () => pretrain(["--data.subset", "100000", "--run.out", dir, "--run.name", "big"]),
      /'data\.subset' asks for 100000 images but fashion-mnist\/train has 60000/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a weight average is the finished model, and resumes bit for bit", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const read = (name: string) => Deno.readFile(join(dir, name, "final.safetensors"));
    await tinyRun(join(dir, "plain"), "--run.knn_every=0");
    await tinyRun(join(dir, "ema"), "--run.knn_every=0", "--run.weight_ema=0.9");
    const first = await tinyRun(
      join(dir, "split"),
      "--run.knn_every=0",
      "--run.weight_ema=0.9",
      "--run.max_steps=6",
    );
    assert.equal(first.status, "max_steps");
    await tinyRun(
      join(dir, "split"),
      "--run.knn_every=0",
      "--run.weight_ema=0.9",
      "--resume",
      "auto",
    );
    const [plain, ema, split] = [await read("plain"), await read("ema"), await read("split")];
    assert.ok(sameBytes(ema, split), "the resumed average differs");
    assert.ok(plain.length === ema.length && !sameBytes(plain, ema), "no average was kept");
    // The checkpoint holds the average and how many steps it has seen.
    const folder = join(dir, "ema", "checkpoints");
    const last = [...Deno.readDirSync(folder)].map((e) => e.name).sort().pop()!;
    const rec = await readCheckpoint(join(folder, last));
    assert.equal((rec.weight_ema as { updates: number }).updates, 16);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
