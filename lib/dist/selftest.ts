/**
 * Self-test of a distributed setup, one process per rank (the ranks come from the torchrun
 * environment): `deno task launch --nproc 2 lib/dist/selftest.ts collectives`. The tests and the
 * GPU check run it too. Each rank prints one JSON line on stdout and exits non-zero on failure.
 *
 * Scenarios:
 * - `collectives`: broadcast, bucketed all-reduce, all-gather (with and without gradient),
 *   shuffle-BN, gradient all-reduce with unused parameters, SyncBatchNorm against BatchNorm on
 *   the global batch (outputs and input gradients);
 * - `ddp`: N SGD steps of a small slimmable network with SyncBatchNorm under
 *   `DistributedDataParallel`, compared with a single-process run on the global batch;
 * - `loop`: all-reduces forever (a test kills a rank); `stall`: rank `--bad-rank` stops before
 *   collective 3; `fail`: rank `--bad-rank` throws after joining while the others wait.
 */
import { parseArgs } from "node:util";
import * as F from "../functional.ts";
import { noGrad } from "../autograd.ts";
import { cuda, setNumThreads } from "../device.ts";
import type { Device } from "../dtype.ts";
import { AdaptiveAvgPool2d, BatchNorm, Flatten, ReLU } from "../nn/layers.ts";
import { Module } from "../nn/module.ts";
import {
  SlimmableConv2d,
  SlimmableLinear,
  SwitchableBatchNorm1d,
  SwitchableBatchNorm2d,
  WidthState,
} from "../nn/slimmable.ts";
import { SGD } from "../optim.ts";
import { Generator, manualSeed, randint, randn } from "../random.ts";
import { scope } from "../scope.ts";
import { arange, cat, full, liveHandles, type Tensor, tensor, zeros } from "../tensor.ts";
import { GroupCommunicator } from "./communicator.ts";
import { DistributedDataParallel } from "./ddp.ts";
import { type Backend, initProcessGroup, type ProcessGroup } from "./group.ts";
import { SyncBatchNorm } from "./sync_bn.ts";

