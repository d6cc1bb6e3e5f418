/**
 * SSL building blocks: MoCo's queue (enqueue, wrap-around, the divisibility error), shuffle-BN
 * (single process, key-batch splits, and two simulated ranks through the communicator hook), and
 * the momentum encoder's initial copy and EMA.
 */
import assert from "node:assert/strict";
import {
  arange,
  cat,
  F,
  Generator,
  nn,
  noGrad,
  randn,
  randperm,
  type Tensor,
  tensor,
} from "../mod.ts";
import {
  checkQueueBatch,
  type Communicator,
  enqueueKeys,
  initMomentumEncoder,
  initQueue,
  LocalCommunicator,
  MoCoV2,
  MoCoV3,
  momentumUpdate,
  shuffleBatch,
  unshuffleBatch,
} from "../lib/ssl/mod.ts";
import { leakFree, numbers } from "./_helpers.ts";

const ENCODER = { arch: "resnet18" as const, stem: "small" as const, inChannels: 1, baseWidth: 4 };

Deno.test("queue: enqueue writes columns ptr..ptr+B, wraps around, keeps int64 [1] pointer", () => {
  leakFree(() => {
    const queue = initQueue(4, 12, new Generator(3));
    assert.ok(queue.norm(2, 0).sub(1).abs().max().item() < 1e-6, "columns are unit vectors");
    const ptr = tensor([0], [1], { dtype: "int64" });
    const batches = [0, 1, 2, 3].map((b) =>
      arange(b * 16, b * 16 + 16, 1, { dtype: "float32" }).view(4, 4)
    );
    assert.equal(enqueueKeys(queue, ptr, batches[0]), 4);
    assert.deepEqual(numbers(queue.narrow(1, 0, 4).t().flatten()), numbers(batches[0].flatten()));
    assert.equal(enqueueKeys(queue, ptr, batches[1]), 8);
    assert.equal(enqueueKeys(queue, ptr, batches[2]), 0, "the pointer wraps to 0");
    assert.equal(ptr.item(), 0);
    assert.equal(enqueueKeys(queue, ptr, batches[3]), 4);
    assert.deepEqual(numbers(queue.narrow(1, 0, 4).t().flatten()), numbers(batches[3].flatten()));
    assert.deepEqual(numbers(queue.narrow(1, 4, 4).t().flatten()), numbers(batches[1].flatten()));
    assert.deepEqual(numbers(queue.narrow(1, 8, 4).t().flatten()), numbers(batches[2].flatten()));
  });
});

Deno.test("queue: K must be a multiple of the global batch, with a clear message", () => {
  assert.throws(
    () => checkQueueBatch(10, 4),
    /queue size K=10 is not a multiple of the global batch size 4/,
  );
  assert.throws(
    () => checkQueueBatch(96, 64, 2),
    /global batch size 64 \(32 per rank × 2 ranks\).*e\.g\. 128/,
  );
  checkQueueBatch(4096, 64);
  leakFree(() => {
    const queue = initQueue(4, 10);
    const ptr = tensor([0], [1], { dtype: "int64" });
    assert.throws(() => enqueueKeys(queue, ptr, randn([4, 4])), /not a multiple/);
    assert.throws(() => enqueueKeys(queue, ptr, randn([5, 3])), /dimension 3/);
  });
  // A MoCo v2 step refuses before it changes anything (EMA, queue).
  const m = new MoCoV2({ encoder: ENCODER, widths: [1], dim: 8, queueSize: 20 });
  leakFree(() => {
    const before = m.queue.clone();
    noGrad(() => m.encoderQ.parameters()[0].add_(1)); // an EMA would now move the key encoder
    const key = m.encoderK.parameters()[0].clone();
    const x = randn([8, 1, 8, 8]);
    assert.throws(
      () => m.trainingStep(x, x, { epoch: 0, step: 0 }),
      /K=20 is not a multiple of the global batch size 8/,
    );
    assert.ok(m.queue.equal(before));
    assert.ok(m.encoderK.parameters()[0].equal(key), "no momentum update either");
    assert.equal(m.queuePtr.item(), 0);
  });
  m.dispose();
});

Deno.test("shuffle-BN, one process: a permutation and its exact inverse", () => {
  leakFree(() => {
    const comm = new LocalCommunicator();
    const x = arange(0, 6, 1, { dtype: "float32" }).view(6, 1);
    const { x: shuffled, restore } = shuffleBatch(x, comm, new Generator(11));
    assert.deepEqual(numbers(shuffled).sort(), [0, 1, 2, 3, 4, 5]);
    assert.ok(numbers(unshuffleBatch(shuffled, restore, comm)).every((v, i) => v === i));
  });
});

