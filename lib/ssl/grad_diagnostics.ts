/**
 * Gradient diagnostics of weight-sharing networks (spec §5.8, paper Figs. 3–4):
 * - magnitude imbalance: the L2 norm of the *summed* gradient restricted to each sub-network's
 *   weights θ_w (the reference's `get_grad_norm`, with exact slices for every layer);
 * - direction divergence: the cosine similarity between each sub-network's own gradient and the
 *   widest network's gradient, on the weights they share (θ_w).
 * Only convolution and linear weights count (no biases or batch norms), as in the reference.
 */
import { grad } from "../autograd.ts";
import type { Module } from "../nn/module.ts";
import { SlimmableConv2d, SlimmableLinear, SwitchableLinear } from "../nn/slimmable.ts";
import { scope } from "../scope.ts";
import { stack, type Tensor } from "../tensor.ts";

/** The part of a weight one width uses: rows `out[0]..out[1]`, columns `in[0]..in[1]`. */
export interface WeightSlice {
  weight: Tensor;
  out: readonly [number, number];
  in: readonly [number, number];
}

/** A weight layer and the slice each width uses (null where a width does not use it). */
export interface DiagnosedLayer {
  name: string;
  /** Whether the widths share one weight tensor (slimmable) or own private ones (switchable). */
  shared: boolean;
  perWidth: (WeightSlice | null)[];
}

/** Per-width gradient diagnostics, widest first. */
export interface GradDiagnostics {
  widths: number[];
  /** ‖g|θ_w‖: L2 norm of the summed gradient over all of width w's weights. */
  magnitude: number[];
  /** Mean over layers of the per-layer norms ‖g|θ_w‖ (the reference's `mean_norm_{w}`). */
  meanLayerMagnitude: number[];
  /** cos(g_w, g_max) on θ_w for each sub-network; null for the widest. */
  cosine: (number | null)[];
}

/** The convolution and linear weights of `modules` with each width's slice. */
export function diagnosedLayers(
  modules: readonly [string, Module][],
  widths: number,
): DiagnosedLayer[] {
  const out: DiagnosedLayer[] = [];
  for (const [prefix, root] of modules) {
    for (const [path, m] of root.namedModules(prefix)) {
      if (m instanceof SlimmableConv2d || m instanceof SlimmableLinear) {
        out.push({
          name: `${path}.weight`,
          shared: true,
          perWidth: Array.from({ length: widths }, (_, i) => ({
            weight: m.weight,
            out: m.outRanges[i],
            in: m.inRanges[i],
          })),
        });
      } else if (m instanceof SwitchableLinear) {
        out.push({
          name: `${path}.linears.*.weight`,
          shared: false,
          perWidth: m.linears.map((l) => {
            const [o, i] = l.weight.shape;
            return { weight: l.weight, out: [0, o] as const, in: [0, i] as const };
          }),
        });
      }
    }
  }
  return out;
}

function slice(g: Tensor, s: WeightSlice): Tensor {
  const [o0, o1] = s.out;
  const [i0, i1] = s.in;
  const [O, I] = g.shape;
  if (o0 === 0 && i0 === 0 && o1 === O && i1 === I) return g;
  return g.narrow(0, o0, o1 - o0).narrow(1, i0, i1 - i0);
}

/** Every distinct weight tensor of `layers`. */
function weightsOf(layers: readonly DiagnosedLayer[]): Tensor[] {
  const set = new Set<Tensor>();
  for (const l of layers) for (const s of l.perWidth) if (s) set.add(s.weight);
  return [...set];
}

/** Per-layer gradient norms of width `i`'s slices (layers without a gradient are skipped). */
function layerNorms(
  layers: readonly DiagnosedLayer[],
  i: number,
  gradOf: (w: Tensor) => Tensor | null,
): number[] {
  return scope(() => {
    const norms: Tensor[] = [];
    for (const l of layers) {
      const s = l.perWidth[i];
      const g = s && gradOf(s.weight);
      if (s && g) norms.push(slice(g, s).norm());
    }
    return norms.length ? Array.from(stack(norms).to("float32").toFloat32Array()) : [];
  });
}

/**
 * Magnitude imbalance from any gradient source (by default the accumulated `.grad`, i.e. the
 * gradient of the summed loss after `backward()`, before the optimizer clears it).
 */
export function gradientMagnitudes(
  layers: readonly DiagnosedLayer[],
  widths: readonly number[],
  gradOf: (w: Tensor) => Tensor | null = (w) => w.grad,
): Pick<GradDiagnostics, "widths" | "magnitude" | "meanLayerMagnitude"> {
  const magnitude: number[] = [];
  const meanLayerMagnitude: number[] = [];
  widths.forEach((_, i) => {
    const n = layerNorms(layers, i, gradOf);
    magnitude.push(Math.sqrt(n.reduce((a, x) => a + x * x, 0)));
    meanLayerMagnitude.push(n.length ? n.reduce((a, x) => a + x, 0) / n.length : 0);
  });
  return { widths: [...widths], magnitude, meanLayerMagnitude };
}

/** cos(g_i, g_0) over the shared slices of width `i`. */
function sharedCosine(
  layers: readonly DiagnosedLayer[],
  i: number,
  gi: Map<Tensor, Tensor | null>,
  g0: Map<Tensor, Tensor | null>,
): number | null {
  return scope(() => {
    const parts: Tensor[] = [];
    for (const l of layers) {
      const s = l.perWidth[i];
      const a = s && l.shared ? gi.get(s.weight) : null;
      const b = s && l.shared ? g0.get(s.weight) : null;
      if (!s || !a || !b) continue;
      const sa = slice(a, s);
      const sb = slice(b, s);
      parts.push(stack([sa.mul(sb).sum(), sa.square().sum(), sb.square().sum()]));
    }
    if (!parts.length) return null;
    const [dot, na, nb] = stack(parts).sum(0).to("float64").toArray() as Float64Array;
    return na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : 0;
  });
}

/**
 * Both diagnostics from the per-width loss terms (widest first) of one step, before `backward()`:
 * each term's gradient is taken with `grad(…, retainGraph)`, so the step's graph survives for the
 * caller's backward pass. Costs about one extra backward pass; holds three gradient copies.
 */
export function gradientDiagnostics(
  terms: readonly Tensor[],
  layers: readonly DiagnosedLayer[],
  widths: readonly number[],
): GradDiagnostics {
  const weights = weightsOf(layers);
  const gradsOf = (term: Tensor) => {
    const gs = grad([term], weights, { retainGraph: true, allowUnused: true });
    return new Map(weights.map((w, j) => [w, gs[j]] as const));
  };
  return scope(() => {
    const g0 = gradsOf(terms[0]);
    const sum = new Map([...g0].map(([w, g]) => [w, g ? g.clone() : null] as const));
    const cosine: (number | null)[] = [null];
    for (let i = 1; i < terms.length; i++) {
      scope(() => {
        const gi = gradsOf(terms[i]);
        cosine.push(sharedCosine(layers, i, gi, g0));
        for (const [w, g] of gi) {
          if (!g) continue;
          const acc = sum.get(w);
          if (acc) acc.add_(g);
          else sum.set(w, g.clone().keep());
        }
      });
    }
    const m = gradientMagnitudes(layers, widths.slice(0, terms.length), (w) => sum.get(w) ?? null);
    for (const g of sum.values()) g?.dispose();
    return { ...m, cosine };
  });
}