/** A small slimmable network: conv, switchable BN, pooled features, slimmable MLP with BN. */
export class TinySlimNet extends Module {
  readonly state: WidthState;
  readonly conv: SlimmableConv2d;
  readonly bn: SwitchableBatchNorm2d;
  readonly fc1: SlimmableLinear;
  readonly bn1: SwitchableBatchNorm1d;
  readonly fc2: SlimmableLinear;
  readonly #tail = [new ReLU(), new AdaptiveAvgPool2d(1), new Flatten()];
  constructor(widths: readonly number[] = [1, 0.5], classes = 3) {
    super();
    const s = (this.state = new WidthState(widths));
    const c = widths.map((w) => Math.trunc(8 * w));
    const h = widths.map((w) => Math.trunc(12 * w));
    this.conv = this.child(
      "conv",
      new SlimmableConv2d(s, widths.map(() => 3), c, 3, { padding: 1 }),
    );
    this.bn = this.child("bn", new SwitchableBatchNorm2d(s, c));
    this.fc1 = this.child("fc1", new SlimmableLinear(s, c, h));
    this.bn1 = this.child("bn1", new SwitchableBatchNorm1d(s, h));
    this.fc2 = this.child("fc2", new SlimmableLinear(s, h, widths.map(() => classes)));
  }
  forward(x: Tensor): Tensor {
    return scope(() => {
      let y = this.bn.forward(this.conv.forward(x));
      for (const m of this.#tail) y = m.forward(y);
      return this.fc2.forward(this.bn1.forward(this.fc1.forward(y)).relu());
    });
  }
}

/** The global batch of step `step`: [n, 3, 6, 6] inputs and [n] labels in [0, 3). */
export function globalBatch(step: number, n: number, device: Device = "cpu"): [Tensor, Tensor] {
  using g = new Generator(1000 + step);
  const x = randn([n, 3, 6, 6], { generator: g });
  const y = randint(0, 3, [n], { generator: g });
  if (device === "cpu") return [x, y];
  return scope(() => [x.to(device), y.to(device)]);
}

/** One SGD step over every width; returns the summed loss. */
export function trainStep(
  net: TinySlimNet,
  forward: (x: Tensor) => Tensor,
  opt: SGD,
  x: Tensor,
  y: Tensor,
  after: () => void = () => {},
): number {
  opt.zeroGrad();
  const loss = scope(() => {
    let total = 0;
    for (const w of net.state.widths) {
      net.state.set(w);
      const l = F.crossEntropy(forward(x), y);
      l.backward();
      total += l.item();
    }
    net.state.set(net.state.widths[0]);
    return total;
  });
  after();
  opt.step();
  return loss;
}

/** Largest |a − b| over two modules' state dicts. */
export function maxStateDiff(a: Module, b: Module): number {
  const sb = b.stateDict();
  let worst = 0;
  for (const [k, t] of a.stateDict()) {
    worst = Math.max(
      worst,
      scope(() => t.to("float64").sub(sb.get(k)!.to("float64")).abs().max().item()),
    );
  }
  return worst;
}

/** `m` on `device` (Module.to is skipped on the CPU: it would copy every tensor). */
function onDevice<M extends Module>(m: M, device: Device): M {
  return device === "cpu" ? m : m.to(device);
}

type Check = [string, boolean, string?];

function near(a: Tensor, b: Tensor, tol = 1e-5): boolean {
  return scope(() => a.to("float64").sub(b.to("float64")).abs().max().item() <= tol);
}

function collectives(g: ProcessGroup, device: Device): Check[] {
  const W = g.worldSize, r = g.rank;
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail = "") => checks.push([name, ok, detail]);
  scope(() => {
    // broadcast of several dtypes from the last rank
    const src = W - 1;
    const a = full([3], r + 1, { device }),
      b = full([2, 2], 10 * (r + 1), { dtype: "int64", device });
    g.broadcast([a, b], src);
    check("broadcast", a.sum().item() === 3 * (src + 1) && b.sum().item() === 40 * (src + 1));
    // bucketed all-reduce of mixed dtypes, a non-contiguous view included
    const c = arange(6, undefined, 1, { dtype: "float32", device }).add(r).view(2, 3);
    const ct = c.t();
    const d = full([5], r + 1, { dtype: "float64", device });
    const e = full([4], r, { dtype: "int64", device });
    g.allReduce([ct, d, e], "sum");
    const sumR = (W * (W - 1)) / 2;
    const wantC = arange(6, undefined, 1, { dtype: "float32", device }).mul(W).add(sumR).view(2, 3);
    check(
      "all_reduce sum",
      near(c, wantC) && d.sum().item() === 5 * (sumR + W) && e.sum().item() === 4 * sumR,
    );
    const f = full([7], r, { device });
    const fi = full([3], 2 * r + 1, { dtype: "int64", device });
    g.allReduce([f, fi], "avg");
    check("all_reduce avg", near(f, full([7], sumR / W, { device })) && fi.sum().item() === 3 * W);
    // all-gather
    const x = full([2, 3], r, { device });
    const all = g.allGather(x);
    const want = cat(Array.from({ length: W }, (_, i) => full([2, 3], i, { device })));
    check("all_gather", near(all, want) && !all.requiresGrad);
    // all-gather with gradient through the local shard only
    const xg = full([2, 3], r + 1, { device, requiresGrad: true });
    const gathered = g.allGatherWithGrad(xg);
    const weights = arange(W * 6, undefined, 1, { dtype: "float32", device }).view(W * 2, 3);
    gathered.mul(weights).sum().backward();
    check(
      "all_gather_grad",
      near(xg.grad!, weights.narrow(0, 2 * r, 2)) &&
        near(
          gathered.detach(),
          cat(Array.from({ length: W }, (_, i) => full([2, 3], i + 1, { device }))),
        ),
    );
    // shuffle-BN round trip
    const comm = new GroupCommunicator(g);
    const ids = arange(4 * r, 4 * r + 4, 1, { dtype: "float32", device }).view(4, 1);
    using gen = new Generator(7);
    const s = comm.shuffle(ids, gen);
    const seen = comm.gather(s.x).view(-1).sort(0)[0];
    const back = comm.unshuffle(s.x, s.restore);
    const bc = comm.broadcast(full([2], r + 5, { device }), W - 1);
    check("communicator broadcast", near(bc, full([2], W + 4, { device })));
    check(
      "shuffle",
      near(seen, arange(4 * W, undefined, 1, { dtype: "float32", device })) && near(back, ids),
    );
    // gradient all-reduce with a parameter that only rank 0 used
    const p = zeros([3], { device, requiresGrad: true });
    const q = zeros([2], { device, requiresGrad: true });
    q.mul(r + 1).sum().backward();
    if (r === 0) p.mul(2).sum().backward();
    g.allReduceGradients([p, q]);
    check(
      "grad all_reduce (unused)",
      near(p.grad!, full([3], 2 / W, { device })) &&
        near(q.grad!, full([2], (sumR + W) / W, { device })),
    );
    // SyncBatchNorm: outputs and input gradients equal BatchNorm's on the global batch
    const [gx] = globalBatch(0, 4 * W, device);
    const local = gx.narrow(0, 4 * r, 4).detach().requiresGrad_();
    const sbn = onDevice(new SyncBatchNorm(3, g), device);
    const bn = onDevice(new BatchNorm(3), device);
    noGrad(() => {
      for (const m of [sbn, bn]) {
        m.weight!.copy_(arange(1, 4, 1, { dtype: "float32", device }));
        m.bias!.fill_(0.5);
      }
    });
    const up = arange(4 * W * 3 * 36, undefined, 1, { dtype: "float32", device }).view(
      4 * W,
      3,
      6,
      6,
    ).sin();
    const ys = sbn.forward(local);
    ys.mul(up.narrow(0, 4 * r, 4)).sum().backward();
    const whole = gx.detach().requiresGrad_();
    const yb = bn.forward(whole);
    yb.mul(up).sum().backward();
    check("sync_batch_norm forward", near(ys, yb.narrow(0, 4 * r, 4), 1e-5));
    check("sync_batch_norm backward", near(local.grad!, whole.grad!.narrow(0, 4 * r, 4), 1e-5));
    check(
      "sync_batch_norm running stats",
      near(sbn.runningMean!, bn.runningMean!, 1e-6) && near(sbn.runningVar!, bn.runningVar!, 1e-6),
    );
    sbn.dispose();
    bn.dispose();
    g.barrier();
  });
  return checks;
}

