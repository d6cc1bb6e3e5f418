/**
 * `deno task bench:ffi`: per-op dispatch overhead on small tensors and a ResNet-18 (small-image
 * stem) training step, each against Python PyTorch on the same LibTorch and thread count, in one
 * run. Prints one JSON line per benchmark. Targets: dispatch ratio ≤ 0.8, training step ≤ 1.05.
 */
import { parseArgs } from "node:util";
import { F, getNumThreads, manualSeed, randint, randn, scope, setNumThreads, SGD } from "../mod.ts";
import { ResNet } from "../lib/models/resnet.ts";
import { report, runPython, timeMs } from "./_harness.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    threads: { type: "string", default: String(navigator.hardwareConcurrency) },
    "op-iters": { type: "string", default: "100000" },
    "step-iters": { type: "string", default: "3" },
    batch: { type: "string", default: "128" },
    /** "ops" or "step" runs only that part. */
    only: { type: "string" },
  },
});
const threads = Number(values.threads);
const opIters = Number(values["op-iters"]);
const stepIters = Number(values["step-iters"]);
const batch = Number(values.batch);
setNumThreads(threads);
manualSeed(0);

function ours(): Record<string, number> {
  const out: Record<string, number> = {};
  const a = randn([4]).keep();
  const b = randn([4]).keep();
  const m = randn([4, 4]).keep();
  if (values.only !== "step") {
    out.op_add = timeMs(() => a.add(b).dispose(), opIters);
    out.op_matmul_4x4 = timeMs(() => m.matmul(m).dispose(), opIters);
    out.op_chain4 = timeMs(() => {
      using c = a.add(b);
      using d = c.mul(2);
      using e = d.relu();
      e.sum().dispose();
    }, opIters) / 4;
    out.op_chain4_scoped = timeMs(() => scope(() => void a.add(b).mul(2).relu().sum()), opIters) /
      4;
  }
  if (values.only === "ops") {
    for (const t of [a, b, m]) t.dispose();
    return out;
  }
  const net = new ResNet({ arch: "resnet18", stem: "small", numClasses: 10 });
  const opt = new SGD(net.parameters(), { lr: 0.1, momentum: 0.9, weight_decay: 1e-4 });
  const x = randn([batch, 3, 32, 32]).keep();
  const y = randint(0, 10, [batch]).keep();
  out.resnet18_step = timeMs(
    () =>
      scope(() => {
        opt.zeroGrad();
        const loss = F.crossEntropy(net.forward(x), y);
        loss.backward();
        opt.step();
      }),
    stepIters,
    1,
  );
  for (const t of [a, b, m, x, y]) t.dispose();
  opt.dispose();
  net.dispose();
  return out;
}

console.error(`bench:ffi: threads=${getNumThreads()} batch=${batch}`);
const mine = ours();
const py = await runPython("ffi_bench.py", [
  String(threads),
  String(opIters),
  String(values.only === "ops" ? 0 : stepIters),
  String(batch),
]);
for (const [name, ms] of Object.entries(mine)) {
  report(name, ms, py?.[name] ?? null, {
    threads,
    ...(name.startsWith("resnet") ? { batch } : {}),
  });
}
