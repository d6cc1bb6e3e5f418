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
 * Each line also gives images/s, the achieved training TFLOP/s (and its fraction of
 * `--peak-tflops`), and on CUDA the peak allocated memory of one step against PyTorch's
 * (`torch.cuda.max_memory_allocated`). `--amp fp16|bf16` runs both sides under autocast (fp16
 * with loss scaling, as the trainer does); `--max-batch` doubles the batch from `--batch` until
 * the four-width step runs out of memory and prints the largest that fits.
 *
 *   flock /tmp/slimclr-bench.lock deno run -A benches/ssl_bench.ts [--config small|paper|all]
 *     [--iters 5] [--threads N] [--device cpu|cuda] [--size PX] [--batch N] [--no-python]
 *     [--amp none|fp16|bf16] [--peak-tflops T] [--max-batch] [--cudnn-benchmark]
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
import { type AmpMode, autocast, GradScaler } from "../lib/amp.ts";
import { TorchError } from "../lib/errors.ts";
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
    amp: { type: "string", default: "none" },
    "peak-tflops": { type: "string", default: "0" },
    "max-batch": { type: "boolean", default: false },
    "cudnn-benchmark": { type: "boolean", default: false },
  },
});
if (!["none", "fp16", "bf16"].includes(values.amp)) {
  console.error(`bench:ssl: --amp '${values.amp}' is unknown (expected none, fp16 or bf16)`);
  Deno.exit(2);
}
const amp = values.amp as AmpMode;
if (amp === "fp16" && values.device !== "cuda") {
  console.error("bench:ssl: --amp fp16 needs --device cuda");
  Deno.exit(2);
}
/** The card's dense peak in TFLOP/s for the step's precision (0: not reported). */
const peakTflops = Number(values["peak-tflops"]);
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
if (values["cudnn-benchmark"]) cuda.setCudnnBenchmark(true);

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

/** The method, optimizer and inputs of one benchmark, and its training step. */
interface Setup {
  /** One optimizer step; epoch 0 is before the slow start (full width only), epoch 1 after. */
  step: (epoch: number) => void;
  /** Forward MACs per image of each width (projector included). */
  macs: number[];
  dispose: () => void;
}

function setup(c: BenchConfig): Setup {
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
  const params = method.trainableParameters();
  const opt = new SGD(params, { lr: 0.03, momentum: 0.9, weight_decay: 1e-4 });
  const scaler = amp === "fp16" ? new GradScaler() : null;
  const shape = [c.batch, c.inChannels, c.size, c.size];
  const a = randn(shape, { device }).keep();
  const b = randn(shape, { device }).keep();
  // The trainer's step (lib/train/pretrain.ts): forward under autocast, backward of the (scaled)
  // loss outside it, then unscale + inf check + step for fp16.
  const forward = (epoch: number) =>
    amp === "none"
      ? method.trainingStep(a, b, { epoch, step: 0 })
      : autocast(device, amp === "bf16" ? "bfloat16" : "float16", () =>
        method.trainingStep(a, b, { epoch, step: 0 }));
  const step = (epoch: number) =>
    scope(() => {
      const { loss } = forward(epoch);
      opt.zeroGrad();
      (scaler ? scaler.scaleLoss(loss) : loss).backward();
      if (scaler) scaler.step(opt, params);
      else opt.step();
    });
  const macs = profileWidths(method.encoderQ, c.size, { includeProjector: true }).map((w) =>
    w.macs
  );
  return {
    step,
    macs,
    dispose: () => {
      for (const t of [a, b]) t.dispose();
      opt.dispose();
      method.dispose();
    },
  };
}

/** Peak CUDA memory (bytes) of one step after warm-up, or null on the CPU. */
function peakStepBytes(step: () => void): number | null {
  if (device === "cpu") return null;
  sync();
  cuda.resetPeakStats();
  step();
  sync();
  return cuda.memoryStats().peakAllocated;
}

const isOutOfMemory = (e: unknown) =>
  e instanceof TorchError && /out of memory|CUDA error: out of memory|OutOfMemory/i.test(e.message);

/** Training FLOPs of one step: 3× the forward of each trained width plus the key forward, ×2. */
const stepFlops = (macs: number[], widths: number, batch: number) =>
  2 * batch * (3 * macs.slice(0, widths).reduce((s, m) => s + m, 0) + macs[0]);

