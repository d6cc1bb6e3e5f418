/**
 * SlimCLR-MoCo v2 training step: four widths (1, 0.75, 0.5, 0.25; SEED distillation, scheme 5)
 * against the same step with the full width only (the same model before its slow start), and
 * each against Python PyTorch running the same step (benches/python/ssl_bench.py) on the same
 * LibTorch and thread count. Two configurations:
 * - `small`: the demo's network, a small-image ResNet-18 (3×3/2 stem) at base width 16, 1×28×28
 *   inputs, batch 64;
 * - `paper`: the paper's S-ResNet-50 (ImageNet stem, base width 64) at 3×112×112, batch 16 (224 px
 *   is the paper's; 112 keeps the step under a few seconds on a laptop CPU).
 * `--size`, `--batch` override the chosen configuration's, and `--device cuda` runs both
 * implementations on the GPU (the GPU check runs `--config paper --size 224 --batch 64` there).
 * Queue 4096, SGD. Prints one JSON line per configuration and step kind; the four-width line
 * carries `time_ratio` (four widths / full width) next to `flop_ratio`, the same ratio of training
 * MACs (3× the forward MACs of each trained width plus one key-encoder forward), and
 * `time_vs_flop` = time_ratio / flop_ratio (target ≤ 1.1). Full-width and four-width steps are
 * timed alternately and the medians reported, so that load changes on a shared machine hit both.
 *
 *   flock /tmp/slimclr-bench.lock deno run -A benches/ssl_bench.ts [--config small|paper|all]
 *     [--iters 5] [--threads N] [--device cpu|cuda] [--size PX] [--batch N] [--no-python]
 */
import { parseArgs } from "node:util";
import {
  cuda,
  type Device,
  getNumThreads,
  manualSeed,
  randn,
  scope,
  setNumThreads,
  SGD,
} from "../mod.ts";
import type { ResNetArch, Stem } from "../lib/models/resnet.ts";
import { profileWidths } from "../lib/models/profile.ts";
import { MoCoV2 } from "../lib/ssl/mod.ts";
import { report, runPython, timeMs } from "./_harness.ts";

interface BenchConfig {
  arch: ResNetArch;
  stem: Stem;
  baseWidth: number;
  inChannels: number;
  size: number;
  batch: number;
}

const CONFIGS: Record<string, BenchConfig> = {
  small: { arch: "resnet18", stem: "small_s2", baseWidth: 16, inChannels: 1, size: 28, batch: 64 },
  paper: { arch: "resnet50", stem: "imagenet", baseWidth: 64, inChannels: 3, size: 112, batch: 16 },
};

const { values } = parseArgs({
  args: Deno.args,
  options: {
    config: { type: "string", default: "all" },
    threads: { type: "string", default: String(navigator.hardwareConcurrency) },
    iters: { type: "string", default: "5" },
    queue: { type: "string", default: "4096" },
    device: { type: "string", default: "cpu" },
    size: { type: "string" },
    batch: { type: "string" },
    "no-python": { type: "boolean", default: false },
  },
});
if (values.device !== "cpu" && values.device !== "cuda") {
  console.error(`bench:ssl: --device '${values.device}' is unknown (expected cpu or cuda)`);
  Deno.exit(2);
}
const device: Device = values.device === "cuda" ? "cuda" : "cpu";
if (device === "cuda" && !cuda.isAvailable()) {
  console.error("bench:ssl: --device cuda but this LibTorch has no usable CUDA device");
  Deno.exit(2);
}
const names = values.config === "all" ? Object.keys(CONFIGS) : [values.config];
for (const n of names) {
  if (!CONFIGS[n]) {
    console.error(`bench:ssl: --config '${n}' is unknown (expected small, paper or all)`);
    Deno.exit(2);
  }
}
const threads = Number(values.threads);
const iters = Number(values.iters);
const queueSize = Number(values.queue);
const WIDTHS = [1, 0.75, 0.5, 0.25];
setNumThreads(threads);

/** Waits for queued GPU work, so that a timed step ends when its kernels do. */
const sync = () => {
  if (device !== "cpu") cuda.synchronize();
};

