/**
 * Process groups over LibTorch's c10d: a TCPStore rendezvous (the torchrun contract, see
 * `env.ts`), Gloo on CPU, NCCL on CUDA builds. Collectives are synchronous and bucketed; a
 * collective that fails or times out throws a `TorchError` naming the rank that died, froze or
 * stalled, and the group then refuses further work.
 */
import { cuda } from "../device.ts";
import { type Device, deviceCode } from "../dtype.ts";
import type { Handle } from "../ffi/library.ts";
import { raw, type Tensor, wrap } from "../tensor.ts";
import { type DistEnv, distEnv } from "./env.ts";

/** A c10d backend. */
export type Backend = "gloo" | "nccl";

/** Reduction of `allReduce`. */
export type ReduceOp = "sum" | "avg";

/** Default bucket size of bucketed collectives (as DDP's 25 MB). */
export const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

/** Options of `initProcessGroup`; anything left out comes from the environment (`distEnv`). */
export interface InitOptions {
  /** Default: nccl for a CUDA device, else gloo. */
  backend?: Backend;
  rank?: number;
  worldSize?: number;
  masterAddr?: string;
  masterPort?: number;
  /** Collective and rendezvous timeout (default `SLIMCLR_DIST_TIMEOUT_S` or 1800 s, as torch). */
  timeoutMs?: number;
  /** Heartbeat period used to name a dead or stalled rank (default 1000 ms). */
  heartbeatMs?: number;
  /** The CUDA device of this rank (nccl), e.g. `cuda:${localRank}`. */
  device?: Device;
  /** Bucket size of bucketed collectives. */
  bucketBytes?: number;
  /** The environment to read (default `distEnv()`). */
  env?: DistEnv;
}

/** Whether this shim was built with `backend`. */
export function hasBackend(backend: Backend): boolean {
  return raw().dist_has_backend(backend);
}

function defaultTimeoutMs(): number {
  const s = Number(Deno.env.get("SLIMCLR_DIST_TIMEOUT_S") ?? "");
  return Number.isFinite(s) && s > 0 ? s * 1000 : 1_800_000;
}

/** A group of ranks that run collectives together. */
export class ProcessGroup {
  #h: Handle | null;
  /** This process's rank, 0-based. */
  readonly rank: number;
  /** Number of ranks. */
  readonly worldSize: number;
  readonly localRank: number;
  readonly backend: Backend;
  readonly bucketBytes: number;

  /** @internal Use `initProcessGroup`. */
  constructor(h: Handle, env: DistEnv, backend: Backend, bucketBytes: number) {
    this.#h = h;
    this.rank = env.rank;
    this.worldSize = env.worldSize;
    this.localRank = env.localRank;
    this.backend = backend;
    this.bucketBytes = bucketBytes;
  }

  /** @internal The native group. */
  get ptr(): Handle {
    if (!this.#h) throw new Error("the process group was destroyed");
    return this.#h;
  }

  /** Number of collectives this rank has entered. */
  get collectives(): number {
    return raw().dist_seq(this.ptr);
  }

  /** Blocks until every rank arrives. */
  barrier(): void {
    raw().dist_barrier(this.ptr);
  }

  /** Overwrites `tensors` in place with rank `src`'s values (one collective per bucket). */
  broadcast(tensors: readonly Tensor[], src = 0): void {
    if (!tensors.length) return;
    raw().dist_broadcast(this.ptr, tensors.map((t) => t.ptr), src, this.bucketBytes);
  }

  /** Reduces `tensors` in place across ranks (one collective per bucket, one FFI call). */
  allReduce(tensors: readonly Tensor[], op: ReduceOp = "sum"): void {
    if (!tensors.length) return;
    raw().dist_all_reduce(
      this.ptr,
      tensors.map((t) => t.ptr),
      op === "avg" ? 1 : 0,
      this.bucketBytes,
    );
  }

  /**
   * All-reduces the gradients of `params` in one FFI call (averaged by default). With
   * `findUnused` (default), ranks first agree on which parameters have a gradient anywhere.
   */
  allReduceGradients(
    params: readonly Tensor[],
    o: { average?: boolean; findUnused?: boolean } = {},
  ): void {
    raw().dist_all_reduce_grads(
      this.ptr,
      params.map((p) => p.ptr),
      o.average ?? true,
      o.findUnused ?? true,
      this.bucketBytes,
    );
  }

  /** Every rank's `t` (same shape everywhere) concatenated along dim 0 in rank order, detached. */
  allGather(t: Tensor): Tensor {
    return wrap(raw().dist_all_gather(this.ptr, t.ptr));
  }

  /** As `allGather`, but this rank's slice is `t` itself, so its gradient flows back locally. */
  allGatherWithGrad(t: Tensor): Tensor {
    return wrap(raw().dist_all_gather_grad(this.ptr, t.ptr));
  }

  /** Frees the group (call on every rank after the last collective). Idempotent. */
  destroy(): void {
    if (!this.#h) return;
    const h = this.#h;
    this.#h = null;
    raw().dist_destroy(h);
  }

  [Symbol.dispose](): void {
    this.destroy();
  }
}

/**
 * Joins the job described by `o` and the environment; every rank must call it. Fails with an error
 * naming the ranks that never arrived within the timeout.
 */
export function initProcessGroup(o: InitOptions = {}): ProcessGroup {
  const base = o.env ?? distEnv();
  const env: DistEnv = {
    ...base,
    rank: o.rank ?? base.rank,
    worldSize: o.worldSize ?? base.worldSize,
    masterAddr: o.masterAddr ?? base.masterAddr,
    masterPort: o.masterPort ?? base.masterPort,
  };
  const cuda = o.device !== undefined && String(o.device).startsWith("cuda");
  const backend = o.backend ?? (cuda ? "nccl" : "gloo");
  const h = raw().dist_init(
    backend,
    env.masterAddr,
    env.masterPort,
    env.rank,
    env.worldSize,
    Math.round(o.timeoutMs ?? defaultTimeoutMs()),
    Math.round(o.heartbeatMs ?? 1000),
    env.agentStore,
    `slimclr/${env.restart}/`,
    cuda ? deviceCode(o.device!) : -1,
  );
  return new ProcessGroup(h, env, backend, o.bucketBytes ?? DEFAULT_BUCKET_BYTES);
}

/**
 * The group of a job started by `deno task launch`, torchrun or SLURM, or null for a plain
 * single process (no RANK / WORLD_SIZE / SLURM_PROCID): `communicator(group)`,
 * `new DistributedDataParallel(net, group)` and `SyncBatchNorm` all accept null.
 */
export function initDistributed(o: InitOptions = {}): ProcessGroup | null {
  const env = o.env ?? distEnv();
  if (env.source === "single" && o.worldSize === undefined) return null;
  return initProcessGroup({ ...o, env });
}

/** This rank's device: `cuda:${localRank}` (modulo the visible GPUs) when CUDA works, else cpu. */
export function rankDevice(env: DistEnv = distEnv()): Device {
  if (!cuda.isAvailable()) return "cpu";
  return `cuda:${env.localRank % Math.max(1, cuda.deviceCount())}`;
}
