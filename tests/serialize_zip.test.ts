import assert from "node:assert/strict";
import {
  crc32,
  SerializationError,
  writeZip,
  ZIP_DEFLATE,
  ZipReader,
} from "../lib/serialize/mod.ts";

const FIX = new URL("./fixtures/serialize/", import.meta.url);
const enc = new TextEncoder();

Deno.test("zip: crc32 matches known values", () => {
  assert.equal(crc32(new Uint8Array(0)), 0);
  assert.equal(crc32(enc.encode("123456789")), 0xcbf43926);
  assert.equal(crc32(enc.encode("The quick brown fox jumps over the lazy dog")), 0x414fa339);
  // running checksum over chunks equals the one-shot value
  const all = enc.encode("hello, incremental world!");
  assert.equal(crc32(all.subarray(7), crc32(all.subarray(0, 7))), crc32(all));
});

Deno.test("zip: writer output is aligned, readable, and zero-copy on read", () => {
  const files = [
    { name: "a/data.pkl", data: enc.encode("pickle bytes") },
    { name: "a/data/0", data: new Uint8Array(100).map((_, i) => i) },
    { name: "a/empty", data: new Uint8Array(0) },
    { name: "a/ünï", data: enc.encode("utf-8 name") },
  ];
  const zip = writeZip(files);
  const r = new ZipReader(zip);
  assert.deepEqual(r.entries.map((e) => e.name), files.map((f) => f.name));
  for (const f of files) {
    const e = r.get(f.name)!;
    assert.equal(e.dataOffset % 64, 0, `${f.name} aligned`);
    const got = r.readSync(e);
    assert.deepEqual(got, f.data);
    assert.equal(got.buffer, zip.buffer);
  }
  // no padding when asked
  const plain = new ZipReader(writeZip(files, { align: 0 }));
  assert.deepEqual(plain.readSync("a/data/0"), files[1].data);
  assert.throws(() => writeZip([files[0], files[0]]), /duplicate entry name/);
  assert.throws(() => r.readSync("nope"), /no entry named 'nope'/);
});

Deno.test("zip: corrupted data is caught by the CRC check", () => {
  const zip = writeZip([{ name: "x", data: enc.encode("some data") }]);
  const off = new ZipReader(zip).get("x")!.dataOffset;
  zip[off] ^= 1;
  assert.throws(() => new ZipReader(zip).readSync("x"), /CRC-32 mismatch/);
  assert.equal(new ZipReader(zip).readSync("x", { verifyCrc: false }).byteLength, 9);
});

Deno.test("zip: reads DEFLATE entries written by Python's zipfile", async () => {
  const r = new ZipReader(Deno.readFileSync(new URL("deflate.zip", FIX)));
  const a = r.get("a.txt")!;
  assert.equal(a.method, ZIP_DEFLATE);
  assert.equal(new TextDecoder().decode(await r.read(a)), "hello hello hello hello\n".repeat(20));
  assert.deepEqual(await r.read("dir/b.bin"), new Uint8Array(256).map((_, i) => i));
  assert.equal((await r.read("empty")).byteLength, 0);
  assert.throws(() => r.readSync(a), /only STORED entries can be read synchronously/);
});

Deno.test("zip: reads ZIP64 end records and ZIP64 extra fields", () => {
  const r = new ZipReader(Deno.readFileSync(new URL("zip64.zip", FIX)));
  assert.deepEqual(r.entries.map((e) => e.name), ["x/one", "x/two"]);
  assert.equal(new TextDecoder().decode(r.readSync("x/one")), "first record");
  assert.deepEqual(r.readSync("x/two"), new Uint8Array(100).map((_, i) => i));
  assert.equal(r.get("x/two")!.uncompressedSize, 100);
});

Deno.test("zip: torch.save archives (always ZIP64 end records) are readable", () => {
  const r = new ZipReader(Deno.readFileSync(new URL("state_dict.pt", FIX)));
  assert.ok(r.has("state_dict/data.pkl"));
  for (const e of r.entries) {
    assert.equal(e.dataOffset % 64, 0, e.name);
    r.readSync(e); // CRC verified
  }
});

Deno.test("zip: malformed archives raise SerializationError", () => {
  assert.throws(() => new ZipReader(new Uint8Array(10)), SerializationError);
  assert.throws(() => new ZipReader(enc.encode("x".repeat(100))), /end of central directory/);
  const zip = writeZip([{ name: "x", data: enc.encode("abc") }]);
  const broken = zip.slice();
  // point the central directory past the end of the file
  new DataView(broken.buffer).setUint32(broken.byteLength - 6, 100000, true);
  assert.throws(() => new ZipReader(broken), /central directory .* runs past end of file/);
});
