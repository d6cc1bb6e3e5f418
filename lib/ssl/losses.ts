/**
 * Contrastive and distillation losses of SlimCLR (spec §3.2, §3.8–§3.10) as small standalone
 * functions over embeddings and logits. Logits are returned *before* the temperature wherever the
 * reference feeds un-scaled logits to the distillation losses (MoCo v2, SimCLR); MoCo v3's logits
 * include 1/τ, as in the reference.
 */
import type { Device } from "../dtype.ts";
import * as F from "../functional.ts";
import { scope } from "../scope.ts";
import { arange, cat, eye, type Tensor, zeros } from "../tensor.ts";

/**
 * MoCo v2 logits `[q·k⁺, q·queue]` of shape [N, 1+K], un-scaled by τ (spec §3.2, §3.8).
 * `q`, `k`: normalised [N, D]; `queue`: normalised keys [D, K]. The positive is column 0.
 */
export function mocoV2Logits(q: Tensor, k: Tensor, queue: Tensor): Tensor {
  return scope(() => cat([q.mul(k).sum(1, true), q.mm(queue)], 1));
}

/** Labels of MoCo v2 logits: the positive is column 0 of every row. */
export function mocoV2Labels(n: number, device?: Device): Tensor {
  return zeros([n], { dtype: "int64", device });
}

/** InfoNCE `CE(logits/τ, labels)` (spec §3.8). */
export function infoNCE(logits: Tensor, labels: Tensor, temperature: number): Tensor {
  return scope(() => F.crossEntropy(logits.div(temperature), labels));
}

/** MoCo v3 logits `q·kᵀ/τ` of shape [N, M]; `k` holds the keys of every rank [M, D]. */
export function mocoV3Logits(q: Tensor, k: Tensor, temperature: number): Tensor {
  return scope(() => q.mm(k.t()).div(temperature));
}

/** MoCo v3 labels `arange(N) + N·rank`: row i's positive is this rank's i-th key. */
export function mocoV3Labels(n: number, rank = 0, device?: Device): Tensor {
  return arange(n * rank, n * (rank + 1), 1, { dtype: "int64", device });
}

/** MoCo v3 contrastive loss `CE(logits, labels)·2τ`, on logits that already include 1/τ. */
export function mocoV3Loss(logits: Tensor, labels: Tensor, temperature: number): Tensor {
  return scope(() => F.crossEntropy(logits, labels).mul(2 * temperature));
}

/**
 * SimCLR cosine similarities with the diagonal removed, [2N, 2N−1], un-scaled (spec §3.10).
 * `z` = cat[z1, z2] of normalised embeddings [2N, D]: the views of sample i are rows i and N+i.
 */
export function ntXentLogits(z: Tensor): Tensor {
  return scope(() => {
    const m = z.shape[0];
    const offDiagonal = eye(m, m, { dtype: "bool", device: z.device }).logicalNot();
    return z.mm(z.t()).maskedSelect(offDiagonal).view(m, m - 1);
  });
}

/** NT-Xent labels `[arange(N)+N−1, arange(N)]` for logits with the diagonal removed. */
export function ntXentLabels(n: number, device?: Device): Tensor {
  return scope(() =>
    cat([
      arange(n - 1, 2 * n - 1, 1, { dtype: "int64", device }),
      arange(0, n, 1, { dtype: "int64", device }),
    ])
  );
}

/** NT-Xent `CE(logits/τ, labels)` over the 2N views (τ = 0.1 in SimCLR). */
export function ntXent(logits: Tensor, labels: Tensor, temperature: number): Tensor {
  return infoNCE(logits, labels, temperature);
}

/**
 * SEED-style distillation (spec §3.2, `kd_distill_loss_v2`):
 * `T_s² · mean_n[−Σ_j softmax(t/T_t)_j · log_softmax(s/T_s)_j]`. This is the cross-entropy, so
 * the value includes the teacher's entropy; its gradient is the KL gradient. `teacher` should be
 * detached.
 */
export function kdCrossEntropy(
  student: Tensor,
  teacher: Tensor,
  studentT = 1,
  teacherT = 1,
): Tensor {
  return scope(() =>
    F.crossEntropy(student.div(studentT), teacher.div(teacherT).softmax(1))
      .mul(studentT * studentT)
  );
}

/** Mean squared error between a student and a (detached) teacher, as `F.mse_loss`. */
export function mseDistill(student: Tensor, teacher: Tensor): Tensor {
  return F.mseLoss(student, teacher);
}

/**
 * Contrastive top-1 accuracy in percent: how often the largest logit is the positive (fixes the
 * reference's meaningless MoCo accuracy, spec §7 D2). A float32 scalar tensor, no gradient.
 */
export function contrastiveTop1(logits: Tensor, labels: Tensor): Tensor {
  // A row counts only when its positive beats every other logit strictly: with argmax, a collapsed
  // embedding (all logits equal) would "hit" MoCo v2's positive at column 0 on every row.
  return scope(() => {
    const l = logits.detach();
    const idx = labels.unsqueeze(1);
    const positive = l.gather(1, idx).squeeze(1);
    const [others] = l.scatter(1, idx, -Infinity).maxDim(1);
    return positive.gt(others).to("float32").mean().mul(100);
  });
}
