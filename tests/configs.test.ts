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

Deno.test("the paper recipes carry the paper's hyperparameters", () => {
  const load = (n: string) =>
    parseCommandLine(PRETRAIN_SCHEMA, ["--config", new URL(n, dir).pathname]).config;
  const v2 = load("slimclr_mocov2_r50_800ep.yaml");
  assert.deepEqual([
    v2.optim.lr,
    v2.ssl.queue,
    v2.ssl.temperature,
    v2.slim.start_epoch,
    v2.schedule.epochs,
  ], [
    0.2,
    65536,
    0.2,
    400,
    800,
  ]);
  const v3 = load("slimclr_mocov3_r50_300ep.yaml");
  assert.deepEqual([v3.optim.name, v3.optim.lr, v3.slim.start_lr, v3.ssl.momentum], [
    "lars",
    1.2,
    3.2,
    0.99,
  ]);
  const simclr = load("slimclr_simclr_r50_100ep.yaml");
  assert.deepEqual([simclr.optim.lr, simclr.ssl.temperature, simclr.slim.start_epoch], [
    2.4,
    0.1,
    50,
  ]);
});
