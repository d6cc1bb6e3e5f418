/** Parameter groups for optimizers: weight decay on weights, optionally none on norms and biases. */
import type { Tensor } from "../tensor.ts";
import { BatchNorm } from "./layers.ts";
import type { Module } from "./module.ts";

/** Names of a module's trainable parameters that are batch-norm affine parameters or biases. */
export function normAndBiasNames(module: Module): Set<string> {
  const out = new Set<string>();
  for (const [path, m] of module.namedModules()) {
    if (!(m instanceof BatchNorm)) continue;
    for (const [n] of m.namedParameters()) out.add(path ? `${path}.${n}` : n);
  }
  for (const [n] of module.namedParameters()) if (n.endsWith(".bias") || n === "bias") out.add(n);
  return out;
}

/**
 * Splits the trainable parameters (those requiring grad) into a decayed group and, when
 * `excludeNormAndBias` is set, a group with `weight_decay: 0` for batch-norm affine parameters
 * and biases. (The reference decays everything, defect D6; slimclr makes it a choice.)
 */
export function weightDecayGroups<H extends { weight_decay: number }>(
  module: Module,
  excludeNormAndBias: boolean,
): { params: Tensor[]; options?: Partial<H> }[] {
  const trainable = module.namedParameters().filter(([, p]) => p.requiresGrad);
  if (!excludeNormAndBias) return [{ params: trainable.map(([, p]) => p) }];
  const exempt = normAndBiasNames(module);
  return [
    { params: trainable.filter(([n]) => !exempt.has(n)).map(([, p]) => p) },
    {
      params: trainable.filter(([n]) => exempt.has(n)).map(([, p]) => p),
      options: { weight_decay: 0 } as Partial<H>,
    },
  ];
}