function ddp(g: ProcessGroup, device: Device, steps: number): Record<string, number> {
  const B = 4;
  const W = g.worldSize;
  manualSeed(100 + g.rank); // different initial weights: DDP must broadcast rank 0's
  const net = onDevice(new TinySlimNet(), device);
  const model = new DistributedDataParallel(net, g, { syncBatchNorm: true });
  const opt = new SGD(net.parameters(), { lr: 0.1, momentum: 0.9, weight_decay: 1e-4 });
  manualSeed(100);
  const ref = onDevice(new TinySlimNet(), device);
  const refOpt = new SGD(ref.parameters(), { lr: 0.1, momentum: 0.9, weight_decay: 1e-4 });
  let lossDiff = 0;
  for (let step = 0; step < steps; step++) {
    scope(() => {
      const [x, y] = globalBatch(step, B * W, device);
      const mine = x.narrow(0, B * g.rank, B), labels = y.narrow(0, B * g.rank, B);
      const local = trainStep(
        net,
        (t) => model.forward(t),
        opt,
        mine,
        labels,
        () => model.allReduceGradients(),
      );
      const whole = trainStep(ref, (t) => ref.forward(t), refOpt, x, y);
      // on the rank's device: NCCL reduces CUDA tensors only
      const l = tensor([local]).to(device);
      g.allReduce([l], "avg");
      lossDiff = Math.max(lossDiff, Math.abs(l.item() - whole));
    });
  }
  const diff = maxStateDiff(net, ref);
  for (const o of [opt, refOpt]) o.dispose();
  net.dispose();
  ref.dispose();
  return { max_state_diff: diff, max_loss_diff: lossDiff, steps };
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function loop(g: ProcessGroup, device: Device, steps: number, stallRank: number | null): void {
  using t = zeros([1000], { device });
  for (let i = 1; i <= steps; i++) {
    if (stallRank === g.rank && i === 3) sleepSync(120_000);
    g.allReduce([t], "sum");
    console.log(`rank ${g.rank} step ${i}`);
    sleepSync(50);
  }
}

/** Runs a scenario on this rank; prints the JSON result line. */
export async function main(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      backend: { type: "string", default: "gloo" },
      device: { type: "string", default: "cpu" },
      "timeout-ms": { type: "string", default: "30000" },
      "heartbeat-ms": { type: "string", default: "500" },
      steps: { type: "string", default: "5" },
      threads: { type: "string", default: "1" },
      "bad-rank": { type: "string", default: "1" },
    },
  });
  const scenario = positionals[0] ?? "collectives";
  // "cuda": the visible GPUs shared round-robin by local rank
  const localRank = Number(Deno.env.get("LOCAL_RANK") ?? 0);
  const device =
    (values.device === "cuda"
      ? `cuda:${localRank % Math.max(1, cuda.deviceCount())}`
      : values.device) as Device;
  setNumThreads(Number(values.threads));
  const before = liveHandles().handles;
  const t0 = performance.now();
  const g = initProcessGroup({
    backend: values.backend as Backend,
    device,
    timeoutMs: Number(values["timeout-ms"]),
    heartbeatMs: Number(values["heartbeat-ms"]),
    bucketBytes: scenario === "collectives" ? 64 : undefined,
  });
  const initMs = performance.now() - t0;
  const steps = Number(values.steps);
  const bad = Number(values["bad-rank"]);
  const out: Record<string, unknown> = {
    scenario,
    rank: g.rank,
    world: g.worldSize,
    init_ms: Math.round(initMs),
  };
  if (scenario === "collectives") {
    const checks = collectives(g, device);
    out.checks = Object.fromEntries(checks.map(([n, ok]) => [n, ok]));
    out.ok = checks.every(([, ok]) => ok);
  } else if (scenario === "ddp") {
    Object.assign(out, ddp(g, device, steps));
  } else if (scenario === "loop" || scenario === "stall") {
    loop(g, device, steps, scenario === "stall" ? bad : null);
  } else if (scenario === "fail") {
    if (g.rank === bad) throw new Error(`rank ${g.rank} fails on purpose`);
    g.barrier();
  } else throw new Error(`unknown scenario '${scenario}'`);
  out.collectives = g.collectives;
  g.destroy();
  out.leaked_handles = liveHandles().handles - before;
  out.ms = Math.round(performance.now() - t0);
  console.log(JSON.stringify(out));
  await Promise.resolve();
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (e) {
    console.error(`selftest: ${(e as { detail?: string }).detail ?? (e as Error).message}`);
    Deno.exit(1);
  }
}
