/**
 * Collectives over Gloo with two local ranks on 127.0.0.1, started through `tasks/launch.ts`:
 * broadcast, bucketed all-reduce, all-gather with and without gradient, shuffle-BN, gradient
 * all-reduce with unused parameters and SyncBatchNorm against BatchNorm on the global batch (the
 * checks live in `lib/dist/selftest.ts`), and the launcher ending every rank when one fails.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { hasBackend } from "../lib/dist/mod.ts";
import { PROJECT_ROOT } from "../lib/ffi/paths.ts";

const gloo = hasBackend("gloo");
const LAUNCH = join(PROJECT_ROOT, "tasks", "launch.ts");
const SELFTEST = join(PROJECT_ROOT, "lib", "dist", "selftest.ts");

async function launch(args: string[]) {
  const t0 = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", LAUNCH, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return {
    code: out.code,
    stdout: text(out.stdout),
    stderr: text(out.stderr),
    ms: performance.now() - t0,
  };
}

Deno.test({
  name: "dist collectives: 2 Gloo ranks agree on every collective (via deno task launch)",
  ignore: !gloo,
  async fn() {
    const r = await launch(["--nproc", "2", SELFTEST, "collectives"]);
    assert.equal(r.code, 0, r.stderr);
    const results = r.stdout.trim().split("\n").map((l) => {
      const m = l.match(/^\[(\d)\] (\{.*\})$/);
      assert.ok(m, `unprefixed line: ${l}`);
      return [Number(m[1]), JSON.parse(m[2])] as const;
    });
    assert.deepEqual(results.map(([r]) => r).sort(), [0, 1]);
    for (const [rank, res] of results) {
      assert.equal(res.rank, rank);
      assert.equal(res.world, 2);
      for (const [name, ok] of Object.entries(res.checks)) assert.ok(ok, `rank ${rank}: ${name}`);
      assert.equal(res.leaked_handles, 0);
    }
    assert.equal(results[0][1].collectives, results[1][1].collectives);
  },
});

Deno.test({
  name: "dist launch: a failing rank ends the others and sets the exit code",
  ignore: !gloo,
  async fn() {
    const r = await launch(["--nproc", "2", SELFTEST, "fail", "--timeout-ms", "60000"]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /\[1\] selftest: rank 1 fails on purpose/);
    assert.match(r.stderr, /launch: rank 1 exited with code 1; stopped rank 0/);
    assert.ok(r.ms < 15_000, `took ${r.ms} ms`);
  },
});
