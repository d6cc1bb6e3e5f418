/**
 * Distributed part of the op table (c10d process groups and collectives); its C++ lives in
 * `ffi/dist.hpp`. Same conventions as `ffi/ops.ts`.
 */
// deno-lint-ignore no-unused-vars
import { op } from "./ops.ts";

/** Distributed ops, merged into `OPS`. */
export const DIST_OPS = {} as const;
