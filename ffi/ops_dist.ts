/**
 * Distributed part of the op table (c10d process groups and collectives); its C++ lives in
 * `ffi/dist.hpp`. Same conventions as `ffi/ops.ts`. A group is an opaque `P` handle; collectives
 * run synchronously and name the failing rank in their error (see `ffi/dist.hpp`).
 */
import { op } from "./ops.ts";

/** Distributed ops, merged into `OPS`. */
export const DIST_OPS = {
  dist_has_backend: op(["str name"], "bool", "dist_has_backend(name)"),
  dist_init: op(
    [
      "str backend",
      "str host",
      "i32 port",
      "i32 rank",
      "i32 world",
      "i64 timeout_ms",
      "i64 heartbeat_ms",
      "bool agent_store",
      "str prefix",
      "device dev",
    ],
    "P",
    "dist_init(backend, host, port, rank, world, timeout_ms, heartbeat_ms, agent_store, prefix, dev)",
  ),
  dist_destroy: op(["P g"], "void", "dist_destroy(g);"),
  dist_seq: op(["P g"], "i64", "group_ref(g).seq()"),
  dist_barrier: op(["P g"], "void", "dist_barrier(g);"),
  dist_broadcast: op(
    ["P g", "T[] xs", "i64 src", "i64 bucket_bytes"],
    "void",
    "dist_broadcast(g, xs, src, bucket_bytes);",
  ),
  dist_all_reduce: op(
    ["P g", "T[] xs", "i32 op", "i64 bucket_bytes"],
    "void",
    "dist_all_reduce(g, xs, op, bucket_bytes);",
  ),
  dist_all_reduce_grads: op(
    ["P g", "T[] params", "bool avg", "bool find_unused", "i64 bucket_bytes"],
    "void",
    "dist_all_reduce_grads(g, params, avg, find_unused, bucket_bytes);",
  ),
  dist_all_gather: op(["P g", "T x"], "T", "dist_all_gather(g, x)"),
  dist_all_gather_grad: op(["P g", "T x"], "T", "dist_all_gather_grad(g, x)"),
  dist_sync_batch_norm: op(
    ["P g", "T x", "T? w", "T? b", "T? rm", "T? rv", "f64 momentum", "f64 eps"],
    "T",
    "dist_sync_batch_norm(g, x, w, b, rm, rv, momentum, eps)",
  ),
} as const;
