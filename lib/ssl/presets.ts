/**
 * The SlimCLR settings of the paper's scripts (spec §1.3) as method options, for a run of
 * `epochs` epochs: four widths, SEED distillation with α = 0.5, re-weighting scheme 5 and a slow
 * start at half the run. The LR reset of the slow start is kept only where the script sets it
 * (MoCo v3, 3.2); see spec §7 D1. Optimizers are the trainer's: MoCo v2 SGD lr 0.2 wd 1e-4;
 * MoCo v3 LARS lr 1.2 wd 1e-6; SimCLR LARS lr 2.4 wd 1e-6 (batch 1024).
 */
import type { EncoderOptions } from "./base.ts";
import type { MoCoV2Options } from "./mocov2.ts";
import type { MoCoV3Options } from "./mocov3.ts";
import type { SimCLROptions } from "./simclr.ts";

const WIDTHS = [1, 0.75, 0.5, 0.25] as const;

/** SlimCLR-MoCo v2 (`scripts/mocov2.sh`). */
export function mocoV2Paper(encoder: EncoderOptions, epochs: number): MoCoV2Options {
  return {
    encoder,
    widths: WIDTHS,
    dim: 128,
    queueSize: 65536,
    momentum: 0.999,
    temperature: 0.2,
    distill: { kind: "seed", alpha: 0.5, studentT: 5, teacherT: 5 },
    lossWeighting: 5,
    slowStart: { startEpoch: epochs / 2 },
  };
}

/** SlimCLR-MoCo v3 (`scripts/mocov3.sh`). */
export function mocoV3Paper(encoder: EncoderOptions, epochs: number): MoCoV3Options {
  return {
    encoder,
    widths: WIDTHS,
    dim: 256,
    mlpDim: 4096,
    temperature: 1.0,
    momentum: 0.99,
    momentumCosine: true,
    epochs,
    distill: { kind: "seed", alpha: 0.5, studentT: 1, teacherT: 1 },
    lossWeighting: 5,
    slowStart: { startEpoch: epochs / 2, slimStartLr: 3.2 },
  };
}

/** SlimCLR-SimCLR (`scripts/simclr.sh`). */
export function simclrPaper(encoder: EncoderOptions, epochs: number): SimCLROptions {
  return {
    encoder,
    widths: WIDTHS,
    dim: 128,
    mlpDim: 2048,
    temperature: 0.1,
    distill: { kind: "seed", alpha: 0.5, studentT: 5, teacherT: 5 },
    lossWeighting: 5,
    slowStart: { startEpoch: epochs / 2 },
  };
}
