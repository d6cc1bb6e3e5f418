/**
 * Pure-TypeScript serialization for slimclr: safetensors, `torch.save` zip files (restricted
 * unpickler + protocol-2 pickler) and the ZIP container, all over the neutral {@link RawTensor}.
 *
 * @module
 */

export * from "./raw.ts";
export * from "./pytypes.ts";
export * from "./safetensors.ts";
export * from "./zip.ts";
export * from "./pickle.ts";
export * from "./torch_file.ts";
export { atomicWriteFile } from "./fs.ts";
export * from "./tensors.ts";
