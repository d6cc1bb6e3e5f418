/**
 * Optimizers whose step runs in the shim: one FFI call per parameter group per step, with
 * LibTorch's foreach kernels. State is created at a parameter's first gradient, as in torch.optim,
 * and exported/imported in torch.optim's `state_dict` layout.
 */
import type { Handle } from "./ffi/library.ts";
import { raw, scalar, type Tensor, wrap } from "./tensor.ts";

const optimizers = new FinalizationRegistry<Handle>((h) => {
  try {
    raw().optim_free(h);
  } catch { /* shutting down */ }
});

/** A parameter group: parameters plus hyperparameters that override the optimizer's defaults. */
export interface ParamGroup<H> {
  params: Tensor[];
  options?: Partial<H>;
}

/** A live group: its hyperparameters are mutable (schedulers set `lr`). */
export type Group<H> = H & { params: Tensor[]; handle: Handle };

/** torch.optim-style state dict. */
export interface OptimizerStateDict {
  state: Record<number, Record<string, Tensor>>;
  param_groups: Record<string, unknown>[];
}

const KIND = { sgd: 0, lars: 1, adamw: 2 } as const;

/** Base of the shim-backed optimizers. */
export abstract class Optimizer<H extends object> {
  /** Parameter groups, in order. */
  readonly groups: Group<H>[];
  readonly #stateNames: readonly string[];

  protected constructor(
    kind: keyof typeof KIND,
    params: Tensor[] | ParamGroup<H>[],
    defaults: H,
    stateNames: readonly string[],
  ) {
    this.#stateNames = stateNames;
    const groups: ParamGroup<H>[] = params.length && !("params" in params[0])
      ? [{ params: params as Tensor[] }]
      : params as ParamGroup<H>[];
    this.groups = groups.map((g) => {
      const handle = raw().optim_new(KIND[kind], g.params.map((p) => p.ptr));
      const group = { ...defaults, ...g.options, params: g.params, handle } as Group<H>;
      optimizers.register(this, handle, this);
      return group;
    });
  }

  /** Applies one update to every parameter that has a gradient. */
  step(): void {
    for (const g of this.groups) this.stepGroup(g);
  }

  protected abstract stepGroup(g: Group<H>): void;

  /** Clears every gradient (set to none, as torch's default). */
  zeroGrad(): void {
    for (const g of this.groups) raw().optim_zero_grad(g.handle);
  }

  /** Sets the learning rate of every group. */
  setLr(lr: number): void {
    for (const g of this.groups) (g as { lr?: number }).lr = lr;
  }

  /** The state in torch.optim's layout; tensors are detached copies owned by the caller. */
  stateDict(): OptimizerStateDict {
    const state: Record<number, Record<string, Tensor>> = {};
    const paramGroups: Record<string, unknown>[] = [];
    let index = 0;
    for (const g of this.groups) {
      const s1 = raw().optim_state(g.handle, 0);
      const s2 = raw().optim_state(g.handle, 1);
      const steps = new BigInt64Array(g.params.length);
      raw().optim_steps(g.handle, steps, steps.length);
      const ids: number[] = [];
      for (let i = 0; i < g.params.length; i++, index++) {
        ids.push(index);
        const entry = this.exportState(s1[i], s2[i], Number(steps[i]));
        if (entry) state[index] = entry;
        else {
          for (const h of [s1[i], s2[i]]) if (h) raw().free(h);
        }
      }
      const { params: _p, handle: _h, ...hyper } = g;
      paramGroups.push({ ...hyper, params: ids });
    }
    return { state, param_groups: paramGroups };
  }

