/**
 * Distributed helpers that need no second process: sampler shards (coverage, padding, epochs,
 * parity with PyTorch's DistributedSampler), the torchrun/SLURM environment contract, the
 * single-process communicator, rank-zero logging and the launcher's command line.
 */
import assert from "node:assert/strict";
import type { Communicator as SslCommunicator } from "../lib/ssl/distributed.ts";
import {
  distEnv,
  DistributedDataParallel,
  distributedIndices,
  DistributedSampler,
  type GroupCommunicator,
  initDistributed,
  LocalCommunicator,
  rankEnv,
  rankLogger,
  SyncBatchNorm,
} from "../lib/dist/mod.ts";
import { globalBatch, maxStateDiff, TinySlimNet, trainStep } from "../lib/dist/selftest.ts";
import { parseCli } from "../tasks/launch.ts";
import { manualSeed, scope, SGD, tensor } from "../mod.ts";
import { leakFree, numbers } from "./_helpers.ts";

Deno.test("dist sampler: shards cover the dataset exactly once, padded to equal length", () => {
  for (const [n, world] of [[12, 3], [10, 3], [7, 4], [3, 5], [0, 2]]) {
    for (const epoch of [0, 1]) {
      const shards = Array.from(
        { length: world },
        (_, rank) => distributedIndices(n, epoch, { rank, worldSize: world, seed: 3 }),
      );
      const per = Math.ceil(n / world);
      for (const s of shards) assert.equal(s.length, per, `n=${n} world=${world}`);
      const all = shards.flat();
      assert.deepEqual([...new Set(all)].sort((a, b) => a - b), [...Array(n).keys()]);
      assert.equal(all.length - n, per * world - n, "only the padding repeats indices");
    }
  }
});

Deno.test("dist sampler: dropLast shards are disjoint, epochs reshuffle, order is PyTorch's", () => {
  const shards = (epoch: number, dropLast: boolean) =>
    [0, 1, 2].map((rank) =>
      distributedIndices(10, epoch, { rank, worldSize: 3, seed: 5, dropLast })
    );
  // torch.utils.data.DistributedSampler(range(10), 3, rank, shuffle=True, seed=5), set_epoch(e)
  assert.deepEqual(shards(0, false), [[1, 6, 0, 7], [4, 3, 2, 1], [9, 5, 8, 4]]);
  assert.deepEqual(shards(1, false), [[0, 1, 9, 6], [7, 8, 2, 0], [5, 3, 4, 7]]);
  assert.deepEqual(shards(0, true), [[1, 6, 0], [4, 3, 2], [9, 5, 8]]);
  const dropped = shards(1, true).flat();
  assert.equal(new Set(dropped).size, 9);
  const s = new DistributedSampler(10, { rank: 1, worldSize: 3, shuffle: false });
  assert.deepEqual([...s], [1, 4, 7, 0]);
  assert.equal(s.length, 4);
});

Deno.test("dist env: torchrun, SLURM and single-process contracts", () => {
  const t = distEnv({ ...rankEnv(1, 4, "10.0.0.1", 1234), TORCHELASTIC_RESTART_COUNT: "2" });
  assert.deepEqual(
    [t.rank, t.worldSize, t.localRank, t.masterAddr, t.masterPort, t.restart, t.source],
    [1, 4, 1, "10.0.0.1", 1234, 2, "torchrun"],
  );
  assert.equal(
    distEnv({ ...rankEnv(0, 2, "h", 1), TORCHELASTIC_USE_AGENT_STORE: "True" }).agentStore,
    true,
  );
  const slurm = distEnv({
    SLURM_PROCID: "5",
    SLURM_NTASKS: "8",
    SLURM_LOCALID: "1",
    SLURM_LAUNCH_NODE_IPADDR: "10.1.1.1",
  });
  assert.deepEqual([
    slurm.rank,
    slurm.worldSize,
    slurm.localRank,
    slurm.masterAddr,
    slurm.masterPort,
  ], [
    5,
    8,
    1,
    "10.1.1.1",
    29500,
  ]);
  const single = distEnv({});
  assert.deepEqual([single.rank, single.worldSize, single.source], [0, 1, "single"]);
  assert.equal(initDistributed({ env: single }), null);
  assert.throws(() => distEnv({ RANK: "2", WORLD_SIZE: "2", MASTER_ADDR: "x" }), /RANK=2/);
  assert.throws(() => distEnv({ RANK: "0", WORLD_SIZE: "2" }), /MASTER_ADDR/);
});

