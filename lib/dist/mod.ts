/**
 * Data-parallel training over LibTorch's c10d: process groups (Gloo, NCCL) with the torchrun
 * environment contract, bucketed collectives, `DistributedDataParallel`, `SyncBatchNorm`, the
 * contrastive methods' `Communicator` (gathers and shuffle-BN), sharded sampling and rank-aware
 * logging. Start ranks with `deno task launch --nproc N script.ts`, torchrun or SLURM.
 * @module
 */
export * from "./env.ts";
export * from "./group.ts";
export * from "./communicator.ts";
export * from "./sync_bn.ts";
export * from "./ddp.ts";
export * from "./sampler.ts";
export * from "./log.ts";
export * from "./launcher.ts";
