import assert from "node:assert/strict";
import {
  isPyTuple,
  OrderedDict,
  pickle,
  PyComplex,
  PyFloat,
  PyGlobal,
  PyObject,
  pyTuple,
  SerializationError,
  TorchDType,
  unpickle,
} from "../lib/serialize/mod.ts";

const FIX = new URL("./fixtures/serialize/", import.meta.url);
const MARKER = "/tmp/slimclr_serialize_pwned_marker";

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

for (const proto of [0, 2, 4, 5]) {
  Deno.test(`pickle: reads a protocol ${proto} pickle written by Python`, () => {
    const obj = unpickle(Deno.readFileSync(new URL(`plain_p${proto}.pkl`, FIX))) as Record<
      string,
      unknown
    >;
    const self = obj.self_list as unknown[];
    assert.equal(self[0], 0);
    assert.equal(self[1], self, "memo keeps the list's identity (cycle)");
    delete obj.self_list;
    assert.ok(isPyTuple(obj.tuple));
    assert.ok(!isPyTuple(obj.list));
    assert.ok(isPyTuple((obj.list as unknown[])[2]));
    assert.deepEqual(obj, {
      int: 7,
      neg: -300,
      i32: 2 ** 31 - 1,
      big: -(2n ** 100n),
      float: 1.5,
      inf: Infinity,
      str: "héllo ✓",
      bytes: new Uint8Array([1, 2]),
      none: null,
      t: true,
      f: false,
      list: [1, [2, 3], []],
      tuple: [1, 2, 3, 4],
      set: new Set([5]),
      frozen: new Set([6]),
      bytearray: new Uint8Array([0x78, 0x79]),
      od: new OrderedDict([["b", 1], ["a", 2]]),
      cplx: new PyComplex(1, -2),
    });
    assert.ok(obj.od instanceof OrderedDict);
  });
}

Deno.test("pickle: os.system via REDUCE becomes an inert placeholder and never runs", () => {
  try {
    Deno.removeSync(MARKER);
  } catch { /* absent */ }
  const obj = unpickle(Deno.readFileSync(new URL("malicious.pkl", FIX))) as Record<
    string,
    unknown
  >;
  const evil = obj.evil as PyObject;
  assert.ok(evil instanceof PyObject);
  assert.equal(evil.__global__, "os.system");
  assert.deepEqual(evil.args, [`touch ${MARKER}`]);
  assert.equal(obj.ok, 1);
  assert.ok(!exists(MARKER), "payload must not execute");
});

Deno.test("pickle: unknown globals are inert, including as bare references", () => {
  // cbuiltins\neval\n(Vprint(1)\ntR.  — eval must not be called
  const p = new TextEncoder().encode("cbuiltins\neval\n(Vprint(1)\ntR.");
  const o = unpickle(p) as PyObject;
  assert.ok(o instanceof PyObject);
  assert.equal(o.__global__, "builtins.eval");
  assert.deepEqual(o.args, ["print(1)"]);
  const g = unpickle(new TextEncoder().encode("csubprocess\nPopen\n."));
  assert.deepEqual(g, new PyGlobal("subprocess.Popen"));
});

