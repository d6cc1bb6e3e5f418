/**
 * (SlimCLR-)MoCo v3 (spec §2.6, §3.7, §3.9): a slimmable base encoder with the MoCo v3
 * projector, a slimmable predictor, a momentum encoder run at full width, a symmetric loss and
 * the cosine momentum schedule.
 */
import { noGrad } from "../autograd.ts";
import * as F from "../functional.ts";
import { SlimmableResNet } from "../models/slimmable_resnet.ts";
import type { Sequential } from "../nn/layers.ts";
import type { Module } from "../nn/module.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { SlimSSLMethod, type SlimSSLOptions, type StepContext } from "./base.ts";
import { slimmablePredictor } from "./heads.ts";
import { mocoV3Labels, mocoV3Logits, mocoV3Loss } from "./losses.ts";
import { cosineMomentum, initMomentumEncoder, momentumUpdate } from "./momentum.ts";
import type { WidthOutput } from "./slim_loss.ts";

/** Options of MoCo v3. */
export interface MoCoV3Options extends SlimSSLOptions {
  /** Output dimension of projector and predictor (default 256). */
  dim?: number;
  /** Hidden width of projector and predictor at width 1 (default 4096). */
  mlpDim?: number;
  /** Temperature τ (default 1.0, the paper's script). */
  temperature?: number;
  /** Base momentum m₀ (default 0.99). */
  momentum?: number;
  /** Cosine momentum schedule from m₀ to 1 (default true); needs `epochs`. */
  momentumCosine?: boolean;
  /** Total epochs E of the run (for the momentum schedule). */
  epochs?: number;
}

/**
 * MoCo v3, plain (`widths: [1]`) or slimmable. State dict: `base_encoder.*` (projector `fc.*`),
 * `momentum_encoder.*`, `predictor.{0,1,3}.*`.
 *
 * A step: EMA of the momentum encoder from the base encoder (not the predictor) with m(e); both
 * views through base encoder and predictor at every active width; keys of both views from the
 * momentum encoder at full width; `loss(q1, k2) + loss(q2, k1)`, each composed over widths.
 */
export class MoCoV3 extends SlimSSLMethod {
  readonly baseEncoder: SlimmableResNet;
  readonly momentumEncoder: SlimmableResNet;
  readonly predictor: Sequential;
  readonly dim: number;
  readonly temperature: number;
  readonly baseMomentum: number;
  readonly momentumCosine: boolean;
  readonly epochs: number | undefined;

  constructor(o: MoCoV3Options) {
    super(o);
    this.dim = o.dim ?? 256;
    this.temperature = o.temperature ?? 1.0;
    this.baseMomentum = o.momentum ?? 0.99;
    this.momentumCosine = o.momentumCosine ?? true;
    this.epochs = o.epochs;
    if (this.momentumCosine && !(this.epochs && this.epochs > 0)) {
      throw new RangeError("MoCo v3's cosine momentum schedule needs `epochs` (the run's length)");
    }
    const make = () =>
      new SlimmableResNet({
        zeroInitResidual: true,
        ...o.encoder,
        widths: this.widths,
        head: "mocov3_slim",
        numClasses: this.dim,
        mlpDim: o.mlpDim ?? 4096,
      });
    this.baseEncoder = this.child("base_encoder", make());
    this.momentumEncoder = this.child("momentum_encoder", make());
    this.predictor = this.child(
      "predictor",
      slimmablePredictor(this.baseEncoder.state, this.dim, o.mlpDim ?? 4096, o.encoder.overlap),
    );
    initMomentumEncoder(this.momentumEncoder, this.baseEncoder);
  }

  get encoder(): SlimmableResNet {
    return this.baseEncoder;
  }

  /** The momentum at fractional `epoch`: m(e) with the cosine schedule, else m₀. */
  momentumAt(epoch: number): number {
    return this.momentumCosine
      ? cosineMomentum(epoch, this.epochs!, this.baseMomentum)
      : this.baseMomentum;
  }

  /** Copies the base encoder's parameters into the momentum encoder (after loading weights). */
  syncMomentumEncoder(): void {
    initMomentumEncoder(this.momentumEncoder, this.baseEncoder);
  }

  protected override diagnosedModules(): [string, Module][] {
    return [["base_encoder", this.baseEncoder], ["predictor", this.predictor]];
  }

  protected updateMomentum(ctx: StepContext): number {
    const m = this.momentumAt(ctx.epoch);
    momentumUpdate(this.momentumEncoder, this.baseEncoder, m);
    return m;
  }

  /** Normalised predictor output of `x` at the active width. */
  query(x: Tensor): Tensor {
    return scope(() => F.normalize(this.predictor.forward(this.baseEncoder.forward(x)), 2, 1));
  }

  /** Normalised momentum-encoder keys of `x` at full width, gathered from every rank. */
  keys(x: Tensor): Tensor {
    return noGrad(() =>
      scope(() => {
        const enc = this.momentumEncoder;
        const k = enc.withWidth(this.widths[0], () => F.normalize(enc.forward(x), 2, 1));
        return this.comm.gather(k);
      })
    );
  }

  protected widthOutputs(
    viewA: Tensor,
    viewB: Tensor,
    widths: readonly number[],
  ): WidthOutput[][] {
    const n = viewA.shape[0];
    const kA = this.keys(viewA);
    const kB = this.keys(viewB);
    const labels = mocoV3Labels(n, this.comm.rank, viewA.device);
    const one = (width: number, q: Tensor, k: Tensor): WidthOutput => {
      const logits = mocoV3Logits(q, k, this.temperature);
      return {
        width,
        embedding: q,
        logits,
        labels,
        contrastive: mocoV3Loss(logits, labels, this.temperature),
      };
    };
    const dirAB: WidthOutput[] = [];
    const dirBA: WidthOutput[] = [];
    for (const width of widths) {
      const [qA, qB] = this.baseEncoder.withWidth(
        width,
        () => [this.query(viewA), this.query(viewB)],
      );
      dirAB.push(one(width, qA, kB));
      dirBA.push(one(width, qB, kA));
    }
    return [dirAB, dirBA];
  }
}
