import assert from "node:assert/strict";
import { join } from "node:path";
import { parseCommandLine, resumeCommandLine } from "../lib/config/cli.ts";
import { PRETRAIN_SCHEMA } from "../lib/config/pretrain.ts";
import { ConfigError } from "../lib/config/schema.ts";
import { Progress } from "../lib/log/progress.ts";
import { RESUME_MAY_CHANGE, RESUME_PER_INVOCATION } from "../lib/train/run_dir.ts";

const FLAGS = { resume: "string", "run-dir": "string" } as const;

Deno.test("a resume continues with the run's saved config; only outcome-neutral overrides apply", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // The original run: a recipe plus overrides, saved as the trainer saves it.
    const original = parseCommandLine(PRETRAIN_SCHEMA, [
      "--config",
      "configs/demo_fashion_mnist.yaml",
      "--data.subset=4096",
      "--run.seed=3",
    ]).config;
    const saved = join(dir, "config.json");
    await Deno.writeTextFile(saved, JSON.stringify(original, null, 2));
    const resume = (args: string[]) =>
      resumeCommandLine(
        PRETRAIN_SCHEMA,
        args,
        FLAGS,
        saved,
        RESUME_MAY_CHANGE,
        RESUME_PER_INVOCATION,
      );

    // Nothing repeated: the saved config, overrides included.
    const plain = resume(["--resume", "auto", "--run-dir", dir]);
    assert.deepEqual(plain.config, original);
    assert.equal(plain.flags.resume, "auto");
    // Logging, checkpoint cadence and the stop point may change.
    const logged = resume(["--resume", "auto", "--run.log_every=1", "--run.max_steps=9"]);
    assert.equal(logged.config.run.log_every, 1);
    assert.equal(logged.config.run.max_steps, 9);
    assert.equal(logged.config.data.subset, 4096);
    // A recipe given again is not read (the saved config holds it and the overrides).
    const recipe = resume(["--config", "configs/demo_fashion_mnist.yaml", "--resume", "auto"]);
    assert.deepEqual(recipe.config, original);
    assert.deepEqual(recipe.recipes, ["configs/demo_fashion_mnist.yaml"]);
    // Anything that changes the result is refused, naming the key and both values.
    assert.throws(
      () => resume(["--resume", "auto", "--optim.lr=0.1"]),
      (e) =>
        e instanceof ConfigError &&
        /optim\.lr is 0\.\d+ there, 0\.1 here/.test(e.message),
    );
    assert.throws(
      () => resume(["--resume", "auto", "--run.seed=4"]),
      /run\.seed is 3 there, 4 here/,
    );
    // A run stopped by run.max_steps continues to the end unless a new stop point is given.
    const stopped = { ...original, run: { ...original.run, max_steps: 3 } };
    await Deno.writeTextFile(saved, JSON.stringify(stopped, null, 2));
    assert.equal(resume(["--resume", "auto"]).config.run.max_steps, 0);
    assert.equal(resume(["--resume", "auto", "--run.max_steps=5"]).config.run.max_steps, 5);
    // Repeating an override with the run's own value is fine.
    assert.equal(resume(["--resume", "auto", "--data.subset=4096"]).config.data.subset, 4096);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("after a resume, img/s and the ETA count only this process's steps", async () => {
  const lines: string[] = [];
  const out = (firstStep: number) =>
    new Progress(
      100,
      {
        isTerminal: () => false,
        writeSync: (
          b: Uint8Array,
        ) => (lines.push(`${firstStep} ${new TextDecoder().decode(b)}`), b.length),
      },
      0,
      firstStep,
    );
  const [fresh, resumed] = [out(0), out(50)];
  await new Promise((r) => setTimeout(r, 200));
  // Both are at step 60 of 100 with 600 images seen by the run; the resumed one did 10 steps.
  fresh.update(60, 0.6, {}, 600);
  resumed.update(60, 0.6, {}, 600);
  const rate = (p: string) => Number(lines.find((l) => l.startsWith(p))!.match(/(\d+) img\/s/)![1]);
  const ratio = rate("50 ") / rate("0 ");
  assert.ok(Math.abs(ratio - 10 / 60) < 0.02, `resumed/fresh rate ${ratio}`);
});