  /** @internal Builds one parameter's state entry from its raw state handles. */
  protected exportState(
    s1: Handle | null,
    s2: Handle | null,
    _step: number,
  ): Record<string, Tensor> | null {
    if (!s1) return null;
    if (s2) raw().free(s2);
    return { [this.#stateNames[0]]: wrap(s1) };
  }

  /** Restores state and hyperparameters from `stateDict()` (or a torch.optim state dict). */
  loadStateDict(sd: OptimizerStateDict): void {
    if (sd.param_groups.length !== this.groups.length) {
      throw new Error(
        `optimizer state has ${sd.param_groups.length} parameter groups, this optimizer ${this.groups.length}`,
      );
    }
    sd.param_groups.forEach((pg, gi) => {
      const g = this.groups[gi];
      const ids = pg.params as number[];
      if (ids.length !== g.params.length) {
        throw new Error(
          `optimizer state group ${gi} has ${ids.length} parameters, this optimizer's ${g.params.length}`,
        );
      }
      for (const [k, v] of Object.entries(pg)) {
        if (k !== "params" && k in g) (g as Record<string, unknown>)[k] = v;
      }
      ids.forEach((id, i) => {
        const s = sd.state[id];
        const [a, b, step] = s ? this.importState(s) : [null, null, 0];
        raw().optim_set_state(g.handle, i, a?.ptr ?? null, b?.ptr ?? null, step);
      });
    });
  }

  /** @internal The raw (state1, state2, step) of one parameter's state entry. */
  protected importState(s: Record<string, Tensor>): [Tensor | null, Tensor | null, number] {
    return [s[this.#stateNames[0]] ?? null, null, 0];
  }

  /** Frees the native optimizer objects. */
  dispose(): void {
    for (const g of this.groups) {
      if (!g.handle) continue;
      raw().optim_free(g.handle);
      (g as { handle: Handle | null }).handle = null;
    }
    optimizers.unregister(this);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Hyperparameters of SGD. */
export interface SGDOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weight_decay: number;
  nesterov: boolean;
}

/** torch.optim.SGD: momentum, dampening, Nesterov, L2 weight decay. */
export class SGD extends Optimizer<SGDOptions> {
  constructor(
    params: Tensor[] | ParamGroup<SGDOptions>[],
    o: Partial<SGDOptions> & { lr: number },
  ) {
    super("sgd", params, { momentum: 0, dampening: 0, weight_decay: 0, nesterov: false, ...o }, [
      "momentum_buffer",
    ]);
  }
  protected stepGroup(g: Group<SGDOptions>): void {
    raw().optim_sgd_step(g.handle, g.lr, g.momentum, g.dampening, g.weight_decay, g.nesterov);
  }
}

/** Hyperparameters of LARS. */
export interface LARSOptions {
  lr: number;
  momentum: number;
  weight_decay: number;
  trust_coefficient: number;
}

/** LARS as in MoCo v3: 1-D parameters get neither weight decay nor the trust ratio. */
export class LARS extends Optimizer<LARSOptions> {
  constructor(
    params: Tensor[] | ParamGroup<LARSOptions>[],
    o: Partial<LARSOptions> & { lr: number },
  ) {
    super("lars", params, { momentum: 0.9, weight_decay: 0, trust_coefficient: 0.001, ...o }, [
      "mu",
    ]);
  }
  protected stepGroup(g: Group<LARSOptions>): void {
    raw().optim_lars_step(g.handle, g.lr, g.momentum, g.weight_decay, g.trust_coefficient);
  }
}

/** Hyperparameters of AdamW. */
export interface AdamWOptions {
  lr: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
}

/** torch.optim.AdamW (amsgrad off). */
export class AdamW extends Optimizer<AdamWOptions> {
  constructor(params: Tensor[] | ParamGroup<AdamWOptions>[], o: Partial<AdamWOptions> = {}) {
    super("adamw", params, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 1e-2, ...o }, [
      "exp_avg",
      "exp_avg_sq",
    ]);
  }
  protected stepGroup(g: Group<AdamWOptions>): void {
    raw().optim_adamw_step(g.handle, g.lr, g.betas[0], g.betas[1], g.eps, g.weight_decay);
  }
  protected override exportState(
    s1: Handle | null,
    s2: Handle | null,
    step: number,
  ): Record<string, Tensor> | null {
    if (!s1 || !s2) return null;
    return { step: scalar(step), exp_avg: wrap(s1), exp_avg_sq: wrap(s2) };
  }
  protected override importState(
    s: Record<string, Tensor>,
  ): [Tensor | null, Tensor | null, number] {
    return [s.exp_avg ?? null, s.exp_avg_sq ?? null, s.step ? s.step.item() : 0];
  }
}

/** `target = m·target + (1−m)·source` over two parameter lists, in one call, without autograd. */
export function emaUpdate(targets: readonly Tensor[], sources: readonly Tensor[], m: number): void {
  raw().ema_update(targets.map((t) => t.ptr), sources.map((t) => t.ptr), m);
}

/**
 * Scales the gradients of `params` so their global L2 norm is at most `maxNorm`, in one call (as
 * `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping.
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): number {
  return raw().clip_grad_norm(params.map((p) => p.ptr), maxNorm);
}
