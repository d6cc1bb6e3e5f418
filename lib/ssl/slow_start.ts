/**
 * Slow start (spec §3.1): sub-networks are neither run nor trained before a fractional start
 * epoch, and the widest network's loss weight λ₀ applies only from then on.
 */

/** Options of the slow start. */
export interface SlowStartOptions {
  /** Fractional epoch at which the sub-networks start (default −1: from the beginning). */
  startEpoch?: number;
  /**
   * Base learning rate from the start epoch on. The reference overwrites the scheduler's base LR
   * with `--slim_start_lr` whenever the start epoch is positive, and its default 1e-4 collapses
   * the LR of the MoCo v2 and SimCLR runs (spec §7 D1). Here the reset is opt-in: undefined (the
   * default) leaves the schedule unchanged; MoCo v3's script sets 3.2 (with a base LR of 1.2).
   */
  slimStartLr?: number;
}

/** Whether the sub-networks run at this fractional epoch: `epoch >= startEpoch`. */
export function slimEnabled(epoch: number, o: SlowStartOptions = {}): boolean {
  return epoch >= (o.startEpoch ?? -1);
}

/**
 * The base learning rate a scheduler should use at `epoch`: `slimStartLr` once a positive start
 * epoch has been reached (when set), else `baseLr`. Warm-up and cosine keep running over the
 * whole run's global step, as in the reference.
 */
export function slowStartBaseLr(baseLr: number, epoch: number, o: SlowStartOptions = {}): number {
  const start = o.startEpoch ?? -1;
  if (o.slimStartLr === undefined || start <= 0 || epoch < start) return baseLr;
  return o.slimStartLr;
}
