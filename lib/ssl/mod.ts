/**
 * Self-supervised learning with slimmable networks (SlimCLR): MoCo v2, MoCo v3 and SimCLR over a
 * shared base, with slow start, online distillation, loss re-weighting and gradient diagnostics.
 * @module
 */
export * from "./losses.ts";
export * from "./weights.ts";
export * from "./slow_start.ts";
export * from "./slim_loss.ts";
export * from "./momentum.ts";
export * from "./queue.ts";
export * from "./distributed.ts";
export * from "./grad_diagnostics.ts";
export * from "./heads.ts";
export * from "./metrics.ts";
export * from "./base.ts";
export * from "./mocov2.ts";
export * from "./mocov3.ts";
export * from "./simclr.ts";
export * from "./presets.ts";
