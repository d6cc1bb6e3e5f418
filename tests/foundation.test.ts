import assert from "node:assert/strict";
import {
  arange,
  cat,
  DisposedTensorError,
  F,
  liveHandles,
  manualSeed,
  nn,
  noGrad,
  ones,
  randn,
  Scope,
  scope,
  SGD,
  tensor,
  TorchError,
  torchVersion,
  zeros,
} from "../mod.ts";

Deno.test("the shim reports the pinned LibTorch version", () => {
  assert.match(torchVersion(), /^2\.13\./);
});

Deno.test("tensors round-trip TypedArrays of every dtype", () => {
  scope(() => {
    const f = tensor(new Float32Array([1.5, -2, 3, 4]), [2, 2]);
    assert.deepEqual(f.shape, [2, 2]);
    assert.equal(f.dtype, "float32");
    assert.deepEqual([...f.toArray() as Float32Array], [1.5, -2, 3, 4]);
    const d = tensor(new Float64Array([0.1, 0.2]));
    assert.deepEqual([...d.toArray() as Float64Array], [0.1, 0.2]);
    const l = tensor(new BigInt64Array([1n, -(2n ** 40n)]));
    assert.deepEqual([...l.toArray() as BigInt64Array], [1n, -(2n ** 40n)]);
    const b = tensor([1, 0, 1], [3], { dtype: "bool" });
    assert.equal(b.dtype, "bool");
    assert.deepEqual(b.toList(), [1, 0, 1]);
    const h = f.to("float16").to("float32");
    assert.deepEqual(h.toList(), [[1.5, -2], [3, 4]]);
    assert.deepEqual(arange(3).toList(), [0, 1, 2]);
    assert.equal(arange(3).dtype, "int64");
  });
});

Deno.test("bad shapes and dtypes raise TorchError carrying LibTorch's message", () => {
  scope(() => {
    const a = zeros([2, 3]);
    const b = zeros([4, 5]);
    const e = assertThrowsTorch(() => a.matmul(b));
    assert.match(e.message, /cannot be multiplied \(2x3 and 4x5\)/);
    assert.ok(e.detail.length >= e.message.length);
    assert.ok(!e.message.includes("\n"));
    const idx = tensor([0.5], [1]);
    assertThrowsTorch(() => a.indexSelect(0, idx));
    assert.throws(() => tensor([1, 2, 3], [2, 2]), /needs 4 elements, data has 3/);
    assert.throws(
      () => tensor(new Float32Array(2), [2], { dtype: "float64" }),
      /cannot hold float64/,
    );
  });
});

function assertThrowsTorch(fn: () => unknown): TorchError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof TorchError, `expected TorchError, got ${e}`);
    return e;
  }
  throw new Error("expected a TorchError");
}

Deno.test("dispose is idempotent and use after dispose throws", () => {
  const before = liveHandles().handles;
  const t = ones([3]);
  assert.equal(liveHandles().handles, before + 1);
  t.dispose();
  t.dispose();
  assert.equal(liveHandles().handles, before);
  assert.throws(() => t.add(1), DisposedTensorError);
  {
    using u = ones([2]);
    assert.equal(u.sum().keep().item(), 2);
  }
  assert.ok(liveHandles().handles <= before + 1);
});

Deno.test("scopes free everything except returned and kept tensors", () => {
  const before = liveHandles().handles;
  const kept = scope(() => {
    const a = ones([4]);
    const b = a.mul(2).add(1);
    const inner = scope(() => {
      const c = b.exp();
      return { c, arr: [c.sum()] };
    });
    assert.equal(inner.c.disposed, false);
    return inner.arr[0];
  });
  assert.equal(kept.disposed, false);
  assert.ok(Math.abs(kept.item() - 4 * Math.exp(3)) < 1e-3);
  assert.equal(liveHandles().handles, before + 1);
  kept.dispose();
  assert.equal(liveHandles().handles, before);

  // `using` scope with an explicit keep.
  let survivor;
  {
    using _s = new Scope();
    const x = randn([3]);
    survivor = x.add(1).keep();
  }
  assert.equal(liveHandles().handles, before + 1);
  survivor.dispose();
  assert.equal(liveHandles().handles, before);
});

Deno.test("a scope frees its tensors when the body throws", () => {
  const before = liveHandles().handles;
  assert.throws(() =>
    scope(() => {
      ones([2]);
      zeros([3]).matmul(zeros([4]));
    }), TorchError);
  assert.equal(liveHandles().handles, before);
});

Deno.test("live bytes follow allocations", () => {
  const before = liveHandles().bytes;
  const t = zeros([256, 256]);
  assert.equal(liveHandles().bytes - before, 256 * 256 * 4);
  t.dispose();
  assert.equal(liveHandles().bytes, before);
});

