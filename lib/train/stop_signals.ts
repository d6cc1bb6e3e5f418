/** Ctrl-C and SIGTERM as a flag a training loop checks between steps. */

/**
 * Listens for SIGINT and SIGTERM until disposed; `stopped` turns true when one arrives. Deno
 * delivers signals as event-loop tasks, and a step whose batch is already prefetched never leaves
 * the microtask queue, so the loop calls `poll()` after each step: it yields to the event loop at
 * most every `intervalMs` (about 2 ms per half second).
 */
export class StopSignals implements Disposable {
  /** Whether a stop signal has arrived. */
  stopped = false;
  #lastYield = performance.now();
  readonly #signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  readonly #onSignal = () => {
    this.stopped = true;
  };

  /**
   * `anyRank` makes data-parallel ranks agree: each `poll()` sets `stopped` on every rank when any
   * rank has it (`DistributedDataParallel.anyRank`), so all of them stop after the same step.
   */
  constructor(
    readonly options: { intervalMs?: number; anyRank?: (flag: boolean) => boolean } = {},
  ) {
    for (const s of this.#signals) Deno.addSignalListener(s, this.#onSignal);
  }

  /**
   * Call after every step: lets pending signals through when the interval (default 500 ms) has
   * passed since the last time, then agrees with the other ranks, if any.
   */
  async poll(): Promise<void> {
    if (performance.now() - this.#lastYield >= (this.options.intervalMs ?? 500)) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      this.#lastYield = performance.now();
    }
    if (this.options.anyRank) this.stopped = this.options.anyRank(this.stopped);
  }

  /** Stops listening. */
  [Symbol.dispose](): void {
    for (const s of this.#signals) Deno.removeSignalListener(s, this.#onSignal);
  }
}