Deno.test("pickle: writer round trip through the reader", () => {
  const od = new OrderedDict<string, unknown>([["z", 1], ["a", [1, 2]]]);
  od.state = { _metadata: new OrderedDict([["", { version: 1 }]]) };
  const shared = { s: "shared" };
  const cyc: unknown[] = [1];
  cyc.push(cyc);
  const long = Array.from({ length: 2500 }, (_, i) => i * 3 - 1000);
  const value = {
    ints: [0, 255, 256, 65535, 65536, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, -(2 ** 31) - 1],
    safeMax: Number.MAX_SAFE_INTEGER,
    bigs: [2n ** 64n, -(2n ** 64n), 2n ** 63n - 1n, -(2n ** 63n), 127n, 128n, -128n, -129n],
    floats: [0.1, -2.5, 1e300, Infinity, -Infinity, -0],
    forced: new PyFloat(3),
    str: "ünï ✓ \n 𝄞",
    empty: "",
    none: null,
    undef: undefined,
    bools: [true, false],
    tuple: pyTuple(1, pyTuple(), pyTuple("a", "b", "c", "d")),
    map: new Map<unknown, unknown>([[1, "one"], ["k", 2], [pyTuple(1, 2), null]]),
    od,
    set: new Set([1, "x"]),
    bytes: new Uint8Array([0, 127, 128, 255]),
    complex: new PyComplex(0.5, -1),
    dtype: new TorchDType("bfloat16"),
    a: shared,
    b: shared,
    cyc,
    long,
  };
  const b = unpickle(pickle(value)) as Record<string, unknown>;
  assert.deepEqual(b.ints, value.ints);
  assert.equal(b.safeMax, Number.MAX_SAFE_INTEGER);
  assert.deepEqual(b.bigs, [
    2n ** 64n,
    -(2n ** 64n),
    2n ** 63n - 1n,
    -(2n ** 63n),
    127,
    128,
    -128,
    -129,
  ]);
  assert.deepEqual(b.floats, value.floats);
  assert.ok(Object.is((b.floats as number[])[5], -0));
  assert.equal(b.forced, 3);
  assert.equal(b.str, value.str);
  assert.equal(b.empty, "");
  assert.equal(b.none, null);
  assert.equal(b.undef, null);
  assert.deepEqual(b.bools, [true, false]);
  assert.ok(isPyTuple(b.tuple) && isPyTuple((b.tuple as unknown[])[1]));
  assert.deepEqual(b.tuple, [1, [], ["a", "b", "c", "d"]]);
  const m = b.map as Map<unknown, unknown>;
  assert.ok(m instanceof Map && !(m instanceof OrderedDict));
  assert.deepEqual([...m.keys()].slice(0, 2), [1, "k"]);
  assert.deepEqual([...m.keys()][2], [1, 2]);
  const bod = b.od as OrderedDict;
  assert.ok(bod instanceof OrderedDict);
  assert.deepEqual([...bod], [["z", 1], ["a", [1, 2]]]);
  assert.deepEqual(bod.state, od.state);
  assert.deepEqual(b.set, value.set);
  assert.deepEqual(b.bytes, value.bytes);
  assert.deepEqual(b.complex, value.complex);
  assert.deepEqual(b.dtype, new TorchDType("bfloat16"));
  assert.equal((b.dtype as TorchDType).dtype, "bfloat16");
  assert.equal(b.a, b.b, "shared references stay shared");
  assert.equal((b.cyc as unknown[])[1], b.cyc);
  assert.deepEqual(b.long, long);
});

Deno.test("pickle: writer rejects what it cannot represent, naming the path", () => {
  assert.throws(() => pickle({ a: [1, () => 1] }), /cannot pickle a function at \["a"\]\[1\]/);
  assert.throws(() => pickle({ d: new Date(0) }), /cannot pickle Date at \["d"\]/);
  assert.throws(
    () => pickle({ t: { dtype: "float32", shape: [1], data: new Uint8Array(4) } }),
    /tensors need a storage sink/,
  );
  assert.throws(() => pickle(new PyObject("x.Y", [])), /inert placeholder for x.Y/);
  const t: unknown[] = [];
  const tup = pyTuple(t);
  t.push(tup);
  assert.throws(() => pickle(tup), /cyclic tuple/);
});

Deno.test("pickle: malformed input raises SerializationError with the offset", () => {
  const cases: [number[], RegExp][] = [
    [[0x80, 0x02], /pickle ended without STOP/],
    [[0x80, 0x02, 0x4a, 0x01], /truncated pickle/],
    [[0x80, 0x02, 0xff], /unknown opcode 0xff/],
    [[0x80, 0x02, 0x2e], /stack underflow/],
    [[0x80, 0x02, 0x68, 0x05, 0x2e], /memo key 5 not found/],
    [[0x80, 0x02, 0x4e, 0x74, 0x2e], /MARK expected/],
    [[0x80, 0x09], /unsupported pickle protocol 9/],
    [[0x80, 0x02, 0x4b, 0x01, 0x4e, 0x73, 0x2e], /stack underflow|not a dict/],
    [[0x80, 0x02, 0x29, 0x4b, 0x01, 0x61, 0x2e], /APPEND\(S\) target is not a list/],
    [[0x80, 0x05, 0x97, 0x2e], /out-of-band buffers/],
    [[0x80, 0x02, 0x58, 0x02, 0, 0, 0, 0xc3, 0x28, 0x2e], /invalid UTF-8/],
  ];
  for (const [bytes, re] of cases) {
    assert.throws(() => unpickle(new Uint8Array(bytes)), (e: unknown) => {
      assert.ok(e instanceof SerializationError, String(e));
      assert.match(e.message, re);
      assert.match(e.message, /at offset \d+/);
      return true;
    });
  }
});

Deno.test("pickle: plainDicts=false keeps every dict as a Map", () => {
  const bytes = pickle({ a: { b: 1 } });
  const m = unpickle(bytes, { plainDicts: false }) as Map<string, unknown>;
  assert.ok(m instanceof Map);
  assert.deepEqual(m.get("a"), new Map([["b", 1]]));
  assert.deepEqual(unpickle(bytes), { a: { b: 1 } });
});
