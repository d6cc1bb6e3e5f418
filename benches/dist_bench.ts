/**
 * `deno task bench:dist`: data-parallel cost on this machine (JSON lines via `report()`).
 * - `ddp_step_*`: one SGD step (both widths, forward and backward, gradient all-reduce) of a
 *   slimmable ResNet-18 (small stem, base width 16, 1×28×28, widths 1/0.5) on a global batch of
 *   `--batch`: one process with all threads, one process with one thread, and `--nproc` Gloo
 *   ranks of one thread each with the batch split (with and without SyncBatchNorm). `speedup`
 *   compares with the one-process run on the same cores; on a 2-core machine two ranks can at best
 *   match one process with two threads.
 * - `allreduce_*`: all-reduce of a ResNet-50-sized gradient (25.6M floats, 102 MB) between
 *   `--nproc` Gloo ranks: a flat tensor, and ResNet-50's 161 gradients in 25 MB buckets; with
 *   `pytorch_ms` from torch.distributed's Gloo all-reduce of the flat tensor when Python torch is
 *   installed. `gbps` is algorithm bandwidth (bytes per rank / time).
 * `--device cuda` (GPU check) runs the same on the GPU (ranks share the visible GPUs round-robin),
 * with `--backend nccl` or gloo. Workers are this script with `--worker`; run under
 * `flock /tmp/slimclr-bench.lock`.
 */
import { parseArgs } from "node:util";
import {
  cuda,
  type Device,
  F,
  manualSeed,
  models,
  ones,
  randint,
  randn,
  scope,
  setNumThreads,
  SGD,
  zeros,
} from "../mod.ts";
import {
  type Backend,
  convertSyncBatchNorm,
  DistributedDataParallel,
  initProcessGroup,
  type ProcessGroup,
  spawnRanks,
} from "../lib/dist/mod.ts";
import { loadAverage, report } from "./_harness.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    worker: { type: "string" },
    nproc: { type: "string", default: "2" },
    batch: { type: "string", default: "64" },
    steps: { type: "string", default: "6" },
    reps: { type: "string", default: "5" },
    "sync-bn": { type: "boolean", default: false },
    device: { type: "string", default: "cpu" },
    backend: { type: "string", default: "gloo" },
    threads: { type: "string", default: String(navigator.hardwareConcurrency) },
    "no-python": { type: "boolean", default: false },
  },
});
const RESNET50_FLOATS = 25_557_032;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// ---- workers ----

/** This rank's device: the CPU, or the visible GPUs shared round-robin by local rank. */
function rankDevice(localRank: number): Device {
  if (values.device === "cpu") return "cpu";
  return `cuda:${localRank % Math.max(1, cuda.deviceCount())}`;
}

function sync(device: Device): void {
  if (device !== "cpu") cuda.synchronize(Number(device.split(":")[1] ?? 0));
}

function stepTimes(
  g: ProcessGroup | null,
  batch: number,
  steps: number,
  syncBn: boolean,
  device: Device,
): number[] {
  manualSeed(0);
  const net = new models.SlimmableResNet({
    arch: "resnet18",
    stem: "small",
    inChannels: 1,
    baseWidth: 16,
    numClasses: 10,
    widths: [1, 0.5],
  });
  if (device !== "cpu") net.to(device);
  if (syncBn) convertSyncBatchNorm(net, g);
  const ddp = new DistributedDataParallel(net, g, { broadcastBuffers: !syncBn });
  const opt = new SGD(net.parameters(), { lr: 0.05, momentum: 0.9 });
  const [x, y] = scope(() => [
    randn([batch, 1, 28, 28]).to(device),
    randint(0, 10, [batch]).to(device),
  ]);
  const times: number[] = [];
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    opt.zeroGrad();
    scope(() => {
      for (const w of net.widths) {
        net.setWidth(w);
        F.crossEntropy(ddp.forward(x), y).backward();
      }
    });
    ddp.allReduceGradients();
    opt.step();
    sync(device);
    times.push(performance.now() - t0);
  }
  for (const t of [x, y]) t.dispose();
  opt.dispose();
  net.dispose();
  return times.slice(1); // the first step warms up
}

function allReduceTimes(g: ProcessGroup, reps: number, device: Device): Record<string, number> {
  const flat = zeros([RESNET50_FLOATS], { device });
  const net = new models.ResNet({ arch: "resnet50", numClasses: 1000 });
  if (device !== "cpu") net.to(device);
  const params = net.parameters();
  for (const p of params) {
    using o = ones(p.shape, { device });
    p.grad = o;
  }
  const time = (fn: () => void) => {
    fn();
    g.barrier();
    const ts: number[] = [];
    for (let i = 0; i < reps; i++) {
      sync(device);
      const t0 = performance.now();
      fn();
      sync(device);
      ts.push(performance.now() - t0);
    }
    return median(ts);
  };
  const out = {
    flat_ms: time(() => g.allReduce([flat], "sum")),
    grads_ms: time(() => g.allReduceGradients(params)),
    numel: params.reduce((a, p) => a + p.numel, 0),
    tensors: params.length,
  };
  flat.dispose();
  net.dispose();
  return out;
}

