/**
 * `deno task bench:slim`: the cost of running a slimmable network at a width. A slimmable
 * ResNet-18 (small-image stem, base width 16, 1 input channel, 28×28, batch 128) runs an
 * eval-mode forward under `noGrad` at widths 1/0.75/0.5/0.25, against
 * - its exported dense twin (`exportDense`) at the same width, measured alternately with it
 *   (`slim_forward_w{w}`: ours_ms, dense_ms, ratio; target ratio ≤ 1.10), and
 * - Python PyTorch running the same slimmable computation (weights sliced `w[:out, :in]`, that
 *   width's batch norms) on the same threads (`slim_forward_w{w}_vs_pytorch`).
 * Ours (alternating with dense) and Python run in alternating blocks so that machine drift hits
 * both; each time is the median of the samples of every block. Prints one JSON line per result.
 */
import { parseArgs } from "node:util";
import {
  getNumThreads,
  manualSeed,
  models,
  noGrad,
  randn,
  scope,
  setNumThreads,
  type Tensor,
} from "../mod.ts";
import { loadAverage, report, runPython } from "./_harness.ts";

const { SlimmableResNet, exportDense } = models;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    threads: { type: "string", default: String(navigator.hardwareConcurrency) },
    batch: { type: "string", default: "128" },
    /** Forwards per sample. */
    iters: { type: "string", default: "3" },
    /** Samples per side and block (ours and dense alternate). */
    rounds: { type: "string", default: "5" },
    /** Blocks of ours (with dense) and of Python, alternated; medians pool every block. */
    blocks: { type: "string", default: "5" },
    "no-python": { type: "boolean", default: false },
  },
});
const threads = Number(values.threads);
const batch = Number(values.batch);
const iters = Number(values.iters);
const rounds = Number(values.rounds);
const blocks = Number(values.blocks);
const WIDTHS = [1, 0.75, 0.5, 0.25];
const SIZE = 28;
setNumThreads(threads);
manualSeed(0);

const round4 = (x: number) => Number(x.toPrecision(4));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Mean milliseconds of `iters` calls of `fn`. */
function sample(fn: () => void): number {
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) fn();
  return (performance.now() - t0) / iters;
}

/** Samples `a` and `b` alternately (order flipped every round) after a warm-up of each. */
function alternate(a: () => void, b: () => void, sa: number[], sb: number[]): void {
  for (let i = 0; i < 2; i++) (a(), b());
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) (sa.push(sample(a)), sb.push(sample(b)));
    else (sb.push(sample(b)), sa.push(sample(a)));
  }
}

const net = new SlimmableResNet({
  arch: "resnet18",
  stem: "small",
  inChannels: 1,
  baseWidth: 16,
  numClasses: 10,
  widths: WIDTHS,
});
// One training pass per width so that every width's batch norms hold their own statistics.
noGrad(() => scope(() => void net.forwardWidths(randn([32, 1, SIZE, SIZE]))));
net.eval();
const x = randn([batch, 1, SIZE, SIZE]).keep();
const forward = (m: { forward(x: Tensor): Tensor }) => () =>
  noGrad(() => scope(() => void m.forward(x)));
const twins = new Map(WIDTHS.map((w) => [w, exportDense(net, w).eval()]));
for (const [w, dense] of twins) {
  net.setWidth(w);
  const same = noGrad(() => scope(() => net.forward(x).allclose(dense.forward(x), 1e-4, 1e-5)));
  if (!same) throw new Error(`width ${w}: the slimmable forward differs from its dense twin`);
}

console.error(
  `bench:slim: threads=${getNumThreads()} batch=${batch} input=1x${SIZE}x${SIZE} ` +
    `blocks=${blocks} rounds=${rounds} iters=${iters}`,
);
const ours = new Map(WIDTHS.map((w) => [w, [] as number[]]));
const dense = new Map(WIDTHS.map((w) => [w, [] as number[]]));
const pytorch = new Map(WIDTHS.map((w) => [w, [] as number[]]));
let pythonOk = !values["no-python"];
for (let b = 0; b < blocks; b++) {
  for (const w of WIDTHS) {
    net.setWidth(w);
    alternate(forward(net), forward(twins.get(w)!), ours.get(w)!, dense.get(w)!);
  }
  if (!pythonOk) continue;
  const py = await runPython("slim_bench.py", [
    String(threads),
    String(batch),
    String(iters),
    String(rounds),
    WIDTHS.join(","),
  ]) as Record<string, number[]> | null;
  if (!py) pythonOk = false;
  else for (const w of WIDTHS) pytorch.get(w)!.push(...py[`w${w}`]);
}
net.setWidth(1);

for (const w of WIDTHS) {
  const [o, d] = [median(ours.get(w)!), median(dense.get(w)!)];
  console.log(JSON.stringify({
    bench: `slim_forward_w${w}`,
    ours_ms: round4(o),
    dense_ms: round4(d),
    ratio: round4(o / d),
    load: loadAverage(),
    threads,
    batch,
  }));
}
for (const w of WIDTHS) {
  const p = pythonOk ? median(pytorch.get(w)!) : null;
  report(`slim_forward_w${w}_vs_pytorch`, median(ours.get(w)!), p, { threads, batch });
}
for (const d of twins.values()) d.dispose();
x.dispose();
net.dispose();
