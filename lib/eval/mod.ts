/** Evaluation: weighted kNN and BatchNorm recalibration per width. */
export * from "./knn.ts";
export * from "./bn_recalibration.ts";
