/**
 * Data-pipeline part of the op table (decoding, batched augmentation, loaders); its C++ lives in
 * `ffi/data.hpp`. Same conventions as `ffi/ops.ts`.
 */
// deno-lint-ignore no-unused-vars
import { op } from "./ops.ts";

/** Data ops, merged into `OPS`. */
export const DATA_OPS = {} as const;