/**
 * Two ranks simulated in one process: every collective returns what the other rank would have
 * contributed, from tensors the test prepares (rank 1's view of the job).
 */
class TwoRanks implements Communicator {
  readonly rank = 1;
  readonly worldSize = 2;
  constructor(readonly other: () => Tensor, readonly perm: Tensor) {}
  gather(t: Tensor): Tensor {
    return cat([this.other(), t.detach()]);
  }
  gatherWithGrad(t: Tensor): Tensor {
    return cat([this.other(), t]);
  }
  broadcast(_t: Tensor, _src: number): Tensor {
    return this.perm.clone();
  }
  shuffle(): never {
    throw new Error("not used: the test drives shuffleBatch");
  }
  unshuffle(): never {
    throw new Error("not used: the test drives unshuffleBatch");
  }
}

Deno.test("shuffle-BN over two simulated ranks restores each rank's own rows", () => {
  leakFree(() => {
    const global = arange(0, 8, 1, { dtype: "float32" }).view(8, 1);
    const perm = tensor([5, 2, 7, 0, 3, 6, 1, 4], [8], { dtype: "int64" });
    const local = global.narrow(0, 4, 4); // rank 1 holds rows 4..7
    // Shuffle: rank 1 gets the second half of the globally permuted batch.
    const c1 = new TwoRanks(() => global.narrow(0, 0, 4), perm);
    const { x: mine, restore } = shuffleBatch(local, c1, undefined);
    assert.deepEqual(numbers(mine), [3, 6, 1, 4]);
    // After encoding (identity here), gathering the shuffled halves gives global[perm].
    const shuffledGlobal = global.indexSelect(0, perm);
    const c2 = new TwoRanks(() => shuffledGlobal.narrow(0, 0, 4), perm);
    assert.deepEqual(numbers(unshuffleBatch(mine, restore, c2)), [4, 5, 6, 7]);
  });
});

Deno.test("MoCo v2 keys: shuffle-BN is order-free with one chunk; keyBatchSplits encodes chunks", () => {
  const make = (splits: number, seed: number) =>
    new MoCoV2({
      encoder: ENCODER,
      widths: [1, 0.5],
      dim: 8,
      queueSize: 16,
      keyBatchSplits: splits,
      generator: new Generator(seed),
    });
  const one = make(1, 5);
  const two = make(2, 5);
  two.encoderK.loadStateDict(one.encoderK.stateDict());
  leakFree(() => {
    const x = randn([8, 1, 8, 8]);
    const plain = noGrad(() => F.normalize(one.encoderK.forward(x), 2, 1));
    assert.ok(one.keys(x).allclose(plain, 1e-4, 1e-5), "one chunk: same keys as without shuffle");
    // Two chunks: each half of the shuffled batch has its own batch statistics.
    const g = new Generator(0);
    g.setState(two.generator!.getState()); // the queue initialisation already drew from it
    const perm = randperm(8, { generator: g });
    const halves = x.indexSelect(0, perm).chunk(2).map((h) =>
      noGrad(() => F.normalize(two.encoderK.forward(h), 2, 1))
    );
    const expected = cat(halves).indexSelect(0, perm.argsort(0));
    const got = two.keys(x);
    g.dispose();
    assert.ok(got.allclose(expected, 1e-4, 1e-5), "two chunks: encoded per chunk, then restored");
    assert.ok(!got.allclose(plain, 1e-3, 1e-3), "two chunks differ from one");
  });
  assert.throws(() => make(3, 1).keys(randn([8, 1, 8, 8])), /not divisible by keyBatchSplits=3/);
  one.dispose();
  two.dispose();
});

Deno.test("momentum encoder: initial copy is frozen; EMA θ_k ← m·θ_k + (1−m)·θ_q over all parameters", () => {
  const q = new nn.Linear(3, 2);
  const k = new nn.Linear(3, 2);
  initMomentumEncoder(k, q);
  assert.ok(k.weight.equal(q.weight) && k.bias!.equal(q.bias!));
  assert.ok(k.parameters().every((p) => !p.requiresGrad));
  leakFree(() => {
    const k0 = k.weight.clone();
    noGrad(() => q.weight.add_(1));
    momentumUpdate(k, q, 0.9);
    assert.ok(k.weight.allclose(k0.mul(0.9).add(q.weight.mul(0.1)), 1e-6, 1e-7));
  });
  q.dispose();
  k.dispose();
  assert.throws(() => new MoCoV3({ encoder: ENCODER, widths: [1] }), /needs `epochs`/);
});
