/** An exponential moving average of a model's weights, for evaluating a smoother model. */
import { noGrad } from "../autograd.ts";
import { emaUpdate } from "../optim.ts";
import { scope } from "../scope.ts";
import type { Tensor } from "../tensor.ts";

/** What a checkpoint keeps of a `WeightEma`. */
export interface WeightEmaState {
  updates: number;
  tensors: Tensor[];
}

/**
 * Averages `params` after each optimizer step with decay `min(decay, (1 + n) / (10 + n))` at the
 * n-th update (the early average is not dominated by the initial weights). The averages live in
 * their own tensors; `copyTo` puts them into the model.
 */
export class WeightEma implements Disposable {
  readonly averages: Tensor[];
  #updates = 0;

  constructor(readonly params: readonly Tensor[], readonly decay: number) {
    this.averages = noGrad(() => scope(() => params.map((p) => p.detach().clone())))
      .map((t) => t.keep());
  }

  /** Updates processed so far. */
  get updates(): number {
    return this.#updates;
  }

  /** Folds the current weights into the averages. */
  update(): void {
    const n = this.#updates++;
    const d = Math.min(this.decay, (1 + n) / (10 + n));
    emaUpdate(this.averages, this.params, d);
  }

  /** Copies the averages into `params` (the same tensors the average follows, by default). */
  copyTo(params: readonly Tensor[] = this.params): void {
    noGrad(() => params.forEach((p, i) => p.copy_(this.averages[i])));
  }

  /** The averages and update count, for a checkpoint. */
  state(): WeightEmaState {
    return { updates: this.#updates, tensors: this.averages };
  }

  /** Restores `state()` (the tensors are copied). */
  load(state: WeightEmaState): void {
    if (state.tensors.length !== this.averages.length) {
      throw new RangeError(
        `the weight average holds ${state.tensors.length} tensors, the model has ${this.averages.length}`,
      );
    }
    noGrad(() => state.tensors.forEach((t, i) => this.averages[i].copy_(t)));
    this.#updates = state.updates;
  }

  [Symbol.dispose](): void {
    for (const t of this.averages) t.dispose();
  }
}
