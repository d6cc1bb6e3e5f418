import assert from "node:assert/strict";
import { join } from "node:path";
import { readMetrics } from "../lib/log/progress.ts";
import { manualSeed, models } from "../mod.ts";
import { ConfigError } from "../lib/config/schema.ts";
import { readCheckpoint } from "../lib/train/checkpoint.ts";
import { probe } from "../tasks/probe.ts";
import { tinyEncoder, workerHandles } from "./_helpers.ts";

const TASK = new URL("../tasks/probe.ts", import.meta.url).pathname;

/** A tiny pretrained encoder (3×3/2 stem, base width 4) saved at `path`. */
async function saveEncoder(path: string, seed: number): Promise<void> {
  manualSeed(seed);
  const net = tinyEncoder({ stem: "small_s2", numClasses: 16 });
  try {
    await models.saveModel(path, net);
  } finally {
    net.dispose();
  }
}

/** Asserts two probe_model.pt files hold the same tensors, bit for bit (the heads included). */
async function assertSameProbe(a: string, b: string): Promise<void> {
  const [x, y] = [await models.loadModel(a), await models.loadModel(b)];
  try {
    const [sx, sy] = [x.stateDict(), y.stateDict()];
    assert.deepEqual([...sx.keys()], [...sy.keys()]);
    assert.ok([...sx.keys()].some((k) => k.startsWith("fc.")));
    for (const [k, t] of sx) assert.ok(t.equal(sy.get(k)!), `${k} differs`);
  } finally {
    x.dispose();
    y.dispose();
  }
}

const exists = (p: string) => Deno.stat(p).then(() => true, () => false);
const checkpointNames = (dir: string) =>
  [...Deno.readDirSync(join(dir, "probe_checkpoints"))].map((e) => e.name).sort();

