import assert from "node:assert/strict";
import { join } from "node:path";
import { parseCommandLine } from "../lib/config/cli.ts";
import { PRETRAIN_SCHEMA, validatePretrain } from "../lib/config/pretrain.ts";
import { ConfigError, defaults } from "../lib/config/schema.ts";

const parse = (args: string[]) => parseCommandLine(PRETRAIN_SCHEMA, args, { resume: "string" });

Deno.test("defaults, YAML recipes and flag overrides compose in order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const recipe = join(dir, "r.yaml");
    await Deno.writeTextFile(
      recipe,
      "method: simclr\nmodel:\n  widths: [1.0, 0.5]\noptim:\n  lr: 0.3\n",
    );
    const { config, flags } = parse([
      "--config",
      recipe,
      "--optim.lr=0.5",
      "--model.overlap",
      "false",
      "--resume",
      "x.pt",
      "--model.zero_init_residual",
    ]);
    assert.equal(config.method, "simclr");
    assert.deepEqual(config.model.widths, [1, 0.5]);
    assert.equal(config.optim.lr, 0.5);
    assert.equal(config.model.overlap, false);
    assert.equal(config.model.zero_init_residual, true);
    assert.equal(flags.resume, "x.pt");
    assert.equal(config.data.batch_size, defaults(PRETRAIN_SCHEMA).data.batch_size);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("unknown keys, wrong types and bad values are errors naming the key", async () => {
  assert.throws(
    () => parse(["--optim.lrr", "1"]),
    /^ConfigError: unknown flag --optim\.lrr \(did you mean optim\.lr\?\)$/,
  );
  assert.throws(
    () => parse(["--schedule.epoch", "3"]),
    /unknown flag --schedule\.epoch \(did you mean schedule\.epochs\?\)$/,
  );
  assert.throws(
    () => parseCommandLine(PRETRAIN_SCHEMA, ["--resum", "auto"], { resume: "string" }),
    /unknown flag --resum \(did you mean resume\?\)$/,
  );
  assert.throws(() => parse(["--ssl.queeu", "1"]), /\(did you mean ssl\.queue\?\)$/);
  // Nothing close: no suggestion.
  assert.throws(
    () => parse(["--optim.zzzzzz", "1"]),
    /^ConfigError: unknown flag --optim\.zzzzzz$/,
  );
  assert.throws(() => parse(["--lr", "1"]), /unknown flag --lr \(did you mean optim\.lr\?\)/);
  assert.throws(
    () => parse(["--optim.lr", "fast"]),
    /--optim\.lr: 'optim\.lr' expected a number, got "fast"/,
  );
  assert.throws(() => parse(["--method", "byol"]), /expected one of mocov2, mocov3, simclr/);
  assert.throws(() => parse(["--data.recipe", "nope"]), /'data\.recipe' expected one of mocov2,/);
  assert.throws(() => parse(["--data.batch_size", "12.5"]), /expected an integer/);
  assert.throws(() => parse(["--model.widths", "1,0.5,2"]), /entries must be ≤ 1/);
  assert.throws(() => parse(["--optim.lr"]), /--optim\.lr needs a value/);
  const dir = await Deno.makeTempDir();
  try {
    const bad = join(dir, "bad.yaml");
    await Deno.writeTextFile(bad, "optim:\n  learning_rate: 0.1\n");
    assert.throws(
      () => parse(["--config", bad]),
      new RegExp(`${bad}: unknown key 'optim\\.learning_rate'`),
    );
    await Deno.writeTextFile(bad, "model: 3\n");
    assert.throws(() => parse(["--config", bad]), /'model' must be a mapping/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.throws(() => parse(["--config", "/nonexistent.yaml"]), ConfigError);
});

Deno.test("impossible combinations are errors naming the keys", () => {
  const check = (args: string[], re: RegExp, world = 1) =>
    assert.throws(() => validatePretrain(parse(args).config, world), re);
  check(["--ssl.queue", "1000"], /'ssl\.queue' \(1000\) must be a multiple of the global batch/);
  check(["--ssl.queue", "4096", "--data.batch_size", "256"], /× 32 processes/, 32);
  check(["--model.widths", "0.5,1"], /strictly descending/);
  check(["--slim.start_lr", "3.2"], /'slim\.start_lr' needs a positive 'slim\.start_epoch'/);
  check(["--optim.name", "lars", "--optim.nesterov"], /'optim\.nesterov' applies to/);
  check(
    ["--model.stem", "small_s2", "--data.image_size", "12"],
    /'model\.stem: small_s2' downsamples 16×/,
  );
  check(["--model.stem", "big"], /model\.stem/);
  check(
    ["--slim.width_weights", "4,1"],
    /'slim\.width_weights' has 2 entries; 'model\.widths' has 4/,
  );
  check(["--slim.width_weights", "0,1,1,1"], /widest network a positive weight/);
  check(["--run.bn_recalibrate", "1"], /'run\.bn_recalibrate' needs at least 2 images/);
  check(["--run.bn_recalibrate", "-5"], /run\.bn_recalibrate/);
  const steps = (m: string) => ["--schedule.epochs", "90", "--schedule.decay", "step", m];
  check(["--schedule.decay", "step"], /'schedule\.decay': step needs 'schedule\.milestones'/);
  check(["--schedule.milestones", "30"], /'schedule\.milestones' \[30\] apply to/);
  check([...steps("--schedule.milestones=60,30")], /'schedule\.milestones' must be ascending/);
  check([...steps("--schedule.milestones=30,90")], /90 is not inside training/);
  check(["--schedule.warmup_epochs", "1"], /'schedule\.warmup_epochs' must be shorter/);
  validatePretrain(parse(steps("--schedule.milestones=30,60")).config);
  validatePretrain(parse([]).config);
});
