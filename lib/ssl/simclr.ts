/**
 * (SlimCLR-)SimCLR (spec §2.6, §3.10): one slimmable encoder with the SimCLR head and NT-Xent
 * over the 2N views with the diagonal removed.
 */
import * as F from "../functional.ts";
import { SlimmableResNet } from "../models/slimmable_resnet.ts";
import type { Module } from "../nn/module.ts";
import { cat, type Tensor } from "../tensor.ts";
import { SlimSSLMethod, type SlimSSLOptions } from "./base.ts";
import { ntXent, ntXentLabels, ntXentLogits } from "./losses.ts";
import type { WidthOutput } from "./slim_loss.ts";

/** Options of SimCLR. */
export interface SimCLROptions extends SlimSSLOptions {
  /** Projection dimension (default 128, fixed in the reference). */
  dim?: number;
  /** Hidden width of the projector at width 1 (default 2048). */
  mlpDim?: number;
  /** NT-Xent temperature (default 0.1, fixed in the reference). */
  temperature?: number;
}

/**
 * SimCLR, plain (`widths: [1]`) or slimmable. State dict: `encoder_q.*`.
 *
 * A step: both views through the encoder (two forwards) at every active width; the embeddings of
 * every rank are gathered with gradients through the local shard only (the communicator's
 * `gatherWithGrad`), and each width's NT-Xent runs over the global 2N views. The distillation
 * logits are the un-scaled similarities; the embeddings are cat[z1, z2].
 */
export class SimCLR extends SlimSSLMethod {
  readonly encoderQ: SlimmableResNet;
  readonly dim: number;
  readonly temperature: number;

  constructor(o: SimCLROptions) {
    super(o);
    this.dim = o.dim ?? 128;
    this.temperature = o.temperature ?? 0.1;
    this.encoderQ = this.child(
      "encoder_q",
      new SlimmableResNet({
        zeroInitResidual: true,
        ...o.encoder,
        widths: this.widths,
        head: "simclr_slim",
        numClasses: this.dim,
        mlpDim: o.mlpDim ?? 2048,
      }),
    );
  }

  get encoder(): SlimmableResNet {
    return this.encoderQ;
  }

  protected override diagnosedModules(): [string, Module][] {
    return [["encoder_q", this.encoderQ]];
  }

  protected updateMomentum(): null {
    return null;
  }

  protected widthOutputs(
    viewA: Tensor,
    viewB: Tensor,
    widths: readonly number[],
  ): WidthOutput[][] {
    const n = viewA.shape[0] * this.comm.worldSize;
    const labels = ntXentLabels(n, viewA.device);
    const enc = this.encoderQ;
    const embed = (x: Tensor) => this.comm.gatherWithGrad(F.normalize(enc.forward(x), 2, 1));
    const outs = widths.map((width) => {
      const z = enc.withWidth(width, () => cat([embed(viewA), embed(viewB)]));
      const logits = ntXentLogits(z);
      return {
        width,
        embedding: z,
        logits,
        labels,
        contrastive: ntXent(logits, labels, this.temperature),
      };
    });
    return [outs];
  }
}
