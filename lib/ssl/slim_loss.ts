/**
 * SlimCLR's per-width loss (spec §3.2): the widest network's contrastive loss, plus for every
 * sub-network a mix of its own contrastive loss and online distillation from the widest one,
 * weighted per width: `L = λ₀·ℓ_max + Σ_w λ_i·[(1−α)·ℓ_w + α·aux_w]`.
 */
import type { Tensor } from "../tensor.ts";
import { kdCrossEntropy, mseDistill } from "./losses.ts";

/**
 * Online distillation variants:
 * - `seed`: SEED-style KD (`kdCrossEntropy`) on the contrastive logits (the paper's setting);
 * - `inplace`: the same KD on the normalised embeddings (the reference's `inplace_distill`);
 * - `mse_embedding` / `mse_logits`: mean squared error on embeddings / logits (`mse_loss` 1 / 2).
 */
export type DistillKind = "none" | "seed" | "inplace" | "mse_embedding" | "mse_logits";

/** Options of the online distillation. */
export interface DistillOptions {
  kind?: DistillKind;
  /** α (`aux_loss_w`), default 0.5; forced to 0 when `kind` is "none". */
  alpha?: number;
  /** Student temperature T_s of the KD variants (default 1; 5 in the MoCo v2/SimCLR scripts). */
  studentT?: number;
  /** Teacher temperature T_t of the KD variants (default 1). */
  teacherT?: number;
  /**
   * Each sub-network distils from every larger network, teachers averaged (`full_distill`). The
   * reference implements it for MoCo v2 only; here it applies to every method.
   */
  full?: boolean;
}

/** What one width produced in one loss direction. */
export interface WidthOutput {
  width: number;
  /** Its own contrastive loss ℓ_w (scalar). */
  contrastive: Tensor;
  /** Normalised embedding (student/teacher of `inplace` and `mse_embedding`). */
  embedding: Tensor;
  /** Contrastive logits as the method defines them (student/teacher of `seed`, `mse_logits`). */
  logits: Tensor;
  /** Index of the positive for every logits row. */
  labels: Tensor;
}

/** The composed loss. */
export interface SlimLoss {
  /** Sum of `terms`: the scalar to back-propagate. */
  total: Tensor;
  /** Per-width weighted terms, widest first: λ₀·ℓ_max, then λ_i·[(1−α)ℓ_w + α·aux_w]. */
  terms: Tensor[];
  /** Per-width distillation loss aux_w (null for the widest, or without distillation). */
  distill: (Tensor | null)[];
}

/** The α that applies: `alpha` (default 0.5), or 0 without distillation. */
export function distillAlpha(o: DistillOptions): number {
  return (o.kind ?? "none") === "none" ? 0 : o.alpha ?? 0.5;
}

function usesLogits(kind: DistillKind): boolean {
  return kind === "seed" || kind === "mse_logits";
}

/** The distillation loss of one student against one (detached) teacher. */
export function distillLoss(student: Tensor, teacher: Tensor, o: DistillOptions): Tensor {
  const kind = o.kind ?? "none";
  if (kind === "seed" || kind === "inplace") {
    return kdCrossEntropy(student, teacher, o.studentT ?? 1, o.teacherT ?? 1);
  }
  if (kind === "mse_embedding" || kind === "mse_logits") return mseDistill(student, teacher);
  throw new RangeError(
    `unknown distillation '${kind}' (expected none, seed, inplace, mse_embedding or mse_logits)`,
  );
}

/**
 * Composes the SlimCLR loss of one direction from the outputs of each width (widest first).
 * With `slimEnabled` false (before the slow start) only the widest output is used and its loss is
 * not weighted by λ₀ (spec §3.1). Call inside a scope: intermediate tensors join it.
 */
export function composeSlimLoss(
  outputs: readonly WidthOutput[],
  weights: readonly number[],
  distill: DistillOptions,
  slimEnabled = true,
): SlimLoss {
  if (!outputs.length) throw new RangeError("composeSlimLoss: no outputs");
  if (!slimEnabled) {
    const term = outputs[0].contrastive.mul(1);
    return { total: term, terms: [term], distill: [null] };
  }
  if (weights.length !== outputs.length) {
    throw new RangeError(`${weights.length} loss weights for ${outputs.length} widths`);
  }
  const kind = distill.kind ?? "none";
  const alpha = distillAlpha(distill);
  const pick = (o: WidthOutput) => (usesLogits(kind) ? o.logits : o.embedding);
  const teachers: Tensor[] = kind === "none" ? [] : [pick(outputs[0]).detach()];
  const terms: Tensor[] = [outputs[0].contrastive.mul(weights[0])];
  const aux: (Tensor | null)[] = [null];
  for (let i = 1; i < outputs.length; i++) {
    const o = outputs[i];
    if (!teachers.length) {
      terms.push(o.contrastive.mul(weights[i]));
      aux.push(null);
      continue;
    }
    const student = pick(o);
    let a = distillLoss(student, teachers[0], distill);
    for (const t of teachers.slice(1)) a = a.add(distillLoss(student, t, distill));
    if (teachers.length > 1) a = a.div(teachers.length);
    aux.push(a);
    terms.push(o.contrastive.mul(1 - alpha).add(a, alpha).mul(weights[i]));
    if (distill.full) teachers.push(student.detach());
  }
  let total = terms[0];
  for (const t of terms.slice(1)) total = total.add(t);
  return { total, terms, distill: aux };
}
