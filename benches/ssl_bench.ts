/**
 * SlimCLR-MoCo v2 training step: four widths (1, 0.75, 0.5, 0.25; SEED distillation, scheme 5)
 * against the same step with the full width only (the same model before its slow start), and
 * each against Python PyTorch running the same step (benches/python/ssl_bench.py) on the same
 * LibTorch and thread count. Small-image ResNet-18 at base width 16, 1×28×28 inputs, batch 64,
 * queue 4096, SGD. Prints one JSON line per step kind; the four-width line carries
 * `time_ratio` (four widths / full width) next to `flop_ratio`, the same ratio of training MACs
 * (3× the forward MACs of each trained width plus one key-encoder forward), and
 * `time_vs_flop` = time_ratio / flop_ratio (target ≤ 1.1). Full-width and four-width steps are
 * timed alternately and the medians reported, so that load changes on a shared machine hit both.
 *
 *   flock /tmp/slimclr-bench.lock deno run -A benches/ssl_bench.ts [--iters 5] [--threads N]
 */
import { parseArgs } from "node:util";
import { getNumThreads, manualSeed, randn, scope, setNumThreads, SGD } from "../mod.ts";
import { profileWidths } from "../lib/models/profile.ts";
import { MoCoV2 } from "../lib/ssl/mod.ts";
import { report, runPython, timeMs } from "./_harness.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    threads: { type: "string", default: String(navigator.hardwareConcurrency) },
    iters: { type: "string", default: "5" },
    batch: { type: "string", default: "64" },
    "base-width": { type: "string", default: "16" },
    queue: { type: "string", default: "4096" },
  },
});
const threads = Number(values.threads);
const iters = Number(values.iters);
const batch = Number(values.batch);
const baseWidth = Number(values["base-width"]);
const queueSize = Number(values.queue);
const WIDTHS = [1, 0.75, 0.5, 0.25];
const SIZE = 28;
setNumThreads(threads);
manualSeed(0);

const method = new MoCoV2({
  encoder: { arch: "resnet18", stem: "small", inChannels: 1, baseWidth },
  widths: WIDTHS,
  dim: 128,
  queueSize,
  temperature: 0.2,
  distill: { kind: "seed", alpha: 0.5, studentT: 5, teacherT: 5 },
  lossWeighting: 5,
  slowStart: { startEpoch: 1 },
});
const opt = new SGD(method.trainableParameters(), { lr: 0.03, momentum: 0.9, weight_decay: 1e-4 });
const a = randn([batch, 1, SIZE, SIZE]).keep();
const b = randn([batch, 1, SIZE, SIZE]).keep();

/** One optimizer step; epoch 0 is before the slow start (full width only), epoch 1 after. */
function step(epoch: number): void {
  scope(() => {
    const { loss } = method.trainingStep(a, b, { epoch, step: 0 });
    opt.zeroGrad();
    loss.backward();
    opt.step();
  });
}

const macs = profileWidths(method.encoderQ, SIZE, { includeProjector: true });
const m1 = macs[0].macs;
const sumMacs = macs.reduce((s, w) => s + w.macs, 0);
const flopRatio = (3 * sumMacs + m1) / (3 * m1 + m1);

console.error(
  `bench:ssl: threads=${getNumThreads()} batch=${batch} base width=${baseWidth} queue=${queueSize}`,
);
/** Medians of single-step times, full and four widths interleaved (load drifts hit both). */
function interleaved(): [number, number] {
  for (let i = 0; i < 2; i++) [0, 1].forEach(step); // warm-up (optimizer state, allocator)
  const times: [number[], number[]] = [[], []];
  for (let r = 0; r < iters; r++) [0, 1].forEach((e) => times[e].push(timeMs(() => step(e), 1, 0)));
  const median = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  return [median(times[0]), median(times[1])];
}
const [fullMs, slimMs] = interleaved();
const py = await runPython("ssl_bench.py", [
  String(threads),
  String(iters),
  String(batch),
  String(baseWidth),
  String(queueSize),
]);

const common = { threads, batch, base_width: baseWidth, queue: queueSize, input: [1, SIZE, SIZE] };
report("mocov2_step_full_width", fullMs, py?.full ?? null, common);
const timeRatio = slimMs / fullMs;
report("mocov2_step_four_widths", slimMs, py?.slim ?? null, {
  ...common,
  widths: WIDTHS,
  time_ratio: Number(timeRatio.toPrecision(4)),
  flop_ratio: Number(flopRatio.toPrecision(4)),
  time_vs_flop: Number((timeRatio / flopRatio).toPrecision(4)),
  pytorch_time_ratio: py ? Number((py.slim / py.full).toPrecision(4)) : null,
  forward_macs: Object.fromEntries(macs.map((w) => [w.width, w.macs])),
});

for (const t of [a, b]) t.dispose();
opt.dispose();
method.dispose();
