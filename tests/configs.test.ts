import assert from "node:assert/strict";
import { parseCommandLine } from "../lib/config/cli.ts";
import { PRETRAIN_SCHEMA, validatePretrain } from "../lib/config/pretrain.ts";
import { PROBE_SCHEMA } from "../tasks/probe.ts";
import { SUPERVISED_SCHEMA } from "../tasks/supervised.ts";

const dir = new URL("../configs/", import.meta.url);

Deno.test("every recipe under configs/ is valid for its task", () => {
  const files = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".yaml"))
    .sort();
  assert.ok(files.length >= 8);
  for (const name of files) {
    const path = new URL(name, dir).pathname;
    if (name.startsWith("lincls_") || name.includes("_probe_")) {
      parseCommandLine(PROBE_SCHEMA, ["--config", path]);
    } else if (name.startsWith("supervised_") || name.includes("_supervised_")) {
      parseCommandLine(SUPERVISED_SCHEMA, ["--config", path]);
    } else {
      const { config } = parseCommandLine(PRETRAIN_SCHEMA, ["--config", path]);
      // The paper's runs use 4 or 8 processes; the queue must fit their global batch.
      validatePretrain(config, config.method === "mocov2" ? 4 : 8);
    }
  }
});

/** A config's value at a dotted key. */
function at(config: unknown, key: string): unknown {
  return key.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], config);
}

/** Checks every listed key of a recipe against the reference script's value (spec §1.3). */
function assertRecipe(
  schema: typeof PRETRAIN_SCHEMA | typeof PROBE_SCHEMA | typeof SUPERVISED_SCHEMA,
  name: string,
  expected: Record<string, unknown>,
): void {
  const { config } = parseCommandLine(schema, ["--config", new URL(name, dir).pathname]);
  for (const [key, value] of Object.entries(expected)) {
    assert.deepEqual(at(config, key), value, `${name}: ${key}`);
  }
}

/** Settings every SlimCLR pretraining script shares (spec §1.3). */
const SLIM_COMMON = {
  "model.arch": "resnet50",
  "model.stem": "imagenet",
  "model.base_width": 64,
  "model.widths": [1, 0.75, 0.5, 0.25],
  "model.zero_init_residual": true,
  "slim.loss_weights": 5,
  "slim.distill": "seed",
  "slim.aux_loss_w": 0.5,
  "optim.momentum": 0.9,
  "schedule.decay": "cosine",
  "data.image_size": 224,
  "run.seed": 3407,
  "run.amp": "fp16",
};

Deno.test("the paper recipes carry every hyperparameter of the reference scripts", () => {
  const mocov2 = {
    ...SLIM_COMMON,
    method: "mocov2",
    "ssl.dim": 128,
    "ssl.queue": 65536,
    "ssl.momentum": 0.999,
    "ssl.temperature": 0.2,
    "slim.start_lr": 0,
    "slim.student_t": 5,
    "slim.teacher_t": 5,
    "slim.full_distill": false,
    "model.overlap": true,
    "data.recipe": "mocov2",
    "data.batch_size": 256,
    "optim.name": "sgd",
    "optim.lr": 0.2,
    "optim.weight_decay": 1e-4,
    "schedule.warmup_epochs": 10,
    "run.sync_bn": false,
  };
  assertRecipe(PRETRAIN_SCHEMA, "slimclr_mocov2_r50_200ep.yaml", {
    ...mocov2,
    "schedule.epochs": 200,
    "slim.start_epoch": 100,
  });
  assertRecipe(PRETRAIN_SCHEMA, "slimclr_mocov2_r50_800ep.yaml", {
    ...mocov2,
    "schedule.epochs": 800,
    "slim.start_epoch": 400,
  });
  assertRecipe(PRETRAIN_SCHEMA, "slimclr_mocov3_r50_300ep.yaml", {
    ...SLIM_COMMON,
    method: "mocov3",
    "ssl.dim": 256,
    "ssl.mlp_dim": 4096,
    "ssl.momentum": 0.99,
    "ssl.temperature": 1,
    "slim.start_epoch": 150,
    "slim.start_lr": 3.2,
    "slim.student_t": 1,
    "slim.teacher_t": 1,
    "data.recipe": "mocov3",
    "data.batch_size": 128,
    "optim.name": "lars",
    "optim.lr": 1.2,
    "optim.weight_decay": 1e-6,
    "schedule.epochs": 300,
    "schedule.warmup_epochs": 9.9,
    "run.sync_bn": true,
  });
  assertRecipe(PRETRAIN_SCHEMA, "slimclr_simclr_r50_100ep.yaml", {
    ...SLIM_COMMON,
    method: "simclr",
    "ssl.mlp_dim": 2048,
    "ssl.temperature": 0.1,
    "slim.start_epoch": 50,
    "slim.start_lr": 0,
    "slim.student_t": 5,
    "slim.teacher_t": 5,
    "data.recipe": "simclr",
    "data.batch_size": 128,
    "optim.name": "lars",
    "optim.lr": 2.4,
    "optim.weight_decay": 1e-6,
    "schedule.epochs": 100,
    "schedule.warmup_epochs": 10,
    "run.sync_bn": true,
  });
});

Deno.test("the supervised S-ResNet-50 recipe carries the reference script's settings", () => {
  assertRecipe(SUPERVISED_SCHEMA, "supervised_sresnet50_100ep.yaml", {
    "model.arch": "resnet50",
    "model.stem": "imagenet",
    "model.base_width": 64,
    "model.widths": [1, 0.75, 0.5, 0.25],
    "model.head": "supervised",
    "model.inplace_distill": false,
    "data.recipe": "supervised",
    "data.batch_size": 128,
    "optim.lr": 0.2,
    "optim.momentum": 0.9,
    "optim.nesterov": false,
    "optim.weight_decay": 1e-4,
    "schedule.epochs": 100,
    "schedule.warmup_epochs": 5,
    "schedule.decay": "cosine",
    "run.seed": 3407,
    "run.amp": "fp16",
    "run.sync_bn": false,
  });
});

Deno.test("the linear-evaluation recipes carry the reference scripts' settings", () => {
  const common = {
    "data.recipe": "linear",
    "data.image_size": 224,
    "probe.momentum": 0.9,
    "probe.inplace_distill": true,
    "probe.mixed": true,
    "run.seed": 3407,
  };
  assertRecipe(PROBE_SCHEMA, "lincls_mocov2_r50.yaml", {
    ...common,
    "data.batch_size": 256,
    "probe.epochs": 100,
    "probe.lr": 60,
    "probe.weight_decay": 0,
    "probe.decay": "step",
    "probe.milestones": [60, 80],
  });
  for (const [name, wd] of [["lincls_mocov3_r50.yaml", 0], ["lincls_simclr_r50.yaml", 1e-6]]) {
    assertRecipe(PROBE_SCHEMA, name as string, {
      ...common,
      "data.batch_size": 128,
      "probe.epochs": 90,
      "probe.lr": 0.4,
      "probe.weight_decay": wd,
      "probe.decay": "cosine",
    });
  }
});
