/**
 * The data pipeline: dataset readers (IDX, CIFAR, STL-10, ImageFolder, LMDB, RecordIO),
 * converters (folder2lmdb, im2rec), batched augmentation recipes in the shim, and the
 * background batch loader.
 * @module
 */
export * from "./errors.ts";
export * from "./dataset.ts";
export * from "./native.ts";
export * from "./augment.ts";
export * from "./recipes.ts";
export * from "./tensor_dataset.ts";
export * from "./idx.ts";
export * from "./mnist.ts";
export * from "./cifar.ts";
export * from "./stl10.ts";
export * from "./image_folder.ts";
export * from "./lmdb.ts";
export * from "./recordio.ts";
export * from "./sampler.ts";
export * from "./loader.ts";
export * from "./fashion_mnist.ts";
export { mixSeed, permutation } from "./rng.ts";
