/**
 * (SlimCLR-)MoCo v2 (spec §2.6, §3.8): a slimmable query encoder with the MoCo v2 head, a
 * momentum key encoder run at full width, and a queue of normalised keys.
 */
import { noGrad } from "../autograd.ts";
import * as F from "../functional.ts";
import { SlimmableResNet } from "../models/slimmable_resnet.ts";
import type { Module } from "../nn/module.ts";
import { scope } from "../scope.ts";
import { cat, type Tensor, zeros } from "../tensor.ts";
import { SlimSSLMethod, type SlimSSLOptions, type StepContext } from "./base.ts";
import { shuffleBatch, unshuffleBatch } from "./distributed.ts";
import { infoNCE, mocoV2Labels, mocoV2Logits } from "./losses.ts";
import { initMomentumEncoder, momentumUpdate } from "./momentum.ts";
import { checkQueueBatch, enqueueKeys, initQueue } from "./queue.ts";
import type { WidthOutput } from "./slim_loss.ts";

/** Options of MoCo v2. */
export interface MoCoV2Options extends SlimSSLOptions {
  /** Projection dimension (default 128). */
  dim?: number;
  /** Queue length K (default 65536); a multiple of the global batch. */
  queueSize?: number;
  /** EMA momentum of the key encoder (default 0.999). */
  momentum?: number;
  /** InfoNCE temperature τ (default 0.2, the paper's; the reference CLI default is 0.07). */
  temperature?: number;
  /** Projector: shared slimmable linears (default) or private linears per width. */
  head?: "mocov2_slim" | "mocov2_switch";
  /**
   * Single-process shuffle-BN: the shuffled key batch is encoded in this many equal chunks, each
   * with its own batch statistics, as separate GPUs would (default 1: one chunk, where the
   * shuffle changes nothing because batch statistics do not depend on the order).
   */
  keyBatchSplits?: number;
  /** Hidden width of the projector at width 1 (default: the feature width, as the paper). */
  mlpDim?: number;
}

/**
 * MoCo v2, plain (`widths: [1]`) or slimmable. State dict: `queue` [dim, K], `queue_ptr` [1],
 * `encoder_q.*`, `encoder_k.*`.
 *
 * A step: EMA of the key encoder over all parameters (before the keys); queries of every active
 * width from view A; keys from view B at full width only, shuffled before the key encoder and
 * restored after (shuffle-BN through the communicator); InfoNCE per width against a snapshot of
 * the queue; then the keys of every rank are enqueued.
 */
export class MoCoV2 extends SlimSSLMethod {
  readonly encoderQ: SlimmableResNet;
  readonly encoderK: SlimmableResNet;
  readonly dim: number;
  readonly queueSize: number;
  readonly momentum: number;
  readonly temperature: number;
  readonly keyBatchSplits: number;

  constructor(o: MoCoV2Options) {
    super(o);
    this.dim = o.dim ?? 128;
    this.queueSize = o.queueSize ?? 65536;
    this.momentum = o.momentum ?? 0.999;
    this.temperature = o.temperature ?? 0.2;
    this.keyBatchSplits = o.keyBatchSplits ?? 1;
    this.buffer("queue", initQueue(this.dim, this.queueSize, o.generator));
    this.buffer("queue_ptr", zeros([1], { dtype: "int64" }));
    const make = () =>
      new SlimmableResNet({
        zeroInitResidual: true,
        ...o.encoder,
        widths: this.widths,
        head: o.head ?? "mocov2_slim",
        numClasses: this.dim,
        mlpDim: o.mlpDim,
      });
    this.encoderQ = this.child("encoder_q", make());
    this.encoderK = this.child("encoder_k", make());
    initMomentumEncoder(this.encoderK, this.encoderQ);
  }

  get encoder(): SlimmableResNet {
    return this.encoderQ;
  }
  /** The queue of keys [dim, K]. */
  get queue(): Tensor {
    return this.get_("queue")!;
  }
  /** The write pointer [1] (int64). */
  get queuePtr(): Tensor {
    return this.get_("queue_ptr")!;
  }

  /** Copies the query encoder's parameters into the key encoder (after loading weights). */
  syncKeyEncoder(): void {
    initMomentumEncoder(this.encoderK, this.encoderQ);
  }

  protected override diagnosedModules(): [string, Module][] {
    return [["encoder_q", this.encoderQ]];
  }

  protected override checkBatch(viewA: Tensor): void {
    const world = this.comm.worldSize;
    checkQueueBatch(this.queueSize, viewA.shape[0] * world, world);
  }

  protected updateMomentum(_ctx: StepContext): number {
    momentumUpdate(this.encoderK, this.encoderQ, this.momentum);
    return this.momentum;
  }

  /** Normalised keys of `x` at full width, with shuffle-BN; no gradient. */
  keys(x: Tensor): Tensor {
    const n = x.shape[0];
    const splits = this.keyBatchSplits;
    if (n % splits) {
      throw new RangeError(`key batch ${n} is not divisible by keyBatchSplits=${splits}`);
    }
    return noGrad(() =>
      scope(() => {
        const { x: shuffled, restore } = shuffleBatch(x, this.comm, this.generator);
        const enc = (t: Tensor) =>
          this.encoderK.withWidth(this.widths[0], () => this.encoderK.forward(t));
        const k = splits === 1 ? enc(shuffled) : cat(shuffled.chunk(splits).map(enc));
        return F.normalize(unshuffleBatch(k, restore, this.comm), 2, 1);
      })
    );
  }

  protected widthOutputs(
    viewA: Tensor,
    viewB: Tensor,
    widths: readonly number[],
  ): WidthOutput[][] {
    const n = viewA.shape[0];
    const k = this.keys(viewB);
    // A snapshot: the queue is updated below, before the caller's backward pass needs it.
    const queue = this.queue.clone();
    const labels = mocoV2Labels(n, viewA.device);
    const outs = widths.map((width) => {
      const q = F.normalize(
        this.encoderQ.withWidth(width, () => this.encoderQ.forward(viewA)),
        2,
        1,
      );
      const logits = mocoV2Logits(q, k, queue);
      return {
        width,
        embedding: q,
        logits,
        labels,
        contrastive: infoNCE(logits, labels, this.temperature),
      };
    });
    enqueueKeys(this.queue, this.queuePtr, this.comm.gather(k));
    return [outs];
  }
}
