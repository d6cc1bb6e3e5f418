/**
 * slimclr: slimmable networks with contrastive self-supervised learning on LibTorch, from
 * TypeScript. This module re-exports the public API.
 * @module
 */
export * from "./lib/errors.ts";
export * from "./lib/dtype.ts";
export * from "./lib/scope.ts";
export * from "./lib/tensor.ts";
export * as F from "./lib/functional.ts";
export * from "./lib/autograd.ts";
export * from "./lib/random.ts";
export * from "./lib/device.ts";
export * from "./lib/optim.ts";
export * as nn from "./lib/nn/mod.ts";
export * as models from "./lib/models/mod.ts";
export * as serialize from "./lib/serialize/mod.ts";
export * as data from "./lib/data/mod.ts";
export * as ssl from "./lib/ssl/mod.ts";
export * as dist from "./lib/dist/mod.ts";
export * from "./lib/amp.ts";
export * as evaluation from "./lib/eval/mod.ts";
export * as train from "./lib/train/mod.ts";
export * as tasks from "./tasks/mod.ts";
