/**
 * The pretraining config: one schema for defaults, validation, flags and `--help`. Recipes under
 * `configs/` are YAML documents of this shape; any key can be overridden with `--section.key value`.
 */
import { ConfigError, type ConfigOf, f, type Schema } from "./schema.ts";
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

/** Every setting of `deno task pretrain`. */
export const PRETRAIN_SCHEMA = {
  method: f.str("mocov2", "contrastive method", ["mocov2", "mocov3", "simclr"]),
  model: {
    ...backboneFields(),
    overlap: f.bool(true, "sub-networks share leading channels (false: disjoint bands, spec §2.2)"),
    zero_init_residual: f.bool(false, "zero the last BN γ of every residual block"),
    linear_init: f.str(
      "paper",
      "linear layers: N(0, 0.01) as the paper, or PyTorch's default (small heads)",
      [
        "paper",
        "default",
      ],
    ),
  },
  ssl: {
    dim: f.int(128, "projection dimension (MoCo v2 128, MoCo v3 256, SimCLR 128)", { min: 1 }),
    mlp_dim: f.int(
      0,
      "hidden width of the projector at width 1 (0: the method's default: MoCo v2 the feature width, MoCo v3 4096, SimCLR 2048)",
      {
        min: 0,
      },
    ),
    queue: f.int(4096, "MoCo v2 queue length K (a multiple of the global batch)", { min: 1 }),
    momentum: f.num(
      0.999,
      "momentum of the key / momentum encoder (MoCo v3: m₀ of its cosine schedule)",
      {
        min: 0,
        max: 1,
      },
    ),
    temperature: f.num(0.2, "contrastive temperature τ", { min: 1e-4 }),
    key_batch_splits: f.int(
      1,
      "MoCo v2 on one process: encode shuffled keys in this many BN groups",
      {
        min: 1,
      },
    ),
  },
  slim: {
    start_epoch: f.num(
      -1,
      "slow start: fractional epoch at which sub-networks start (-1: at once)",
    ),
    start_lr: f.num(
      0,
      "slow start: base LR from the start epoch on (0: schedule unchanged, spec D1)",
      {
        min: 0,
      },
    ),
    loss_weights: f.int(5, "loss re-weighting scheme 0–7 (spec §3.3; 5 gives [2.5,1,1,1])", {
      min: 0,
      max: 7,
    }),
    width_weights: f.nums(
      [],
      "explicit λ per width, widest first (replaces slim.loss_weights; empty: use the scheme)",
      { min: 0 },
    ),
    distill: f.str("seed", "online distillation", [
      "none",
      "seed",
      "inplace",
      "mse_embedding",
      "mse_logits",
    ]),
    aux_loss_w: f.num(0.5, "α: weight of distillation against the sub-network's own loss", {
      min: 0,
      max: 1,
    }),
    student_t: f.num(5, "student temperature of SEED distillation", { min: 1e-4 }),
    teacher_t: f.num(5, "teacher temperature of SEED distillation", { min: 1e-4 }),
    full_distill: f.bool(false, "each sub-network learns from all larger ones"),
  },
  data: dataSection("mocov2_small", 256),
  optim: {
    name: f.str("sgd", "optimizer", ["sgd", "lars", "adamw"]),
    lr: f.num(0.06, "peak learning rate", { min: 0 }),
    momentum: f.num(0.9, "SGD/LARS momentum", { min: 0, max: 1 }),
    weight_decay: f.num(5e-4, "weight decay", { min: 0 }),
    nesterov: f.bool(false, "SGD Nesterov momentum"),
    exclude_norm_bias: f.bool(
      false,
      "no weight decay on BN parameters and biases (the reference decays all, D6)",
    ),
    grad_accum: f.int(1, "micro-batches per optimizer step", { min: 1 }),
    clip_grad: f.num(0, "clip the global gradient norm (0: off)", { min: 0 }),
  },
  schedule: scheduleSection(),
  run: {
    out: f.str("runs", "folder that holds run folders"),
    name: f.str("", "run folder name (empty: method-arch-timestamp)"),
    seed: seedField(),
    device: deviceField(),
    amp: ampField(),
    sync_bn: f.bool(
      false,
      "with several processes: batch statistics over all ranks (SyncBatchNorm)",
    ),
    threads: threadsField(),
    ckpt_every: f.num(1, "checkpoint every N epochs (fractional allowed); always at the end", {
      min: 0,
    }),
    keep_last: f.int(2, "checkpoints kept", { min: 1 }),
    log_every: f.int(10, "metrics every N optimizer steps", { min: 1 }),
    knn_every: f.num(1, "kNN monitor every N epochs (0: only at the end)", { min: 0 }),
    knn_k: f.int(200, "kNN neighbours", { min: 1 }),
    knn_t: f.num(0.1, "kNN temperature", { min: 1e-4 }),
    knn_samples: f.int(0, "kNN bank size cap (0: the whole training split)", { min: 0 }),
    knn_holdout: f.int(
      0,
      "training images held out of pretraining (seeded) as the kNN monitor's queries; 0: the monitor queries the test split",
      { min: 0 },
    ),
    bn_recalibrate: f.int(
      0,
      "kNN on BatchNorm statistics recomputed per width over this many clean bank images (the final model keeps them; 0: the running statistics of training)",
      { min: 0 },
    ),
    weight_ema: f.num(
      0,
      "evaluate and save an exponential moving average of the encoder's weights with this decay, e.g. 0.998 (0: the weights themselves)",
      { min: 0, max: 0.99999 },
    ),
    grad_diag_every: f.int(0, "gradient diagnostics every N steps (0: off)", { min: 0 }),
    max_steps: f.int(0, "stop after N optimizer steps (0: run the schedule)", { min: 0 }),
  },
} as const satisfies Schema;

