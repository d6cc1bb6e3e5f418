/** Builds the method and optimizer a pretraining config describes. */
import type { PretrainConfig } from "../config/pretrain.ts";
import { AdamW, LARS, type Optimizer, SGD } from "../optim.ts";
import type { Generator } from "../random.ts";
import type { Communicator } from "../ssl/distributed.ts";
import { MoCoV2, MoCoV3, SimCLR, type SlimSSLMethod, type SlimSSLOptions } from "../ssl/mod.ts";
import { backboneOptions } from "../models/model_source.ts";

/** The method of a config (its encoder, heads, slow start, distillation and weighting). */
export function buildMethod(
  c: PretrainConfig,
  extra: { generator?: Generator; communicator?: Communicator } = {},
): SlimSSLMethod {
  const common: SlimSSLOptions = {
    encoder: backboneOptions(c.model),
    widths: c.model.widths,
    slowStart: {
      startEpoch: c.slim.start_epoch,
      slimStartLr: c.slim.start_lr > 0 ? c.slim.start_lr : undefined,
    },
    distill: {
      kind: c.slim.distill as "none" | "seed" | "inplace" | "mse_embedding" | "mse_logits",
      alpha: c.slim.aux_loss_w,
      studentT: c.slim.student_t,
      teacherT: c.slim.teacher_t,
      full: c.slim.full_distill,
    },
    lossWeighting: c.slim.width_weights.length ? c.slim.width_weights : c.slim.loss_weights,
    gradDiagnostics: c.run.grad_diag_every ? { every: c.run.grad_diag_every } : undefined,
    ...extra,
  };
  const mlpDim = c.ssl.mlp_dim || undefined;
  switch (c.method) {
    case "mocov2":
      return new MoCoV2({
        ...common,
        dim: c.ssl.dim,
        queueSize: c.ssl.queue,
        momentum: c.ssl.momentum,
        temperature: c.ssl.temperature,
        keyBatchSplits: c.ssl.key_batch_splits,
        mlpDim,
      });
    case "mocov3":
      return new MoCoV3({
        ...common,
        dim: c.ssl.dim,
        mlpDim,
        momentum: c.ssl.momentum,
        temperature: c.ssl.temperature,
        epochs: c.schedule.epochs,
      });
    case "simclr":
      return new SimCLR({ ...common, dim: c.ssl.dim, mlpDim, temperature: c.ssl.temperature });
    default:
      throw new RangeError(`unknown method '${c.method}'`);
  }
}

/** The optimizer of a config over the method's trainable parameters. */
export function buildOptimizer(c: PretrainConfig, method: SlimSSLMethod): Optimizer<object> {
  const o = c.optim;
  const groups = method.parameterGroups(o.weight_decay, o.exclude_norm_bias);
  switch (o.name) {
    case "sgd":
      return new SGD(groups, {
        lr: o.lr,
        momentum: o.momentum,
        nesterov: o.nesterov,
        weight_decay: o.weight_decay,
      });
    case "lars":
      return new LARS(groups, { lr: o.lr, momentum: o.momentum, weight_decay: o.weight_decay });
    case "adamw":
      return new AdamW(groups, { lr: o.lr, weight_decay: o.weight_decay });
    default:
      throw new RangeError(`unknown optimizer '${o.name}'`);
  }
}
