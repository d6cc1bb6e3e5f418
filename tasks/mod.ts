/**
 * The `deno task` scripts as functions: each takes the command line's arguments (the same flags
 * and `--section.key value` overrides) and returns what it wrote. `mod.ts` re-exports them as
 * `tasks`.
 * @module
 */
export { pretrain, type PretrainOutcome } from "./pretrain.ts";
export { KNN_SCHEMA, knnTask as knn, pixelKnn } from "./knn.ts";
export { probe, PROBE_SCHEMA } from "./probe.ts";
export { supervised, SUPERVISED_SCHEMA } from "./supervised.ts";
export { exportTask as exportModel } from "./export.ts";
export { profile, type ProfileReport } from "./profile.ts";
export { pipeline } from "./pipeline.ts";
export { demo } from "./demo.ts";
