/**
 * Learning-rate schedules evaluated per iteration (spec §5.3): linear warm-up, then cosine decay
 * or step decay, with the reference's floor of 1e-8. Pure functions of the global step, so a
 * resumed run continues exactly where it stopped.
 */

/** A schedule's settings. */
export interface ScheduleOptions {
  /** Peak learning rate (after warm-up). */
  lr: number;
  /** Total optimizer steps of the run. */
  totalSteps: number;
  /** Steps of linear warm-up. */
  warmupSteps?: number;
  kind?: "cosine" | "step";
  /** Step decay: epochs at which the rate is multiplied by `gamma`. */
  milestones?: readonly number[];
  gamma?: number;
  /** Optimizer steps per epoch (needed by step decay). */
  stepsPerEpoch?: number;
  /** Floor of the rate. */
  endLr?: number;
}

/** The learning rate at optimizer step `step` (0-based). */
export function learningRate(o: ScheduleOptions, step: number): number {
  const end = o.endLr ?? 1e-8;
  const warm = o.warmupSteps ?? 0;
  if (warm > 0 && step <= warm) return Math.min((step / warm) * (o.lr - end) + end, o.lr);
  if ((o.kind ?? "cosine") === "step") {
    const epoch = Math.floor(step / Math.max(1, o.stepsPerEpoch ?? 1));
    const passed = (o.milestones ?? []).filter((m) => m <= epoch).length;
    return Math.max(o.lr * (o.gamma ?? 0.1) ** passed, end);
  }
  const span = Math.max(1, o.totalSteps - warm);
  const progress = Math.min(1, (step - warm) / span);
  return Math.max(0.5 * o.lr * (1 + Math.cos(Math.PI * progress)), end);
}