Deno.test("dist communicator: the single-process one is the identity", () => {
  leakFree(() => {
    const c = new LocalCommunicator();
    const x = tensor([1, 2, 3, 4, 5, 6], [3, 2], { requiresGrad: true });
    assert.deepEqual(numbers(c.gather(x)), [1, 2, 3, 4, 5, 6]);
    assert.equal(c.gather(x).requiresGrad, false);
    const g = c.gatherWithGrad(x);
    g.sum().backward();
    assert.deepEqual(numbers(x.grad!), [1, 1, 1, 1, 1, 1]);
    const s = c.shuffle(x.detach());
    assert.deepEqual(numbers(c.unshuffle(s.x, s.restore)), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(numbers(c.broadcast(x, 0)), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual([c.rank, c.worldSize], [0, 1]);
  });
});

Deno.test("dist communicator: both implementations fit the contrastive methods' interface", () => {
  // compile-time: lib/ssl takes a Communicator with allGather / allGatherWithGrad / broadcast
  const fits: GroupCommunicator extends SslCommunicator ? true : false = true;
  const local: SslCommunicator = new LocalCommunicator();
  assert.ok(fits && local.worldSize === 1);
});

Deno.test("dist logging: info on rank 0 only, errors everywhere", () => {
  const lines: string[] = [];
  for (const rank of [0, 1]) {
    const log = rankLogger(rank, (l) => lines.push(l));
    log.info("epoch", 1);
    log.error("boom");
  }
  assert.equal(lines.length, 3);
  assert.match(lines[0], /^\d{4}-\d\d-\d\d,\d\d:\d\d:\d\d \| INFO \| Rank 0 \| epoch 1$/);
  assert.match(lines[2], /\| ERROR \| Rank 1 \| boom$/);
});

Deno.test("launch: command line parsing stops at the target", () => {
  const c = parseCli(["--nproc", "2", "--master-port=4000", "x.ts", "--nproc", "9", "a"])!;
  assert.deepEqual([c.nproc, c.masterPort, c.target, c.rest], [2, 4000, "x.ts", [
    "--nproc",
    "9",
    "a",
  ]]);
  assert.equal(parseCli(["--help"]), null);
  assert.throws(() => parseCli(["x.ts"]), /--nproc/);
  assert.throws(
    () => parseCli(["--nproc", "2", "--bogus", "1", "x.ts"]),
    /unknown launcher option/,
  );
  assert.throws(
    () => parseCli(["--nproc", "2", "--master-port", "http", "x.ts"]),
    /--master-port expects an integer from 1 to 65535, got 'http'/,
  );
  assert.throws(() => parseCli(["--nproc", "2", "--grace-ms=-1", "x.ts"]), /--grace-ms expects/);
  assert.equal(parseCli(["--nproc", "2", "x.ts"])!.graceMs, 30_000);
});

Deno.test("dist ddp: without a group the wrapper and SyncBatchNorm change nothing", () => {
  leakFree(() => {
    const nets = [0, 1].map(() => {
      manualSeed(7);
      return new TinySlimNet();
    });
    const model = new DistributedDataParallel(nets[1], null, { syncBatchNorm: true });
    assert.ok(nets[1].bn.bn[0] instanceof SyncBatchNorm && !model.active);
    const opts = nets.map((n) => new SGD(n.parameters(), { lr: 0.1, momentum: 0.9 }));
    for (let step = 0; step < 2; step++) {
      scope(() => {
        const [x, y] = globalBatch(step, 6);
        trainStep(nets[0], (t) => nets[0].forward(t), opts[0], x, y);
        trainStep(
          nets[1],
          (t) => model.forward(t),
          opts[1],
          x,
          y,
          () => model.allReduceGradients(),
        );
      });
    }
    assert.equal(maxStateDiff(nets[0], nets[1]), 0);
    for (const o of opts) o.dispose();
    for (const n of nets) n.dispose();
  });
});
