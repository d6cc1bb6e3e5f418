import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError } from "../lib/config/schema.ts";
import { parseCommandLine } from "../lib/config/cli.ts";
import { PRETRAIN_SCHEMA } from "../lib/config/pretrain.ts";
import { SUPERVISED_SCHEMA, validateSupervised } from "../lib/config/supervised.ts";
import { cuda } from "../lib/device.ts";
import { readMetrics } from "../lib/log/progress.ts";
import { SlimmableResNet, type SlimmableResNetOptions } from "../lib/models/slimmable_resnet.ts";
import { saveModel } from "../lib/models/model_file.ts";
import { OrderedDict } from "../lib/serialize/pytypes.ts";
import { CheckpointManager, readCheckpoint } from "../lib/train/checkpoint.ts";
import { resumeMismatch, type SupervisedRun } from "../lib/train/supervised.ts";
import { supervised } from "../tasks/supervised.ts";
import { workerHandles } from "./_helpers.ts";

/**
 * A tiny run: 128 Fashion-MNIST images in batches of 32 (4 steps per epoch, 2 epochs), base width
 * 4 with the 3×3/2 stem, 100 test images, one thread (deterministic), metrics every 3 steps.
 */
const tiny = (dir: string, name: string, ...extra: string[]) => [
  "--run.out",
  dir,
  "--run.name",
  name,
  "--data.subset=128",
  "--data.batch_size=32",
  "--model.base_width=4",
  "--model.widths=1,0.5",
  "--model.stem=small_s2",
  "--model.inplace_distill",
  "--schedule.epochs=2",
  "--schedule.warmup_epochs=0.5",
  "--run.eval_samples=100",
  "--run.threads=1",
  "--run.log_every=3",
  "--quiet",
  ...extra,
];

const sameBytes = (a: Uint8Array, b: Uint8Array) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** Runs the task in this process; returns the summary and how many tensor handles it left. */
async function run(args: string[]): Promise<{ summary: Record<string, unknown>; leaked: number }> {
  const before = workerHandles();
  const path = await supervised(args);
  const leaked = workerHandles() - before;
  return { summary: JSON.parse(await Deno.readTextFile(path!)), leaked };
}

