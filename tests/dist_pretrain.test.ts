import assert from "node:assert/strict";
import { join } from "node:path";
import { hasBackend } from "../lib/dist/mod.ts";
import { readMetrics } from "../lib/log/progress.ts";

const root = new URL("..", import.meta.url).pathname;

/** Runs `task` on 2 local ranks through the launcher; fails the test if any rank fails. */
async function launch2(task: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(root, "tasks/launch.ts"), "--nproc", "2", join(root, task), ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
}

Deno.test({
  name: "pretrain runs data-parallel under the launcher: rank 0 writes the run, ranks agree",
  ignore: !hasBackend("gloo"),
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      await launch2("tasks/pretrain.ts", [
        "--run.out",
        dir,
        "--run.name",
        "ddp",
        "--data.subset",
        "256",
        "--data.batch_size",
        "32",
        "--ssl.queue",
        "128",
        "--model.base_width",
        "4",
        "--model.widths",
        "1,0.5",
        "--schedule.epochs",
        "1",
        "--run.knn_every",
        "0",
        "--run.knn_samples",
        "256",
        "--run.threads",
        "1",
        "--run.log_every",
        "1",
        "--quiet",
      ]);
      // 256 samples over 2 ranks of 32 per step: 4 optimizer steps, logged once by rank 0.
      const train = readMetrics(join(dir, "ddp", "metrics.jsonl")).filter((r) =>
        r.kind === "train"
      );
      assert.equal(train.length, 4);
      const summary = JSON.parse(await Deno.readTextFile(join(dir, "ddp", "summary.json")));
      assert.equal(summary.steps, 4);
      assert.equal(summary.widths.length, 2);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "supervised runs data-parallel under the launcher",
  ignore: !hasBackend("gloo"),
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      await launch2("tasks/supervised.ts", [
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
        "--run.threads",
        "1",
      ]);
      // 512 samples over 2 ranks of 64 per step: 4 steps; rank 0 alone writes the summary.
      const summary = JSON.parse(await Deno.readTextFile(join(dir, "sup", "summary.json")));
      assert.equal(summary.steps, 4);
      assert.equal(summary.widths.length, 2);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "probe runs data-parallel under the launcher",
  ignore: !hasBackend("gloo"),
  fn: async () => {
    const { models } = await import("../mod.ts");
    const dir = await Deno.makeTempDir();
    const net = new models.SlimmableResNet({
      arch: "resnet18",
      stem: "small",
      inChannels: 1,
      baseWidth: 4,
      widths: [1, 0.5],
      head: "mocov2_slim",
      numClasses: 16,
    });
    try {
      const model = join(dir, "model.pt");
      await models.saveModel(model, net);
      await launch2("tasks/probe.ts", [
        "--model",
        model,
        "--data.subset",
        "512",
        "--probe.epochs",
        "2",
        "--run.threads",
        "1",
      ]);
      const out = JSON.parse(await Deno.readTextFile(join(dir, "probe.json")));
      assert.equal(out.backbone_unchanged, true);
      assert.equal(out.widths.length, 2);
    } finally {
      net.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "a stop signal that reaches one rank stops every rank after the same step, with a checkpoint",
  ignore: !hasBackend("gloo"),
  fn: async () => {
    const { spawnRanks } = await import("../lib/dist/launcher.ts");
    const dir = await Deno.makeTempDir();
    const lines: string[] = [];
    const ranks = spawnRanks({
      nproc: 2,
      command: [
        Deno.execPath(),
        "run",
        "-A",
        join(root, "tasks/pretrain.ts"),
        ...["--run.out", dir, "--run.name", "stop", "--data.subset", "256"],
        ...["--data.batch_size", "32", "--ssl.queue", "128", "--model.base_width", "4"],
        ...["--model.widths", "1,0.5", "--schedule.epochs", "500", "--run.knn_every", "0"],
        ...["--run.ckpt_every", "0", "--run.threads", "1", "--run.log_every", "1", "--quiet"],
      ],
      onLine: (rank, _stream, line) => lines.push(`[${rank}] ${line}`),
      failFast: false,
    });
    // Without agreement, rank 0 would wait in the next gradient all-reduce for a rank that left.
    const deadline = setTimeout(() => ranks.stopAll(), 120_000);
    try {
      const metrics = join(dir, "stop", "metrics.jsonl");
      for (let i = 0; i < 1200 && readMetrics(metrics).length < 3; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      ranks.kill(1, "SIGTERM");
      const exits = await ranks.wait();
      assert.deepEqual(
        exits.map((e) => [e.code, e.stopped]),
        [[130, false], [130, false]],
        lines.join("\n"),
      );
      const ckpts = [...Deno.readDirSync(join(dir, "stop", "checkpoints"))].map((e) => e.name);
      assert.equal(ckpts.length, 1, ckpts.join(", "));
      const steps = readMetrics(metrics).filter((r) => r.kind === "train").map((r) => r.step);
      assert.match(ckpts[0], new RegExp(`_s${steps[steps.length - 1]}\\.pt$`));
    } finally {
      clearTimeout(deadline);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
