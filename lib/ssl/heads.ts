/** Heads built outside the encoder: MoCo v3's slimmable predictor (spec §2.6). */
import { ReLU, Sequential } from "../nn/layers.ts";
import {
  channelsAt,
  SlimmableLinear,
  SwitchableBatchNorm1d,
  type WidthState,
} from "../nn/slimmable.ts";

/**
 * MoCo v3's slimmable predictor: `SlimmableLinear(dim → int(mlpDim·w), no bias)`,
 * `SwitchableBatchNorm1d`, ReLU, `SlimmableLinear(→ dim, no bias)`; state-dict names
 * `0.weight`, `1.bn.{i}.*`, `3.weight`. It follows the encoder's width (`state`). Linear weights
 * keep PyTorch's default initialisation, as the reference's predictor does.
 */
export function slimmablePredictor(
  state: WidthState,
  dim: number,
  mlpDim = 4096,
  overlap = true,
): Sequential {
  const d = state.widths.map(() => dim);
  const h = state.widths.map((w) => channelsAt(mlpDim, w));
  return new Sequential(
    new SlimmableLinear(state, d, h, false, overlap),
    new SwitchableBatchNorm1d(state, h),
    new ReLU(),
    new SlimmableLinear(state, h, d, false, overlap),
  );
}