Deno.test("supervised: a run stopped mid-epoch and resumed equals an uninterrupted one bit for bit; epoch rows", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const first = await run(tiny(dir, "split", "--run.max_steps=3"));
    assert.equal(first.summary.status, "max_steps");
    assert.equal(first.summary.steps, 3);
    const full = await run(tiny(dir, "full"));
    assert.equal(full.summary.status, "completed");
    assert.equal(full.summary.steps, 8);
    const rest = await run(tiny(dir, "split", "--resume", "auto"));
    assert.equal(rest.summary.steps, 8);
    const model = (name: string) => Deno.readFile(join(dir, name, "model.pt"));
    const [a, b] = [await model("full"), await model("split")];
    assert.ok(a.length > 10_000 && sameBytes(a, b), "the resumed run's weights differ");
    // Live tensor handles are flat: runs of 3, 8 and 5 steps leave none behind.
    assert.equal(first.leaked, 0, "a 3-step run leaked tensor handles");
    assert.equal(full.leaked, 0, "an 8-step run leaked tensor handles");
    assert.equal(rest.leaked, 0, "a resumed 5-step run leaked tensor handles");

    // The last checkpoint holds what a resume needs, and the best test top-1.
    const ckpt = await readCheckpoint(join(dir, "full", "checkpoints", "ckpt_e0002_s8.pt"));
    assert.equal(ckpt.task, "supervised");
    assert.equal(ckpt.step, 8);
    assert.equal((ckpt.best as { metric: string }).metric, "top1/w1");
    assert.equal(typeof (ckpt.best as { value: number }).value, "number");
    assert.ok((ckpt.rng as Record<string, unknown>).default, "no RNG state");
    assert.ok(ckpt.optimizer && ckpt.config, "no optimizer state or config");
    assert.equal(ckpt.scaler, null);

    // metrics.jsonl: train rows every run.log_every steps and at the end, one row per epoch.
    const rows = (name: string, kind: string) =>
      readMetrics(join(dir, name, "metrics.jsonl")).filter((r) => r.kind === kind);
    assert.deepEqual(rows("full", "train").map((r) => r.step), [3, 6, 8]);
    assert.ok(rows("full", "train").every((r) => typeof r["loss/w0.5"] === "number"));
    const epochs = rows("full", "epoch");
    assert.deepEqual(epochs.map((r) => [r.epoch, r.step]), [[1, 4], [2, 8]]);
    for (const r of epochs) {
      assert.ok(Number.isFinite(r.loss) && (r.loss as number) > 0, JSON.stringify(r));
      assert.ok((r.lr as number) > 0 && (r.images_per_s as number) > 0, JSON.stringify(r));
    }
    // The epoch the interruption split has the same mean loss, from both halves.
    assert.deepEqual(rows("split", "epoch").map((r) => r.loss), epochs.map((r) => r.loss));
    assert.deepEqual(rows("full", "eval").map((r) => r.step), [4, 8]);
    const config = JSON.parse(await Deno.readTextFile(join(dir, "full", "config.json")));
    assert.equal(config.run.log_every, 3);
    assert.equal(config.run.device, "auto");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("supervised: config errors name the key", async () => {
  const dir = await Deno.makeTempDir();
  const bad = (flags: string[], message: RegExp) =>
    assert.rejects(() => supervised(tiny(dir, "bad", ...flags)), (e: Error) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.match(e.message, message);
      return true;
    });
  try {
    await bad(["--model.widths=0.5,1"], /'model\.widths' must be strictly descending/);
    await bad(["--schedule.warmup_epochs=2"], /'schedule\.warmup_epochs' must be shorter/);
    await bad(["--schedule.decay=step"], /'schedule\.decay': step needs 'schedule\.milestones'/);
    await bad(
      ["--schedule.milestones=1"],
      /'schedule\.milestones' \[1\] apply to 'schedule\.decay': step only/,
    );
    await bad(["--run.amp=fp16", "--run.device=cpu"], /'run\.amp: fp16' needs CUDA/);
    if (!cuda.isAvailable()) await bad(["--run.amp=fp16"], /'run\.amp: fp16' needs CUDA/);
    await bad(["--model.in_channels=3"], /'model\.in_channels' is 3 but fashion-mnist.* 1-channel/);
    await bad(["--run.log_every=0"], /run\.log_every/);
    // The shipped supervised recipes pass the same checks.
    for (const name of ["demo_supervised_fashion_mnist.yaml", "supervised_sresnet50_100ep.yaml"]) {
      const path = new URL(`../configs/${name}`, import.meta.url).pathname;
      validateSupervised(parseCommandLine(SUPERVISED_SCHEMA, ["--config", path]).config);
    }
    // Nothing was written for the refused runs.
    assert.equal([...Deno.readDirSync(dir)].length, 0);
    // --help lists the new keys (the schema drives it).
    const printed: unknown[] = [];
    const log = console.log;
    console.log = (...a: unknown[]) => printed.push(...a);
    try {
      assert.equal(await supervised(["--help"]), null);
    } finally {
      console.log = log;
    }
    for (const key of ["run.device", "run.amp", "run.log_every", "run.ckpt_every", "--run-dir"]) {
      assert.ok(String(printed[0]).includes(key), `--help lacks ${key}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("supervised: resuming a pretraining or mismatched checkpoint names the file and writes nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // A pretraining checkpoint (its record as lib/train/pretrain.ts writes it).
    const pretrain = await new CheckpointManager(join(dir, "pretrain", "checkpoints")).save(1, 8, {
      config: parseCommandLine(PRETRAIN_SCHEMA, []).config,
      model: new OrderedDict(),
      optimizer: { state: {}, param_groups: [] },
      rng: {},
    });
    await assert.rejects(
      () => supervised(tiny(dir, "fresh", "--resume", pretrain)),
      (e: Error) => {
        assert.ok(e.message.startsWith(pretrain), e.message);
        assert.match(
          e.message,
          /not a supervised checkpoint \(it holds a 'mocov2' pretraining run\)/,
        );
        return true;
      },
    );
    assert.throws(() => Deno.statSync(join(dir, "fresh")), Deno.errors.NotFound);

    // A supervised checkpoint of another model: every differing key is named.
    await supervised(tiny(dir, "sup", "--run.max_steps=1", "--run.eval_every=0"));
    const config = await Deno.readTextFile(join(dir, "sup", "config.json"));
    const metrics = await Deno.readTextFile(join(dir, "sup", "metrics.jsonl"));
    await assert.rejects(
      () =>
        supervised(
          tiny(dir, "sup", "--resume", "auto", "--model.widths=1,0.25", "--model.base_width=8"),
        ),
      // The run's saved config is what a resume continues: every override that would change the
      // result is named with both values, before anything is opened or written.
      new RegExp(
        "resuming the run of .*sup/config\\.json: " +
          "model\\.base_width is 4 there, 8 here; model\\.widths is \\[1,0\\.5\\] there, \\[1,0\\.25\\] here",
      ),
    );
    assert.equal(await Deno.readTextFile(join(dir, "sup", "config.json")), config);
    assert.equal(await Deno.readTextFile(join(dir, "sup", "metrics.jsonl")), metrics);

    // Another class count (a dataset with other labels) does not fit either.
    const rec = await readCheckpoint(join(dir, "sup", "checkpoints", "ckpt_e0000_s1.pt"));
    const c = parseCommandLine(SUPERVISED_SCHEMA, tiny(dir, "sup"), { quiet: "boolean" }).config;
    const saved = (rec.model as { config: SlimmableResNetOptions }).config;
    const net = new SlimmableResNet({ ...saved, numClasses: 5 });
    try {
      assert.deepEqual(resumeMismatch(rec, { config: c, net } as unknown as SupervisedRun), [
        "the classifier has 10 classes there, 5 here",
      ]);
    } finally {
      net.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("supervised: SIGTERM mid-epoch saves a checkpoint at the current step and exits cleanly", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../tasks/supervised.ts", import.meta.url).pathname,
        // No checkpoint or evaluation until the end: the loop itself must notice the signal.
        ...tiny(dir, "sig", "--schedule.epochs=200", "--run.ckpt_every=0", "--run.eval_every=0"),
        "--run.log_every=1",
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const metrics = join(dir, "sig", "metrics.jsonl");
    for (
      let i = 0;
      i < 600 && readMetrics(metrics).filter((r) => r.kind === "train").length < 3;
      i++
    ) {
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill("SIGTERM");
    const out = await child.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 130, stderr);
    const step = Number(/stopped by a signal at step (\d+)/.exec(stderr)?.[1]);
    assert.ok(step >= 3 && step < 800, stderr);
    const [ckpt] = new CheckpointManager(join(dir, "sig", "checkpoints")).list();
    assert.equal(ckpt.step, step);
    assert.equal((await readCheckpoint(ckpt.path)).step, step);
    assert.throws(() => Deno.statSync(join(dir, "sig", "summary.json")), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("supervised: bf16 autocast trains on the CPU", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = await supervised(
      tiny(dir, "bf16", "--run.amp=bf16", "--run.max_steps=2", "--run.eval_every=0"),
    );
    const summary = JSON.parse(await Deno.readTextFile(path!));
    assert.equal(summary.precision, "bf16 autocast");
    const [last] = readMetrics(join(dir, "bf16", "metrics.jsonl")).filter((r) =>
      r.kind === "train"
    );
    assert.equal(last.step, 2);
    assert.ok(Number.isFinite(last.loss) && (last.loss as number) > 0, JSON.stringify(last));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("supervised --test-only refuses an encoder and a model for other images, naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const save = async (name: string, o: Partial<SlimmableResNetOptions>) => {
      const net = new SlimmableResNet({ arch: "resnet18", baseWidth: 4, widths: [1, 0.5], ...o });
      try {
        await saveModel(join(dir, name), net);
      } finally {
        net.dispose();
      }
      return join(dir, name);
    };
    const encoder = await save("encoder.pt", { inChannels: 1, head: "mocov2_slim", numClasses: 8 });
    const rgb = await save("rgb.pt", { inChannels: 3, head: "supervised", numClasses: 10 });
    const testOnly = (model: string) =>
      supervised(["--test-only", "--model", model, "--run.eval_samples=64"]);
    await assert.rejects(
      () => testOnly(encoder),
      /evaluates a classifier, but .*encoder\.pt has a 'mocov2_slim' head/,
    );
    await assert.rejects(
      () => testOnly(rgb),
      /rgb\.pt takes 3-channel images, but 'data\.dataset' fashion-mnist has 1-channel/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
