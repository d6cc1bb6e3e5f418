/**
 * The supervised config (`deno task supervised`): one schema for defaults, validation, flags and
 * `--help`, and the checks of combinations no single field can make.
 */
import { type ConfigOf, f, type Schema } from "./schema.ts";
import {
  ampField,
  backboneFields,
  dataSection,
  deviceField,
  scheduleSection,
  seedField,
  threadsField,
  validateBackboneAndRun,
  validateSchedule,
} from "./sections.ts";

/** Every setting of `deno task supervised`. */
export const SUPERVISED_SCHEMA = {
  model: {
    ...backboneFields(),
    head: f.str("supervised", "classifier: shared slimmable or private per width", [
      "supervised",
      "supervised_switch",
    ]),
    inplace_distill: f.bool(false, "sub-widths learn from the full width's predictions"),
  },
  data: dataSection("supervised_small", 128),
  optim: {
    lr: f.num(0.1, "peak learning rate", { min: 0 }),
    momentum: f.num(0.9, "SGD momentum", { min: 0, max: 1 }),
    weight_decay: f.num(1e-4, "weight decay", { min: 0 }),
    nesterov: f.bool(false, "Nesterov momentum"),
    clip_grad: f.num(0, "clip the global gradient norm (0: off)", { min: 0 }),
  },
  schedule: scheduleSection(),
  run: {
    out: f.str("runs", "folder that holds run folders"),
    name: f.str("supervised", "run folder name"),
    seed: seedField(),
    device: deviceField(),
    amp: ampField(),
    threads: threadsField(),
    sync_bn: f.bool(
      false,
      "with several processes: batch statistics over all ranks (SyncBatchNorm)",
    ),
    ckpt_every: f.num(1, "checkpoint every N epochs (fractional allowed); always at the end", {
      min: 0,
    }),
    keep_last: f.int(2, "checkpoints kept", { min: 1 }),
    log_every: f.int(10, "metrics every N optimizer steps", { min: 1 }),
    eval_every: f.num(1, "test top-1 per width every N epochs (0: only at the end)", { min: 0 }),
    eval_samples: f.int(0, "test images evaluated (0: the whole test split)", { min: 0 }),
    max_steps: f.int(0, "stop after N optimizer steps (0: run the schedule)", { min: 0 }),
  },
} as const satisfies Schema;

/** A resolved supervised config. */
export type SupervisedConfig = ConfigOf<typeof SUPERVISED_SCHEMA>;

/** Checks combinations no single field can; errors name the keys. */
export function validateSupervised(c: SupervisedConfig): void {
  validateBackboneAndRun(c);
  validateSchedule(c.schedule);
}
