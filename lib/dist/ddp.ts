/**
 * `DistributedDataParallel`: data parallelism over a `Module` the explicit way. The constructor
 * broadcasts rank 0's parameters and buffers; `forward` (optionally) re-broadcasts the buffers as
 * torch's DDP does by default; `allReduceGradients()` after `backward()` averages every gradient
 * across ranks in one FFI call (bucketed). Without a group, or with one rank, it is a thin wrapper.
 */
import type { Module } from "../nn/module.ts";
import { scope } from "../scope.ts";
import { type Tensor, tensor } from "../tensor.ts";
import type { ProcessGroup } from "./group.ts";
import { convertSyncBatchNorm } from "./sync_bn.ts";

/** Options of `DistributedDataParallel`. */
export interface DDPOptions {
  /** Copy rank 0's buffers (BN statistics) to every rank before each training forward (default true). */
  broadcastBuffers?: boolean;
  /** Let ranks agree on which parameters got a gradient before reducing (default true). */
  findUnusedParameters?: boolean;
  /** Convert every BatchNorm to SyncBatchNorm over the group (default false). */
  syncBatchNorm?: boolean;
}

/** Wraps `module` for data-parallel training over `group`. */
export class DistributedDataParallel<M extends Module> {
  readonly broadcastBuffers: boolean;
  readonly findUnusedParameters: boolean;

  constructor(readonly module: M, readonly group: ProcessGroup | null, o: DDPOptions = {}) {
    this.broadcastBuffers = o.broadcastBuffers ?? true;
    this.findUnusedParameters = o.findUnusedParameters ?? true;
    if (o.syncBatchNorm) convertSyncBatchNorm(module, group);
    if (this.active) this.group!.broadcast([...module.parameters(), ...this.buffers()], 0);
  }

  /** Whether there is more than one rank. */
  get active(): boolean {
    return !!this.group && this.group.worldSize > 1;
  }

  private buffers(): Tensor[] {
    return this.module.namedBuffers("", true).map(([, t]) => t);
  }

  /** Copies rank 0's buffers to every rank. */
  syncBuffers(): void {
    if (this.active) this.group!.broadcast(this.buffers(), 0);
  }

  /** The module's forward, after syncing buffers in training mode when `broadcastBuffers`. */
  forward(...inputs: Tensor[]): Tensor {
    if (this.module.training && this.broadcastBuffers) this.syncBuffers();
    return this.module.forward(...inputs);
  }

  /**
   * Whether `flag` is true on any rank: one all-reduce of a single number on the module's device.
   * Training loops use it so that a stop signal, which reaches each rank at its own moment, stops
   * every rank after the same step (a rank that stopped alone would leave the others waiting in
   * the next gradient all-reduce). Without other ranks it is `flag`.
   */
  anyRank(flag: boolean): boolean {
    if (!this.active) return flag;
    const device = this.module.parameters()[0]?.device ?? "cpu";
    return scope(() => {
      const t = tensor([flag ? 1 : 0], [1]);
      const here = device === "cpu" ? t : t.to(device);
      this.group!.allReduce([here]);
      return here.item() > 0;
    });
  }

  /** Averages every parameter gradient across ranks (call after `backward`, before the step). */
  allReduceGradients(): void {
    if (!this.active) return;
    this.group!.allReduceGradients(this.module.parameters(), {
      average: true,
      findUnused: this.findUnusedParameters,
    });
  }
}