async function bench(name: string, preset: BenchConfig): Promise<void> {
  const c = {
    ...preset,
    ...(values.size ? { size: Number(values.size) } : {}),
    ...(values.batch ? { batch: Number(values.batch) } : {}),
  };
  console.error(
    `bench:ssl ${name}: ${c.arch} ${c.stem} stem, base width ${c.baseWidth}, ` +
      `${c.inChannels}×${c.size}×${c.size}, batch ${c.batch}, queue ${queueSize}, ` +
      `threads ${getNumThreads()}, ${device}, amp ${amp}`,
  );
  const s = setup(c);
  let fullMs: number, slimMs: number;
  let peaks: [number | null, number | null];
  try {
    [fullMs, slimMs] = interleaved(s.step);
    peaks = [peakStepBytes(() => s.step(0)), peakStepBytes(() => s.step(1))];
  } finally {
    s.dispose();
  }
  const macs = s.macs;
  const flopRatio = (3 * macs.reduce((x, m) => x + m, 0) + macs[0]) / (3 * macs[0] + macs[0]);
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
    amp,
    values["cudnn-benchmark"] ? "1" : "0",
  ]);
  const common = {
    config: name,
    device,
    amp,
    cudnn_benchmark: values["cudnn-benchmark"],
    arch: c.arch,
    stem: c.stem,
    threads,
    batch: c.batch,
    base_width: c.baseWidth,
    queue: queueSize,
    input: [c.inChannels, c.size, c.size],
  };
  /** Images/s, achieved TFLOP/s and the fraction of the card's peak; memory against PyTorch's. */
  const rates = (ms: number, widths: number, peak: number | null, pyPeak: number | undefined) => {
    const tflops = stepFlops(macs, widths, c.batch) / (ms / 1000) / 1e12;
    return {
      images_per_s: Math.round(c.batch / (ms / 1000)),
      tflops: Number(tflops.toPrecision(4)),
      peak_fraction: peakTflops > 0 ? Number((tflops / peakTflops).toPrecision(3)) : null,
      peak_mib: peak === null ? null : Math.round(peak / 2 ** 20),
      pytorch_peak_mib: pyPeak === undefined ? null : Math.round(pyPeak / 2 ** 20),
      memory_ratio: peak !== null && pyPeak ? Number((peak / pyPeak).toPrecision(4)) : null,
    };
  };
  report("mocov2_step_full_width", fullMs, py?.full ?? null, {
    ...common,
    ...rates(fullMs, 1, peaks[0], py?.full_peak),
  });
  const timeRatio = slimMs / fullMs;
  report("mocov2_step_four_widths", slimMs, py?.slim ?? null, {
    ...common,
    widths: WIDTHS,
    ...rates(slimMs, WIDTHS.length, peaks[1], py?.slim_peak),
    time_ratio: Number(timeRatio.toPrecision(4)),
    flop_ratio: Number(flopRatio.toPrecision(4)),
    time_vs_flop: Number((timeRatio / flopRatio).toPrecision(4)),
    pytorch_time_ratio: py ? Number((py.slim / py.full).toPrecision(4)) : null,
    pytorch_time_vs_flop: py ? Number((py.slim / py.full / flopRatio).toPrecision(4)) : null,
    forward_macs: Object.fromEntries(macs.map((m, i) => [WIDTHS[i], m])),
  });
}

/**
 * The largest batch whose four-width step fits: doubles from `--batch` until a step runs out of
 * memory (a TorchError, after which everything is freed), then prints the largest that ran with
 * its step time and images/s.
 */
function maxBatch(preset: BenchConfig): void {
  let batch = Number(values.batch ?? preset.batch);
  let best: { batch: number; ms: number; peak: number | null } | null = null;
  for (; batch <= 65536; batch *= 2) {
    const c = { ...preset, ...(values.size ? { size: Number(values.size) } : {}), batch };
    let s: Setup | null = null;
    try {
      s = setup(c);
      const run = s.step;
      run(1);
      run(1);
      sync();
      const ms = timeMs(
        () => {
          run(1);
          sync();
        },
        3,
        0,
      );
      best = { batch, ms, peak: peakStepBytes(() => run(1)) };
      // A line per batch that fits, so that a run cut short still reports the largest so far.
      console.log(JSON.stringify({
        bench: "mocov2_step_four_widths_batch_fits",
        device,
        amp,
        batch,
        ours_ms: Number(ms.toPrecision(4)),
        images_per_s: Math.round(batch / (ms / 1000)),
        peak_mib: best.peak ? Math.round(best.peak / 2 ** 20) : null,
      }));
    } catch (e) {
      if (!isOutOfMemory(e)) throw e;
      console.error(`bench:ssl max-batch: ${batch} is out of memory`);
      break;
    } finally {
      s?.dispose();
      if (device !== "cpu") cuda.emptyCache();
    }
  }
  console.log(JSON.stringify({
    bench: "mocov2_step_four_widths_max_batch",
    device,
    amp,
    input: [
      preset.inChannels,
      Number(values.size ?? preset.size),
      Number(values.size ?? preset.size),
    ],
    largest_batch_tried_that_fits: best?.batch ?? null,
    out_of_memory_at: best ? best.batch * 2 : batch,
    ours_ms: best ? Number(best.ms.toPrecision(4)) : null,
    images_per_s: best ? Math.round(best.batch / (best.ms / 1000)) : null,
    peak_mib: best?.peak ? Math.round(best.peak / 2 ** 20) : null,
  }));
}

if (values["max-batch"]) {
  for (const n of names) maxBatch(CONFIGS[n]);
} else {
  for (const n of names) await bench(n, CONFIGS[n]);
}
