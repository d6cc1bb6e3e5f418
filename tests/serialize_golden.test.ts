/**
 * Our writers against committed golden files. ts_written.pt / ts_written.safetensors were
 * produced by tests/fixtures/make_serialize_golden.ts and checked with
 * `torch.load(weights_only=True)` by tests/fixtures/make_serialize_fixtures.py --verify.
 */
import assert from "node:assert/strict";
import {
  isPyTuple,
  OrderedDict,
  PyComplex,
  readSafetensors,
  readTorchFile,
  TorchDType,
  TorchTensorLeaf,
  writeSafetensors,
  writeTorchFile,
} from "../lib/serialize/mod.ts";
import {
  GOLDEN_DIR,
  GOLDEN_METADATA,
  goldenObject,
  goldenTensors,
} from "./fixtures/make_serialize_golden.ts";

Deno.test("golden: writeTorchFile output equals the torch-verified golden bytes", () => {
  const golden = Deno.readFileSync(new URL("ts_written.pt", GOLDEN_DIR));
  assert.deepEqual(writeTorchFile(goldenObject()), golden);
});

Deno.test("golden: writeSafetensors output equals the golden bytes", () => {
  const golden = Deno.readFileSync(new URL("ts_written.safetensors", GOLDEN_DIR));
  assert.deepEqual(writeSafetensors(goldenTensors(), GOLDEN_METADATA), golden);
  const { tensors, metadata } = readSafetensors(golden);
  assert.deepEqual(metadata, GOLDEN_METADATA);
  for (const [name, t] of goldenTensors()) {
    assert.deepEqual(tensors.get(name), { dtype: t.dtype, shape: t.shape, data: t.data }, name);
  }
});

Deno.test("golden: the written checkpoint reads back through our reader", async () => {
  const golden = Deno.readFileSync(new URL("ts_written.pt", GOLDEN_DIR));
  const o = await readTorchFile(golden) as Record<string, unknown>;
  const sd = o.state_dict as OrderedDict<string, TorchTensorLeaf>;
  assert.ok(sd instanceof OrderedDict);
  const exp = goldenTensors();
  assert.deepEqual([...sd.keys()], [...exp.keys()]);
  for (const [k, t] of exp) {
    const got = sd.get(k)!;
    assert.ok(got instanceof TorchTensorLeaf);
    assert.equal(got.dtype, t.dtype, k);
    assert.deepEqual(got.shape, t.shape, k);
    assert.deepEqual(got.data, t.data, k);
  }
  assert.deepEqual(sd.state, { _metadata: new OrderedDict([["", { version: 1 }]]) });
  assert.equal(o.epoch, 7);
  assert.equal(o.lr, 0.25);
  assert.equal(o.one, 1);
  assert.equal(o.big, 2n ** 70n);
  assert.equal(o.neg, -5);
  assert.equal(o.negbig, -(2 ** 40));
  assert.equal(o.name, "résumé ✓");
  assert.deepEqual(o.flags, [true, false, null]);
  assert.ok(isPyTuple(o.tuple));
  assert.deepEqual(o.tuple, [1, "two", 3.5]);
  assert.deepEqual(o.map, new Map([[1, "one"], [2, "two"]]));
  assert.deepEqual(o.bytes, new Uint8Array([0, 255, 10]));
  assert.deepEqual(o.set, new Set([1, 2, 3]));
  assert.deepEqual(o.complex, new PyComplex(1, -2));
  assert.deepEqual(o.dtype, new TorchDType("float16"));
  const [a, b] = o.shared as TorchTensorLeaf[];
  assert.equal(a, b);
  const alias = o.alias as TorchTensorLeaf;
  assert.deepEqual(alias.shape, [2, 2]);
  assert.deepEqual(alias.data, a.data);
  assert.equal(alias.data.byteOffset, a.data.byteOffset, "alias shares the storage record");
  const p = o.param as TorchTensorLeaf;
  assert.ok(p.isParameter && p.requiresGrad);
  assert.deepEqual(o.nested, { deep: [{ x: [1, [2]] }] });
});