Deno.test("autograd: backward, grad read and no-grad mode", () => {
  scope(() => {
    const x = tensor([1, 2, 3], [3], { requiresGrad: true });
    const y = x.mul(x).sum();
    y.backward();
    assert.deepEqual(x.grad!.toList(), [2, 4, 6]);
    x.grad = null;
    assert.equal(x.grad, null);
    const z = noGrad(() => x.mul(2));
    assert.equal(z.requiresGrad, false);
    const w = x.mul(3);
    w.backward(tensor([1, 1, 2]));
    assert.deepEqual(x.grad!.toList(), [3, 3, 6]);
  });
});

Deno.test("list ops return independent handles", () => {
  scope(() => {
    const parts = arange(10).chunk(3);
    assert.deepEqual(parts.map((p) => p.shape[0]), [4, 4, 2]);
    assert.deepEqual(cat(parts).toList(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const [v, i] = tensor([3, 1, 2]).sort();
    assert.deepEqual(v.toList(), [1, 2, 3]);
    assert.deepEqual(i.toList(), [1, 2, 0]);
  });
});

class SmallNet extends nn.Module {
  readonly body = this.child(
    "body",
    new nn.Sequential(
      new nn.Conv2d(1, 8, 3, { padding: 1 }),
      new nn.BatchNorm2d(8),
      new nn.ReLU(),
      new nn.Conv2d(8, 16, 3, { stride: 2, padding: 1, bias: false }),
      new nn.BatchNorm2d(16),
      new nn.ReLU(),
      new nn.AdaptiveAvgPool2d(1),
      new nn.Flatten(),
    ),
  );
  readonly fc = this.child("fc", new nn.Linear(16, 4));
  forward(x: Parameters<nn.Module["forward"]>[0]) {
    return scope(() => this.fc.forward(this.body.forward(x)));
  }
}

Deno.test("live handles stay flat over 200 training steps of a small conv net", () => {
  manualSeed(0);
  const net = new SmallNet();
  const opt = new SGD(net.parameters(), { lr: 0.05, momentum: 0.9, weight_decay: 1e-4 });
  const x = randn([16, 1, 8, 8]).keep();
  const y = tensor(new BigInt64Array(16).map((_, i) => BigInt(i % 4))).keep();
  const step = () =>
    scope(() => {
      const loss = F.crossEntropy(net.forward(x), y);
      opt.zeroGrad();
      loss.backward();
      opt.step();
      return loss.item();
    });
  const first = step();
  step();
  const baseline = liveHandles();
  let last = first;
  for (let i = 0; i < 200; i++) last = step();
  const after = liveHandles();
  assert.equal(after.handles, baseline.handles, "live handle count grew during training");
  assert.equal(after.bytes, baseline.bytes, "live bytes grew during training");
  assert.ok(last < first * 0.5, `loss should fall: ${first} -> ${last}`);
  opt.dispose();
  net.dispose();
  x.dispose();
  y.dispose();
});

Deno.test("a missing shim library is a clear error and the process survives", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { ones } from "${new URL("../mod.ts", import.meta.url)}";
      try { ones([1]); } catch (e) { console.log(e.name + ": " + e.message.split("\\n")[0]); }
      console.log("still alive");`,
    ],
    env: { SLIMCLR_LIB: "/nonexistent/libslimclr.so" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.match(text, /LibraryLoadError: cannot load the slimclr LibTorch shim from \/nonexistent/);
  assert.match(text, /still alive/);
  assert.equal(out.code, 0);
});

Deno.test("state dicts use PyTorch names and strict loading names every problem", () => {
  const net = new SmallNet();
  const keys = [...net.stateDict().keys()];
  assert.deepEqual(keys.slice(0, 8), [
    "body.0.weight",
    "body.0.bias",
    "body.1.weight",
    "body.1.bias",
    "body.1.running_mean",
    "body.1.running_var",
    "body.1.num_batches_tracked",
    "body.3.weight",
  ]);
  const other = new SmallNet();
  other.loadStateDict(net.stateDict());
  assert.ok(other.stateDict().get("fc.weight")!.equal(net.stateDict().get("fc.weight")!));
  const sd = new Map(net.stateDict());
  sd.delete("fc.bias");
  sd.set("extra.weight", net.stateDict().get("fc.weight")!);
  assert.throws(
    () => other.loadStateDict(sd),
    /missing keys: fc\.bias; unexpected keys: extra\.weight/,
  );
  net.dispose();
  other.dispose();
});

Deno.test("the finalizer safety net frees tensors nobody disposed", async () => {
  const script = `
    import { liveHandles, ones } from "${new URL("../mod.ts", import.meta.url)}";
    const before = liveHandles().handles;
    (() => { for (let i = 0; i < 200; i++) ones([16]).add(1); })();
    const leaked = liveHandles().handles - before;
    for (let i = 0; i < 20 && liveHandles().handles - before > 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
      globalThis.gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    console.log(JSON.stringify({ leaked, after: liveHandles().handles - before }));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--expose-gc", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
  assert.equal(r.leaked, 400);
  assert.equal(r.after, 0);
});