async function worker(kind: string): Promise<void> {
  setNumThreads(Number(values.threads));
  const batch = Number(values.batch);
  const steps = Number(values.steps);
  const localRank = Number(Deno.env.get("LOCAL_RANK") ?? 0);
  const device = rankDevice(localRank);
  if (kind === "single") {
    console.log(JSON.stringify({ times: stepTimes(null, batch, steps, false, device) }));
    return;
  }
  const g = initProcessGroup({
    timeoutMs: 600_000,
    backend: values.backend as Backend,
    device: device === "cpu" ? undefined : device,
  });
  const result = kind === "allreduce"
    ? allReduceTimes(g, Number(values.reps), device)
    : { times: stepTimes(g, batch / g.worldSize, steps, values["sync-bn"], device) };
  g.destroy();
  console.log(JSON.stringify({ rank: g.rank, ...result }));
  await Promise.resolve();
}

// ---- driver ----

async function run(nproc: number, args: string[]): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  const errors: string[] = [];
  const ranks = spawnRanks({
    nproc,
    command: [Deno.execPath(), "run", "--allow-all", import.meta.filename!, ...args],
    onLine: (_r, s, l) => (s === "stdout" ? out.push(JSON.parse(l)) : errors.push(l)),
  });
  const exits = await ranks.wait();
  if (exits.some((e) => e.code !== 0)) {
    throw new Error(`bench worker failed:\n${errors.join("\n")}`);
  }
  return out;
}

/** torch.distributed's Gloo all-reduce of the flat tensor (ms), or null without Python torch. */
async function pytorchAllReduce(nproc: number, reps: number): Promise<number | null> {
  const script = `
import os, sys, time, torch, torch.distributed as dist, torch.multiprocessing as mp
def main(rank, n, port, reps, q):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=n)
    t = torch.zeros(${RESNET50_FLOATS})
    dist.all_reduce(t); dist.barrier()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); dist.all_reduce(t); ts.append((time.perf_counter() - t0) * 1e3)
    if rank == 0: q.put(sorted(ts)[len(ts) // 2])
    dist.destroy_process_group()
if __name__ == "__main__":
    n, port, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    q = mp.get_context("spawn").SimpleQueue()
    mp.spawn(main, args=(n, port, reps, q), nprocs=n)
    print(q.get())
`;
  const { freePort } = await import("../lib/dist/launcher.ts");
  const path = await Deno.makeTempFile({ suffix: ".py" }); // mp.spawn needs a file to import
  await Deno.writeTextFile(path, script);
  try {
    const r = await new Deno.Command("python3", {
      args: [path, String(nproc), String(freePort()), String(reps)],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) {
      console.error(
        `bench:dist: Python reference failed: ${
          new TextDecoder().decode(r.stderr).trim().split("\n").pop()
        }`,
      );
      return null;
    }
    return Number(new TextDecoder().decode(r.stdout).trim().split("\n").pop());
  } catch {
    return null;
  } finally {
    await Deno.remove(path).catch(() => {});
  }
}

/** `report()` with the device and backend. */
function rep(bench: string, ms: number, py: number | null, extra: Record<string, unknown>): void {
  report(bench, ms, py, { device: values.device, backend: values.backend, ...extra });
}

async function driver(): Promise<void> {
  const nproc = Number(values.nproc);
  const batch = Number(values.batch);
  const where = ["--device", values.device!, "--backend", values.backend!];
  const common = [
    "--batch",
    String(batch),
    "--steps",
    values.steps!,
    "--reps",
    values.reps!,
    ...where,
  ];
  const cores = navigator.hardwareConcurrency;
  console.error(
    `bench:dist: cores=${cores} nproc=${nproc} global batch=${batch} device=${values.device} ` +
      `backend=${values.backend} load=${loadAverage()}`,
  );
  const stepMs = async (n: number, args: string[]) => {
    const rs = await run(n, args);
    // a step ends when the slowest rank ends it: the per-step maximum over ranks
    const times = rs.map((r) => r.times as number[]);
    return median(times[0].map((_, i) => Math.max(...times.map((t) => t[i]))));
  };
  const single = await stepMs(1, ["--worker", "single", "--threads", String(cores), ...common]);
  rep("ddp_step_1proc", single, null, { procs: 1, threads: cores, batch });
  const single1 = await stepMs(1, ["--worker", "single", "--threads", "1", ...common]);
  rep("ddp_step_1proc_1thread", single1, null, { procs: 1, threads: 1, batch });
  for (const syncBn of [false, true]) {
    const args = [
      "--worker",
      "step",
      "--threads",
      "1",
      ...common,
      ...(syncBn ? ["--sync-bn"] : []),
    ];
    const ms = await stepMs(nproc, args);
    rep(`ddp_step_${nproc}proc${syncBn ? "_syncbn" : ""}`, ms, null, {
      procs: nproc,
      threads: 1,
      batch,
      speedup_vs_1proc: Number((single / ms).toPrecision(3)),
      speedup_vs_1thread: Number((single1 / ms).toPrecision(3)),
    });
  }
  const reps = Number(values.reps);
  const [ar] = await run(nproc, [
    "--worker",
    "allreduce",
    "--threads",
    "1",
    "--reps",
    String(reps),
  ]);
  const py = values["no-python"] ? null : await pytorchAllReduce(nproc, reps);
  const bytes = RESNET50_FLOATS * 4;
  const gbps = (ms: number) => Number((bytes / (ms / 1000) / 1e9).toPrecision(3));
  rep(`allreduce_flat_25.6M_${nproc}proc`, ar.flat_ms as number, py, {
    gbps: gbps(ar.flat_ms as number),
    pytorch_gbps: py === null ? null : gbps(py),
  });
  rep(`allreduce_resnet50_grads_${nproc}proc`, ar.grads_ms as number, null, {
    gbps: gbps(ar.grads_ms as number),
    tensors: ar.tensors,
    numel: ar.numel,
  });
}

if (values.worker) await worker(values.worker);
else await driver();
