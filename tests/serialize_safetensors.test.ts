import assert from "node:assert/strict";
import {
  bytesOf,
  DTYPE_ITEMSIZE,
  DTYPE_NAMES,
  type DTypeName,
  loadSafetensors,
  type RawTensor,
  readSafetensors,
  saveSafetensors,
  SerializationError,
  typedArrayOf,
  writeSafetensors,
} from "../lib/serialize/mod.ts";

const FIX = new URL("./fixtures/serialize/", import.meta.url);
const expected = JSON.parse(await Deno.readTextFile(new URL("expected.json", FIX)));

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function vals(t: RawTensor): (number | bigint)[] {
  return [...(typedArrayOf(t) as Iterable<number | bigint>)];
}

function pattern(dtype: DTypeName, shape: number[], seed: number): RawTensor {
  const n = shape.reduce((a, b) => a * b, 1) * DTYPE_ITEMSIZE[dtype];
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i++) data[i] = (i * 31 + seed * 7) & 0xff;
  if (dtype === "bool") { for (let i = 0; i < n; i++) data[i] &= 1; }
  return { dtype, shape, data };
}

/** Builds a safetensors buffer from a raw header object (for malformed-input tests). */
function rawFile(header: unknown, dataLen: number, headerLen?: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + dataLen);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLen ?? json.byteLength), true);
  out.set(json, 8);
  return out;
}

Deno.test("safetensors: round trip of every dtype", () => {
  const tensors = new Map<string, RawTensor>();
  DTYPE_NAMES.forEach((d, i) => {
    tensors.set(`t_${d}`, pattern(d, [2, 3], i));
    tensors.set(`s_${d}`, pattern(d, [], i + 1));
    tensors.set(`e_${d}`, pattern(d, [0, 4], i));
  });
  const bytes = writeSafetensors(tensors, { a: "1", b: "two" });
  const { tensors: back, metadata } = readSafetensors(bytes);
  assert.deepEqual(metadata, { a: "1", b: "two" });
  assert.equal(back.size, tensors.size);
  for (const [name, t] of tensors) {
    const r = back.get(name)!;
    assert.equal(r.dtype, t.dtype, name);
    assert.deepEqual(r.shape, t.shape, name);
    assert.deepEqual(r.data, t.data, name);
    // zero copy: a view of the input buffer
    assert.equal(r.data.buffer, bytes.buffer, name);
  }
  // header padded to 8 bytes with spaces
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  assert.match(new TextDecoder().decode(bytes.subarray(8, 8 + n)), /^\{.*\} *$/);
});

Deno.test("safetensors: reads a file written by Python, values exact", () => {
  const bytes = Deno.readFileSync(new URL("py_all_dtypes.safetensors", FIX));
  const exp = expected["py_all_dtypes.safetensors"];
  const { tensors, metadata } = readSafetensors(bytes);
  assert.deepEqual(metadata, exp.metadata);
  assert.deepEqual(new Set(tensors.keys()), new Set(Object.keys(exp.tensors)));
  for (const [name, e] of Object.entries(exp.tensors) as [string, Record<string, unknown>][]) {
    const t = tensors.get(name)!;
    assert.equal(t.dtype, e.dtype, name);
    assert.deepEqual(t.shape, e.shape, name);
    assert.equal(hex(t.data), e.hex, name);
  }
  assert.deepEqual(
    vals(tensors.get("f32")!),
    [0.5, -1.25, 3, Math.fround(1e-3), -0, 65504],
  );
  assert.deepEqual(vals(tensors.get("i64")!), [
    -(2n ** 62n),
    2n ** 40n + 1n,
    -1n,
  ]);
  assert.deepEqual(vals(tensors.get("bool")!), [1, 0, 1]);
  // our writer reproduces the reference layout byte for byte
  assert.deepEqual(writeSafetensors(tensors, metadata), bytes);
});