/** Medians of single-step times, full and four widths interleaved (load drifts hit both). */
function interleaved(step: (epoch: number) => void): [number, number] {
  for (let i = 0; i < 2; i++) [0, 1].forEach(step); // warm-up (optimizer state, allocator)
  const times: [number[], number[]] = [[], []];
  for (let r = 0; r < iters; r++) {
    [0, 1].forEach((e) =>
      times[e].push(timeMs(
        () => {
          step(e);
          sync();
        },
        1,
        0,
      ))
    );
  }
  const median = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  return [median(times[0]), median(times[1])];
}

async function bench(name: string, preset: BenchConfig): Promise<void> {
  const c = {
    ...preset,
    ...(values.size ? { size: Number(values.size) } : {}),
    ...(values.batch ? { batch: Number(values.batch) } : {}),
  };
  manualSeed(0);
  const method = new MoCoV2({
    encoder: { arch: c.arch, stem: c.stem, inChannels: c.inChannels, baseWidth: c.baseWidth },
    widths: WIDTHS,
    dim: 128,
    queueSize,
    temperature: 0.2,
    distill: { kind: "seed", alpha: 0.5, studentT: 5, teacherT: 5 },
    lossWeighting: 5,
    slowStart: { startEpoch: 1 },
  });
  if (device !== "cpu") method.to(device);
  const opt = new SGD(method.trainableParameters(), {
    lr: 0.03,
    momentum: 0.9,
    weight_decay: 1e-4,
  });
  const shape = [c.batch, c.inChannels, c.size, c.size];
  const a = randn(shape, { device }).keep();
  const b = randn(shape, { device }).keep();
  /** One optimizer step; epoch 0 is before the slow start (full width only), epoch 1 after. */
  const step = (epoch: number) =>
    scope(() => {
      const { loss } = method.trainingStep(a, b, { epoch, step: 0 });
      opt.zeroGrad();
      loss.backward();
      opt.step();
    });
  const macs = profileWidths(method.encoderQ, c.size, { includeProjector: true });
  const m1 = macs[0].macs;
  const sumMacs = macs.reduce((s, w) => s + w.macs, 0);
  const flopRatio = (3 * sumMacs + m1) / (3 * m1 + m1);
  console.error(
    `bench:ssl ${name}: ${c.arch} ${c.stem} stem, base width ${c.baseWidth}, ` +
      `${c.inChannels}×${c.size}×${c.size}, batch ${c.batch}, queue ${queueSize}, ` +
      `threads ${getNumThreads()}, ${device}`,
  );
  let fullMs: number, slimMs: number;
  try {
    [fullMs, slimMs] = interleaved(step);
  } finally {
    for (const t of [a, b]) t.dispose();
    opt.dispose();
    method.dispose();
  }
  const py = values["no-python"] ? null : await runPython("ssl_bench.py", [
    String(threads),
    String(iters),
    String(c.batch),
    String(c.baseWidth),
    String(queueSize),
    c.arch,
    String(c.size),
    String(c.inChannels),
    device,
    c.stem === "small_s2" ? "2" : "1",
  ]);
  const common = {
    config: name,
    device,
    arch: c.arch,
    stem: c.stem,
    threads,
    batch: c.batch,
    base_width: c.baseWidth,
    queue: queueSize,
    input: [c.inChannels, c.size, c.size],
  };
  report("mocov2_step_full_width", fullMs, py?.full ?? null, common);
  const timeRatio = slimMs / fullMs;
  report("mocov2_step_four_widths", slimMs, py?.slim ?? null, {
    ...common,
    widths: WIDTHS,
    time_ratio: Number(timeRatio.toPrecision(4)),
    flop_ratio: Number(flopRatio.toPrecision(4)),
    time_vs_flop: Number((timeRatio / flopRatio).toPrecision(4)),
    pytorch_time_ratio: py ? Number((py.slim / py.full).toPrecision(4)) : null,
    pytorch_time_vs_flop: py ? Number((py.slim / py.full / flopRatio).toPrecision(4)) : null,
    forward_macs: Object.fromEntries(macs.map((w) => [w.width, w.macs])),
  });
}

for (const n of names) await bench(n, CONFIGS[n]);
