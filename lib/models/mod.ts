/** Networks: dense and slimmable ResNets. */
export * from "./resnet.ts";
export * from "./slimmable_resnet.ts";
export * from "./official.ts";
export * from "./model_file.ts";
export * from "./model_source.ts";
export * from "./profile.ts";