Deno.test("probe: SIGTERM saves the current step and exits 130; --resume auto ends on the uninterrupted heads bit for bit", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = join(dir, "model.pt");
    await saveEncoder(model, 0);
    // Cached features (the default path), 16 steps per epoch, 16000 steps in all (a step of the
    // heads takes about 0.2 ms here, so seconds after the first epoch even on a machine several
    // times faster: the run notices a signal when it next yields to the event loop, every 500 ms).
    const args = (out: string) => [
      "--model",
      model,
      "--out",
      join(dir, out),
      "--data.subset",
      "512",
      "--data.batch_size",
      "32",
      "--data.image_size",
      "16",
      "--probe.epochs",
      "1000",
      "--probe.ckpt_every",
      "0",
    ];
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", TASK, ...args("stopped")],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let stderr = "";
    let sent = false;
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr += chunk;
      if (!sent && stderr.includes("probe: epoch 1 loss")) {
        child.kill("SIGTERM");
        sent = true;
      }
    }
    const { code } = await child.status;
    assert.ok(sent, stderr);
    assert.equal(code, 130, stderr);
    const m =
      /stopped by a signal at step (\d+) of 16000; checkpoint (\S+)\. Continue with --resume auto/
        .exec(stderr);
    assert.ok(m, stderr);
    const step = Number(m[1]);
    assert.ok(step >= 16 && step < 16000, stderr);
    // ckpt_every 0: the only checkpoint is the one the signal wrote, at the step it stopped.
    const stopped = join(dir, "stopped");
    assert.deepEqual(checkpointNames(stopped), [
      `ckpt_e${String(Math.floor(step / 16)).padStart(4, "0")}_s${step}.pt`,
    ]);
    assert.equal(m[2], join(stopped, "probe_checkpoints", checkpointNames(stopped)[0]));
    assert.equal(await exists(join(stopped, "probe.json")), false);
    // It holds the heads only, the backbone's file and fingerprint, and the resolved config.
    const rec = await readCheckpoint(m[2]);
    assert.equal(rec.task, "probe");
    assert.equal(rec.step, step);
    const heads = [...(rec.heads as Map<string, unknown>).keys()];
    assert.ok(heads.length > 0 && heads.every((k) => k.startsWith("fc.")), heads.join(", "));
    assert.equal((rec.backbone as { model: string }).model, model);
    assert.equal((rec.config as { probe: { epochs: number } }).probe.epochs, 1000);

    const reference = await probe(args("whole"));
    assert.equal(reference!.steps, 16000);
    const before = workerHandles();
    const resumed = await probe([...args("stopped"), "--resume", "auto"]);
    assert.equal(workerHandles(), before);
    assert.equal(resumed!.status, "completed");
    assert.equal(resumed!.steps, 16000);
    assert.equal(resumed!.resumed_from, m[2]);
    await assertSameProbe(join(dir, "whole", "probe_model.pt"), join(stopped, "probe_model.pt"));
    assert.deepEqual(resumed!.widths, reference!.widths);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("probe on the loader path: max_steps stops mid-epoch, another backbone is refused, the resumed heads equal the uninterrupted ones", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = join(dir, "model.pt");
    const other = join(dir, "other.pt");
    await saveEncoder(model, 0);
    await saveEncoder(other, 1);
    // Augmented batches through the frozen backbone: 4 steps per epoch, 8 in all.
    const args = (out: string, m = model) => [
      "--model",
      m,
      "--out",
      join(dir, out),
      "--probe.cache_features",
      "false",
      "--data.subset",
      "256",
      "--data.batch_size",
      "64",
      "--data.image_size",
      "16",
      "--probe.epochs",
      "2",
      "--probe.log_every",
      "2",
    ];
    const reference = await probe(args("whole"));
    assert.equal(reference!.steps, 8);
    const before = workerHandles();
    const stopped = await probe([...args("stopped"), "--probe.max_steps", "3"]);
    assert.deepEqual(
      { status: stopped!.status, steps: stopped!.steps, total: stopped!.total_steps },
      { status: "max_steps", steps: 3, total: 8 },
    );
    const out = join(dir, "stopped");
    assert.equal(stopped!.checkpoint, join(out, "probe_checkpoints", "ckpt_e0000_s3.pt"));
    assert.equal(await exists(join(out, "probe.json")), false);
    // A new probe into the folder would prune the stopped one's checkpoints.
    await assert.rejects(() => probe(args("stopped")), (e: Error) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.match(e.message, new RegExp(`^${join(out, "probe_checkpoints")} holds an unfinished`));
      assert.match(e.message, /--out DIR, or continue that probe with --resume auto/);
      return true;
    });
    // The checkpoint's heads were trained on model.pt's backbone, not on other.pt's.
    await assert.rejects(
      () => probe([...args("stopped", other), "--resume", "auto"]),
      (e: Error) => {
        assert.match(e.message, new RegExp(`^${stopped!.checkpoint}: `));
        assert.match(e.message, new RegExp(`trained on the backbone of ${model} `));
        assert.match(e.message, new RegExp(`but --model ${other} holds another backbone`));
        return true;
      },
    );
    // Other batches would not continue the same run either.
    await assert.rejects(
      () => probe([...args("stopped"), "--data.batch_size", "32", "--resume", "auto"]),
      new RegExp(
        `^SerializationError: ${stopped!.checkpoint}: the checkpoint does not fit this ` +
          `probe: data\\.batch_size is 64 there, 32 here$`,
      ),
    );
    assert.deepEqual(checkpointNames(out), ["ckpt_e0000_s3.pt"]);
    const resumed = await probe([...args("stopped"), "--resume", "auto"]);
    assert.equal(workerHandles(), before);
    assert.equal(resumed!.steps, 8);
    // Checkpoints every epoch and at the end, the last two kept.
    assert.deepEqual(checkpointNames(out), ["ckpt_e0001_s4.pt", "ckpt_e0002_s8.pt"]);
    await assertSameProbe(join(dir, "whole", "probe_model.pt"), join(out, "probe_model.pt"));
    assert.deepEqual(resumed!.widths, reference!.widths);
    // The stopped and resumed probe logged the rows of the uninterrupted one: train rows every 2
    // steps, an epoch row at steps 4 and 8 (its loss summed across the stop), the test row.
    const rows = (folder: string) =>
      readMetrics(join(dir, folder, "probe_metrics.jsonl")).map((r) => {
        const { time: _t, seconds: _s, images_per_s: _i, ...rest } = r;
        return rest;
      });
    const whole = rows("whole");
    assert.deepEqual(
      whole.map((r) => `${r.kind}@${r.step}`),
      ["train@2", "train@4", "epoch@4", "train@6", "train@8", "epoch@8", "test@8"],
    );
    assert.deepEqual(rows("stopped"), whole);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("probe --resume auto without a checkpoint never replaces an earlier probe's output", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "probe.json"), "{}\n");
    await assert.rejects(
      () => probe(["--model", join(dir, "model.pt"), "--resume", "auto"]),
      (e: Error) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.match(e.message, new RegExp(`^${join(dir, "probe.json")} already holds an earlier`));
        return true;
      },
    );
    assert.equal(await Deno.readTextFile(join(dir, "probe.json")), "{}\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
