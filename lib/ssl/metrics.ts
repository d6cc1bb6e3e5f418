/** Plain-number metrics of a training step, read from the device in one transfer. */
import { stack, type Tensor } from "../tensor.ts";
import type { GradDiagnostics } from "./grad_diagnostics.ts";
import { contrastiveTop1 } from "./losses.ts";
import type { SlimLoss, WidthOutput } from "./slim_loss.ts";

/** Plain-number metrics of one width. */
export interface WidthMetrics {
  width: number;
  /** λ applied to this width (1 for the widest before the slow start). */
  weight: number;
  /** Its own contrastive loss ℓ_w (summed over MoCo v3's two directions). */
  contrastive: number;
  /** Its distillation loss aux_w (summed over directions); null for the widest or none. */
  distill: number | null;
  /** Its weighted contribution to the total loss. */
  loss: number;
  /** Contrastive top-1 accuracy in percent (mean over directions). */
  top1: number;
}

/** Plain-number metrics of one step (the trainer adds the learning rate). */
export interface StepMetrics {
  loss: number;
  /** Whether the sub-networks ran (slow start). */
  slimEnabled: boolean;
  /** Momentum of the key/momentum encoder's update this step (null without one). */
  momentum: number | null;
  /** Widest first; only the widest before the slow start. */
  widths: WidthMetrics[];
  /** Present on the steps the diagnostics run. */
  grad?: GradDiagnostics;
}

/** The sum of scalar tensors (the first one itself when alone). */
export function sum(xs: readonly Tensor[]): Tensor {
  let s = xs[0];
  for (const x of xs.slice(1)) s = s.add(x);
  return s;
}

/** Reads every metric of the step in one device-to-host transfer. */
export function readMetrics(
  widths: readonly number[],
  weights: readonly number[],
  dirs: readonly WidthOutput[][],
  losses: readonly SlimLoss[],
  terms: readonly Tensor[],
  total: Tensor,
): StepMetrics {
  const row = (i: number): Tensor[] => {
    const top1 = dirs.map((d) => contrastiveTop1(d[i].logits, d[i].labels));
    const distill = losses.map((l) => l.distill[i]).filter((t) => t !== null) as Tensor[];
    return [
      sum(dirs.map((d) => d[i].contrastive.detach())),
      distill.length ? sum(distill.map((t) => t.detach())) : top1[0].mul(0),
      sum(top1).div(top1.length),
      terms[i].detach(),
    ];
  };
  const all = [total.detach(), ...widths.flatMap((_, i) => row(i))];
  const v = stack(all.map((t) => t.to("float32").reshape(1))).toFloat32Array();
  const hasDistill = losses[0].distill.map((d) => d !== null);
  return {
    loss: v[0],
    slimEnabled: true,
    momentum: null,
    widths: widths.map((width, i) => ({
      width,
      weight: weights[i],
      contrastive: v[1 + 4 * i],
      distill: hasDistill[i] ? v[2 + 4 * i] : null,
      top1: v[3 + 4 * i],
      loss: v[4 + 4 * i],
    })),
  };
}
