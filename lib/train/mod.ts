/**
 * Training and evaluation loops and their pieces, for programs that drive them without the tasks:
 * the pretraining, supervised and probe loops, checkpoints, schedules, data sources, monitors.
 */
export * from "./build.ts";
export * from "./checkpoint.ts";
export * from "./data.ts";
export * from "./device.ts";
export * from "./monitor.ts";
export * from "./pretrain.ts";
export * from "./probe.ts";
export * from "./probe_run.ts";
export * from "./run_metrics.ts";
export * from "./schedule.ts";
export * from "./source.ts";
export * from "./stop_signals.ts";
export * from "./summary.ts";
export * from "./supervised.ts";
