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

  constructor(readonly intervalMs = 500) {
    for (const s of this.#signals) Deno.addSignalListener(s, this.#onSignal);
  }

  /** Lets pending signals through when `intervalMs` has passed since the last time. */
  async poll(): Promise<void> {
    if (performance.now() - this.#lastYield < this.intervalMs) return;
    await new Promise((resolve) => setTimeout(resolve, 0));
    this.#lastYield = performance.now();
  }

  /** Stops listening. */
  [Symbol.dispose](): void {
    for (const s of this.#signals) Deno.removeSignalListener(s, this.#onSignal);
  }
}
