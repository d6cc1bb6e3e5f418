/** Loss re-weighting across widths (spec §3.3, `loss_weights_generate`). */

/** Re-weighting schemes 0–7 of spec §3.3 (0, 4 and any other value give all ones). */
export type LossWeightScheme = number;

/** Python's `round(x, digits)`: the correctly rounded decimal, ties to even. */
export function pyRound(x: number, digits: number): number {
  if (!Number.isFinite(x)) return x;
  const [int, frac] = Math.abs(x).toFixed(Math.min(100, digits + 30)).split(".");
  const head = frac.slice(0, digits);
  if (!/^50*$/.test(frac.slice(digits))) return Number(x.toFixed(digits));
  // An exact tie: keep the even neighbour.
  const down = Number(`${int}.${head}`);
  const even = Number((int + head).at(-1)) % 2 === 0;
  return Math.sign(x) * Number((even ? down : down + 10 ** -digits).toFixed(digits));
}

/**
 * Per-width loss weights λ_i for the descending `widths` (spec §3.3, S = Σw, n = #widths):
 * 1: round(w/S, 3); 2: w; 3: round(w/S·n, 3); 5: the widest gets 1+S−w_max, others 1;
 * 6: v_i = S − Σ_{j≤i} w_j + 1, then round(v_i/Σv·n, 3); 7: the widest gets 1+max(rest), others
 * 1; 0, 4 and anything else: all ones. A single width always gets [1] (the reference zeroes the
 * scheme when only one width exists).
 */
export function lossWeights(widths: readonly number[], scheme: LossWeightScheme): number[] {
  const n = widths.length;
  if (n === 0) throw new RangeError("lossWeights: no widths");
  const ones = widths.map(() => 1);
  if (n === 1) return ones;
  const S = widths.reduce((a, b) => a + b, 0);
  switch (scheme) {
    case 1:
      return widths.map((w) => pyRound(w / S, 3));
    case 2:
      return [...widths];
    case 3:
      return widths.map((w) => pyRound((w / S) * n, 3));
    case 5:
      return widths.map((w, i) => (i === 0 ? 1 + S - w : 1));
    case 6: {
      let cum = 0;
      const v = widths.map((w) => {
        cum += w;
        return S - cum + 1;
      });
      const total = v.reduce((a, b) => a + b, 0);
      return v.map((x) => pyRound((x / total) * n, 3));
    }
    case 7: {
      const rest = Math.max(...widths.slice(1));
      return widths.map((_, i) => (i === 0 ? 1 + rest : 1));
    }
    default:
      return ones;
  }
}