Deno.test("safetensors: matches the reference implementation's own test vectors", () => {
  const data = bytesOf(new Float32Array([0, 1, 2, 3, 4, 5]));
  const out = writeSafetensors({ "attn.0": { dtype: "float32", shape: [1, 2, 3], data } });
  const hdr = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
  assert.equal(out[0], 64);
  assert.equal(new TextDecoder().decode(out.subarray(8, 72)), hdr);
  assert.deepEqual(out.subarray(72), data);
  assert.deepEqual(
    writeSafetensors({}),
    new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]),
  );
  const withMeta = writeSafetensors({}, { framework: "pt" });
  assert.equal(withMeta[0], 40);
  assert.equal(
    new TextDecoder().decode(withMeta.subarray(8)),
    '{"__metadata__":{"framework":"pt"}}     ',
  );
});

Deno.test("safetensors: validation errors name the tensor and field", () => {
  const ok = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array(4), /too short/],
    [rawFile({ a: ok }, 8, 1000), /header length 1000 runs past/],
    [rawFile({ a: ok }, 8, 200_000_000), /exceeds the limit/],
    [rawFile({ a: { ...ok, dtype: "X9" } }, 8), /tensor 'a': unknown dtype 'X9'/],
    [rawFile({ a: { ...ok, dtype: "U16", shape: [4] } }, 8), /tensor 'a': unsupported dtype/],
    [rawFile({ a: { ...ok, shape: [3] } }, 8), /tensor 'a': shape \[3\] of F32 needs 12 bytes/],
    [rawFile({ a: { ...ok, shape: [-1] } }, 8), /tensor 'a': field 'shape'/],
    [rawFile({ a: { ...ok, data_offsets: [0] } }, 8), /tensor 'a': field 'data_offsets'/],
    [rawFile({ a: { ...ok, data_offsets: [0, 16], shape: [4] } }, 8), /past the 8-byte data/],
    [rawFile({ a: ok, b: ok }, 8), /tensor '[ab]'.*overlap/],
    [rawFile({ a: { ...ok, data_offsets: [4, 12] } }, 12), /tensor 'a': gap/],
    [rawFile({ a: ok }, 12), /cover 8 bytes but the data section has 12/],
    [rawFile({ a: { dtype: "F32", shape: [2] } }, 8), /tensor 'a': field 'data_offsets'/],
    [rawFile({ __metadata__: { k: 1 } }, 0), /__metadata__\['k'\] is not a string/],
    [rawFile([1, 2], 0), /not a JSON object/],
  ];
  for (const [bytes, re] of cases) {
    assert.throws(() => readSafetensors(bytes), (e: unknown) => {
      assert.ok(e instanceof SerializationError, String(e));
      assert.match(e.message, re);
      return true;
    });
  }
  const bad = new Uint8Array(16);
  bad[0] = 8;
  bad.set([0xff, 0xfe], 8);
  assert.throws(() => readSafetensors(bad), /not valid UTF-8 JSON/);
  assert.throws(
    () => writeSafetensors({ x: { dtype: "float32", shape: [2], data: new Uint8Array(4) } }),
    /tensor 'x': data has 4 bytes but shape \[2\] of float32 needs 8/,
  );
  assert.throws(
    () => writeSafetensors({ __metadata__: pattern("uint8", [1], 0) }),
    /cannot be used as a tensor name/,
  );
});

Deno.test("safetensors: atomic save and load", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/m.safetensors`;
    const tensors = { w: pattern("float32", [3], 1), b: pattern("bfloat16", [2], 2) };
    await Deno.writeTextFile(path, "old contents");
    await saveSafetensors(path, tensors, { v: "1" });
    const { tensors: back, metadata } = await loadSafetensors(path);
    assert.deepEqual(metadata, { v: "1" });
    assert.deepEqual(back.get("w")!.data, tensors.w.data);
    assert.deepEqual(back.get("b")!.data, tensors.b.data);
    // no temporary files left behind
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.deepEqual(names, ["m.safetensors"]);
    // a failing write leaves the existing file untouched
    await assert.rejects(
      saveSafetensors(path, { x: { dtype: "int8", shape: [2], data: new Uint8Array(1) } }),
      SerializationError,
    );
    assert.deepEqual((await loadSafetensors(path)).metadata, { v: "1" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
