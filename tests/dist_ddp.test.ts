/**
 * Data parallelism is exact: two Gloo ranks training a small slimmable network with SyncBatchNorm
 * under DistributedDataParallel (SGD with momentum and weight decay, both widths per step) end
 * with the weights and BN statistics of a single-process run on the same global batch.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { hasBackend, spawnRanks } from "../lib/dist/mod.ts";
import { PROJECT_ROOT } from "../lib/ffi/paths.ts";

const SELFTEST = join(PROJECT_ROOT, "lib", "dist", "selftest.ts");

Deno.test({
  name: "dist ddp: 2 ranks with SyncBatchNorm match a single process on the global batch",
  ignore: !hasBackend("gloo"),
  async fn() {
    const lines: string[][] = [[], []];
    const errors: string[] = [];
    const ranks = spawnRanks({
      nproc: 2,
      command: [Deno.execPath(), "run", "--allow-all", SELFTEST, "ddp", "--steps", "6"],
      onLine: (r, s, l) => (s === "stdout" ? lines[r].push(l) : errors.push(`[${r}] ${l}`)),
    });
    const exits = await ranks.wait();
    assert.deepEqual(exits.map((e) => e.code), [0, 0], errors.join("\n"));
    for (const r of [0, 1]) {
      const res = JSON.parse(lines[r].at(-1)!);
      assert.equal(res.steps, 6);
      assert.ok(res.max_state_diff < 2e-5, `rank ${r}: weights differ by ${res.max_state_diff}`);
      assert.ok(res.max_loss_diff < 1e-5, `rank ${r}: losses differ by ${res.max_loss_diff}`);
      assert.equal(res.leaked_handles, 0);
    }
  },
});
