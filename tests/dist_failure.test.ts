/**
 * No hangs: a rank that is killed, or that stalls before a collective, makes the other rank exit
 * with an error naming it within the collective timeout (plus the heartbeat check).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { hasBackend, spawnRanks } from "../lib/dist/mod.ts";
import { PROJECT_ROOT } from "../lib/ffi/paths.ts";

const SELFTEST = join(PROJECT_ROOT, "lib", "dist", "selftest.ts");
const TIMEOUT_MS = 3000;
const HEARTBEAT_MS = 300;

/** Starts the `loop` or `stall` scenario; resolves once both ranks passed step `ready`. */
async function start(scenario: string, ready: [number, number]) {
  const steps = [0, 0];
  const stderr: string[][] = [[], []];
  const ranks = spawnRanks({
    nproc: 2,
    failFast: false,
    command: [
      Deno.execPath(),
      "run",
      "--allow-all",
      SELFTEST,
      scenario,
      "--steps",
      "100000",
      "--timeout-ms",
      String(TIMEOUT_MS),
      "--heartbeat-ms",
      String(HEARTBEAT_MS),
    ],
    onLine: (r, s, l) => {
      const m = l.match(/ step (\d+)$/);
      if (m) steps[r] = Number(m[1]);
      else if (s === "stderr") stderr[r].push(l);
    },
  });
  const deadline = Date.now() + 15_000;
  while (steps[0] < ready[0] || steps[1] < ready[1]) {
    if (Date.now() > deadline) {
      ranks.stopAll();
      await ranks.wait();
      assert.fail(`ranks never reached step ${ready}: ${stderr.flat().join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { ranks, stderr };
}

Deno.test({
  name: "dist failure: a killed rank ends the run with an error naming it",
  ignore: !hasBackend("gloo"),
  async fn() {
    const { ranks, stderr } = await start("loop", [3, 3]);
    const t0 = performance.now();
    ranks.kill(1, "SIGKILL");
    const status = await ranks.children[0].status;
    const ms = performance.now() - t0;
    await ranks.wait();
    assert.notEqual(status.code, 0);
    const text = stderr[0].join("\n");
    assert.match(text, /failed on rank 0 of 2 \(gloo\): rank 1 stopped responding/);
    assert.ok(ms < TIMEOUT_MS + 3 * HEARTBEAT_MS + 2000, `rank 0 took ${ms} ms to fail`);
  },
});

Deno.test({
  name: "dist failure: a stalled rank is named by the others after the timeout",
  ignore: !hasBackend("gloo"),
  async fn() {
    const { ranks, stderr } = await start("stall", [2, 2]);
    const t0 = performance.now();
    const status = await ranks.children[0].status;
    const ms = performance.now() - t0;
    ranks.kill(1, "SIGKILL");
    await ranks.wait();
    assert.notEqual(status.code, 0);
    assert.match(
      stderr[0].join("\n"),
      /rank 1 is alive but stalled: it has not entered all_reduce #3/,
    );
    assert.ok(ms < TIMEOUT_MS + 3 * HEARTBEAT_MS + 3000, `rank 0 took ${ms} ms to fail`);
  },
});