/** A resolved pretraining config. */
export type PretrainConfig = ConfigOf<typeof PRETRAIN_SCHEMA>;

/** Checks combinations no single field can; errors name the keys. */
export function validatePretrain(c: PretrainConfig, worldSize = 1): void {
  validateBackboneAndRun(c);
  if (c.data.batch_size < 2) {
    throw new ConfigError("'data.batch_size' must be at least 2 for contrastive pretraining");
  }
  if (c.method === "mocov2") {
    const global = c.data.batch_size * worldSize;
    if (c.ssl.queue % global !== 0) {
      throw new ConfigError(
        `'ssl.queue' (${c.ssl.queue}) must be a multiple of the global batch ` +
          `('data.batch_size' ${c.data.batch_size} × ${worldSize} processes = ${global})`,
      );
    }
    if (c.data.batch_size % c.ssl.key_batch_splits !== 0) {
      throw new ConfigError(
        `'data.batch_size' (${c.data.batch_size}) must be divisible by 'ssl.key_batch_splits' (${c.ssl.key_batch_splits})`,
      );
    }
  }
  if (c.slim.start_lr > 0 && !(c.slim.start_epoch > 0)) {
    throw new ConfigError(
      "'slim.start_lr' needs a positive 'slim.start_epoch' (it resets the LR at the slow start)",
    );
  }
  if (c.slim.start_epoch >= c.schedule.epochs) {
    throw new ConfigError(
      `'slim.start_epoch' (${c.slim.start_epoch}) is not before the end of training ('schedule.epochs' ${c.schedule.epochs})`,
    );
  }
  validateSchedule(c.schedule);
  if (c.run.bn_recalibrate === 1) {
    throw new ConfigError("'run.bn_recalibrate' needs at least 2 images (0 turns it off)");
  }
  if (c.optim.nesterov && c.optim.name !== "sgd") {
    throw new ConfigError("'optim.nesterov' applies to 'optim.name: sgd' only");
  }
  const ww = c.slim.width_weights;
  if (ww.length && ww.length !== c.model.widths.length) {
    throw new ConfigError(
      `'slim.width_weights' has ${ww.length} entries; 'model.widths' has ${c.model.widths.length}`,
    );
  }
  if (ww.length && !(ww[0] > 0)) {
    throw new ConfigError("'slim.width_weights' must give the widest network a positive weight");
  }
}
