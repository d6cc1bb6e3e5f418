import assert from "node:assert/strict";
import {
  isPyTuple,
  isRawTensor,
  loadTorchFile,
  OrderedDict,
  pickle,
  PyGlobal,
  PyObject,
  type RawTensor,
  readTorchFile,
  readTorchFileSync,
  saveTorchFile,
  SerializationError,
  tensorsIn,
  TorchDType,
  TorchTensorLeaf,
  typedArrayOf,
  writeTorchFile,
  writeZip,
  ZipReader,
} from "../lib/serialize/mod.ts";

const FIX = new URL("./fixtures/serialize/", import.meta.url);
const expected = JSON.parse(await Deno.readTextFile(new URL("expected.json", FIX)));
const MARKER = "/tmp/slimclr_serialize_pwned_marker";

type Expect = { dtype: string; shape: number[]; hex: string };

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function vals(t: RawTensor): (number | bigint)[] {
  return [...(typedArrayOf(t) as Iterable<number | bigint>)];
}

function assertTensor(t: unknown, e: Expect, what: string): void {
  assert.ok(t instanceof TorchTensorLeaf, `${what} is a TorchTensorLeaf`);
  assert.ok(isRawTensor(t));
  assert.equal(t.dtype, e.dtype, `${what} dtype`);
  assert.deepEqual(t.shape, e.shape, `${what} shape`);
  assert.equal(hex(t.data), e.hex, `${what} values`);
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("torch: reads a state_dict (dtypes, views, shared storage, scalar)", async () => {
  const bytes = Deno.readFileSync(new URL("state_dict.pt", FIX));
  const exp = expected["state_dict.pt"];
  const sd = await readTorchFile(bytes) as OrderedDict<string, TorchTensorLeaf>;
  assert.ok(sd instanceof OrderedDict);
  assert.deepEqual([...sd.keys()], exp.keys);
  for (const [k, e] of Object.entries(exp.tensors)) assertTensor(sd.get(k), e as Expect, k);

  // state_dict()._metadata arrives through BUILD
  const meta = (sd.state as { _metadata: OrderedDict<string, unknown> })._metadata;
  assert.ok(meta instanceof OrderedDict);
  assert.deepEqual([...meta.keys()], exp.metadata_keys);
  assert.deepEqual(meta.get("bn"), { version: 2 });

  // num_batches_tracked: int64 scalar
  const nbt = sd.get("bn.num_batches_tracked")!;
  assert.deepEqual(nbt.shape, []);
  assert.deepEqual(vals(nbt), [1n]);

  // contiguous views are zero-copy views of the file; offset view shares base's storage
  const base = sd.get("extra.f64_base")!;
  const view = sd.get("extra.offset_view")!;
  assert.equal(base.data.buffer, bytes.buffer);
  assert.equal(view.data.buffer, bytes.buffer);
  assert.equal(view.data.byteOffset, base.data.byteOffset + 3 * 8);
  assert.deepEqual(vals(view), [1.5, 2, 2.5, 3]);
  assert.deepEqual(vals(sd.get("extra.strided")!), [0.5, 2, 3.5]);

  // transposed view of fc.weight, materialised contiguously
  const w = vals(sd.get("fc.weight")!) as number[];
  const wt = vals(sd.get("extra.transposed")!) as number[];
  assert.deepEqual(sd.get("extra.transposed")!.shape, [3, 2]);
  for (let i = 0; i < 3; i++) for (let j = 0; j < 2; j++) assert.equal(wt[i * 2 + j], w[j * 3 + i]);
  assert.deepEqual(vals(sd.get("extra.expanded")!), [1, -2, 3, 1, -2, 3]);

  // the sync reader gives the same tree
  const sync = readTorchFileSync(bytes) as OrderedDict<string, TorchTensorLeaf>;
  assert.deepEqual([...sync.keys()], exp.keys);
  for (const [k, e] of Object.entries(exp.tensors)) assertTensor(sync.get(k), e as Expect, k);
});

Deno.test("torch: reads an archive whose records are DEFLATE-compressed", async () => {
  const bytes = Deno.readFileSync(new URL("state_dict_deflate.pt", FIX));
  const exp = expected["state_dict.pt"];
  const sd = await readTorchFile(bytes) as OrderedDict<string, TorchTensorLeaf>;
  for (const [k, e] of Object.entries(exp.tensors)) assertTensor(sd.get(k), e as Expect, k);
  assert.throws(() => readTorchFileSync(bytes), /only STORED entries/);
});

Deno.test("torch: reads a training checkpoint (Namespace, SGD momentum state, extras)", async () => {
  const ck = await loadTorchFile(new URL("checkpoint.pt", FIX)) as Record<string, unknown>;
  const exp = expected["checkpoint.pt"];
  assert.equal(ck.epoch, 3);
  assert.deepEqual(ck.args, { lr: 0.1, arch: "resnet50", widths: [1, 0.5] });
  const sd = ck.state_dict as OrderedDict<string, unknown>;
  assert.ok(sd instanceof OrderedDict);
  for (const [k, e] of Object.entries(exp.state_dict)) assertTensor(sd.get(k), e as Expect, k);

  const opt = ck.optimizer as {
    state: Map<number, Record<string, unknown>>;
    param_groups: unknown;
  };
  assert.ok(opt.state instanceof Map, "int-keyed dict is a Map");
  assert.deepEqual([...opt.state.keys()], [0, 1, 2, 3, 4, 5]);
  for (const [k, entry] of Object.entries(exp.optimizer_state)) {
    for (const [name, e] of Object.entries(entry as Record<string, Expect>)) {
      assertTensor(opt.state.get(Number(k))![name], e, `optimizer.state[${k}].${name}`);
    }
  }
  assert.deepEqual(opt.param_groups, exp.param_groups);

  assert.equal(ck.best_acc, 0.75, "numpy float64 scalar decoded");
  assert.equal(ck.step, 1234, "numpy int64 scalar decoded");
  assert.equal(ck.big, 2n ** 70n);
  assert.equal(ck.neg, -123456789012);
  assert.ok(isPyTuple(ck.tuple));
  assert.deepEqual(ck.tuple, [1, "a", null]);
  assert.deepEqual(ck.bytes, new Uint8Array([0, 0xff, 0x61, 0x62]));
  assert.deepEqual(ck.set, new Set([1, 2]));
  const nested = ck.nested as Map<unknown, unknown>;
  assert.equal(nested.get(1), "int key");
  const [[, tupleKey]] = [...nested].filter(([k]) => Array.isArray(k));
  assert.equal(tupleKey, "tuple key");
  assert.deepEqual(ck.dtype, new TorchDType("float16"));
  assert.equal(ck.device, "cuda:0");
  assert.deepEqual(ck.size, [2, 3]);
  const p = ck.param as TorchTensorLeaf;
  assertTensor(p, exp.param, "param");
  assert.ok(p.isParameter && p.requiresGrad);
  assert.deepEqual(vals(p), [1.5, -1.5]);

  const paths = [...tensorsIn(ck)].map(([path]) => path);
  assert.ok(paths.includes("state_dict.fc.weight"));
  assert.ok(paths.includes("optimizer.state.0.momentum_buffer"));
  assert.ok(paths.includes("param"));
});

Deno.test("torch: unknown globals become inert placeholders without breaking the rest", async () => {
  const obj = await loadTorchFile(new URL("unknown_global.pt", FIX)) as Record<string, unknown>;
  const custom = obj.custom as PyObject;
  assert.ok(custom instanceof PyObject);
  assert.equal(custom.__global__, "__main__.Custom");
  const state = custom.state as Record<string, unknown>;
  assert.equal(state.a, 1);
  assert.deepEqual(state.b, [1, 2]);
  assert.deepEqual(vals(state.t as TorchTensorLeaf), [0, 1, 2]);
  assert.ok(obj.fn instanceof PyGlobal);
  assert.deepEqual(vals(obj.weight as TorchTensorLeaf), [1, 1, 1, 1]);
  assert.deepEqual(obj.after, [1, 2, 3]);
});

Deno.test("torch: a malicious checkpoint (os.system via REDUCE) does not execute", async () => {
  try {
    Deno.removeSync(MARKER);
  } catch { /* absent */ }
  const obj = await loadTorchFile(new URL("malicious.pt", FIX)) as Record<string, unknown>;
  const evil = obj.evil as PyObject;
  assert.ok(evil instanceof PyObject);
  assert.match(evil.__global__, /^(posix|os|nt)\.system$/);
  assert.deepEqual(evil.args, [`touch ${MARKER}`]);
  assert.deepEqual(vals(obj.w as TorchTensorLeaf), [1, 2]);
  assert.ok(!exists(MARKER), "payload must not execute");
});

Deno.test("torch: legacy and non-torch files give clear errors", async () => {
  await assert.rejects(
    loadTorchFile(new URL("legacy.pt", FIX)),
    /legacy format not supported, re-save with torch>=1.6/,
  );
  assert.throws(() => readTorchFileSync(new TextEncoder().encode("hello")), /not a torch.save zip/);
  const noPkl = writeZip([{ name: "a/other", data: new Uint8Array(1) }]);
  assert.throws(() => readTorchFileSync(noPkl), /no <archive>\/data.pkl/);
});

Deno.test("torch: inconsistent storages are reported", () => {
  const t: RawTensor = { dtype: "float32", shape: [4], data: new Uint8Array(16) };
  const pkl = pickle({ t }, { tensorStorageKey: () => "0" });
  const version = { name: "a/version", data: new TextEncoder().encode("3\n") };
  const short = writeZip([
    { name: "a/data.pkl", data: pkl },
    { name: "a/data/0", data: new Uint8Array(4) },
    version,
  ]);
  assert.throws(() => readTorchFileSync(short), (e: unknown) => {
    assert.ok(e instanceof SerializationError);
    assert.match(e.message, /storage '0' has 4 bytes, but the pickle declares 4 elements/);
    return true;
  });
  const missing = writeZip([{ name: "a/data.pkl", data: pkl }, version]);
  assert.throws(() => readTorchFileSync(missing), /storage record 'a\/data\/0' is missing/);
});

Deno.test("torch: files saved without CRC-32s (crc fields 0) are accepted", () => {
  const bytes = Deno.readFileSync(new URL("nocrc.pt", FIX));
  assert.ok(new ZipReader(bytes).entries.every((e) => e.crc32 === 0));
  const o = readTorchFileSync(bytes) as Record<string, TorchTensorLeaf>;
  assert.deepEqual(vals(o.w), [3, 4]);
});

Deno.test("torch: big-endian archives are byte-swapped on load", () => {
  const le = new Float32Array([1.5, -2, 1e10]);
  const t: RawTensor = { dtype: "float32", shape: [3], data: new Uint8Array(le.buffer) };
  const pkl = pickle({ t, s: { dtype: "int16", shape: [], data: new Uint8Array([1, 2]) } }, {
    tensorStorageKey: (x) => (x.dtype === "float32" ? "0" : "1"),
  });
  const swap = (b: Uint8Array, n: number) => b.map((_, i) => b[i - (i % n) + (n - 1 - (i % n))]);
  const enc = new TextEncoder();
  const zip = writeZip([
    { name: "be/data.pkl", data: pkl },
    { name: "be/byteorder", data: enc.encode("big") },
    { name: "be/data/0", data: swap(t.data, 4) },
    { name: "be/data/1", data: new Uint8Array([2, 1]) },
    { name: "be/version", data: enc.encode("3\n") },
  ]);
  const o = readTorchFileSync(zip) as Record<string, TorchTensorLeaf>;
  assert.deepEqual(vals(o.t), [1.5, -2, 1e10]);
  assert.deepEqual(o.s.data, new Uint8Array([1, 2]));
});

Deno.test("torch: writer round trip and atomic save", async () => {
  const t = new TorchTensorLeaf("float32", [2], new Uint8Array([0, 0, 128, 63, 0, 0, 0, 64]));
  const sd = new OrderedDict<string, unknown>([["w", t], ["wT", t]]);
  const bytes = writeTorchFile({ sd, n: 1 });
  const r = new ZipReader(bytes);
  assert.deepEqual(r.entries.map((e) => e.name), [
    "archive/data.pkl",
    "archive/.format_version",
    "archive/.storage_alignment",
    "archive/byteorder",
    "archive/data/0",
    "archive/version",
    "archive/.data/serialization_id",
  ]);
  assert.match(new TextDecoder().decode(r.readSync("archive/.data/serialization_id")), /^\d{40}$/);
  const back = readTorchFileSync(bytes) as { sd: OrderedDict<string, TorchTensorLeaf>; n: number };
  assert.equal(back.n, 1);
  assert.equal(back.sd.get("w"), back.sd.get("wT"));
  assert.deepEqual(vals(back.sd.get("w")!), [1, 2]);

  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/model.pt`;
    await saveTorchFile(path, { sd });
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["model.pt"]);
    const saved = Deno.readFileSync(path);
    assert.equal(new ZipReader(saved).entries[0].name, "model/data.pkl");
    const loaded = await loadTorchFile(path) as { sd: OrderedDict<string, TorchTensorLeaf> };
    assert.deepEqual(vals(loaded.sd.get("w")!), [1, 2]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
