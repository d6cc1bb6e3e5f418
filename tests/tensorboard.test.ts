import assert from "node:assert/strict";
import { crc32c, maskedCrc32c, TensorBoardWriter } from "../lib/log/tensorboard.ts";

Deno.test("CRC-32C matches the standard check value", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assert.equal(maskedCrc32c(new Uint8Array(0)), 0xa282ead8);
});

/** Reads TFRecord frames back, checking both CRCs. */
function readRecords(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = 0;
  while (off < bytes.length) {
    const len = Number(view.getBigUint64(off, true));
    assert.equal(view.getUint32(off + 8, true), maskedCrc32c(bytes.subarray(off, off + 8)));
    const data = bytes.subarray(off + 12, off + 12 + len);
    assert.equal(view.getUint32(off + 12 + len, true), maskedCrc32c(data));
    out.push(data);
    off += 16 + len;
  }
  return out;
}

Deno.test("event files hold a version record, then one record per scalar step", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const w = new TensorBoardWriter(dir);
    w.scalars(1, { "loss/w1.0": 2.5, "lr": 0.1 });
    w.scalars(2, { "loss/w1.0": 2.0, "skip": NaN });
    w.close();
    const records = readRecords(await Deno.readFile(w.path));
    assert.equal(records.length, 3);
    assert.ok(new TextDecoder().decode(records[0]).includes("brain.Event:2"));
    const text = new TextDecoder().decode(records[1]);
    assert.ok(text.includes("loss/w1.0") && text.includes("lr"));
    assert.ok(!new TextDecoder().decode(records[2]).includes("skip"));
    // The scalar float follows its tag (field 2, wire type 5 → 0x15).
    const i = records[1].indexOf(0x15);
    assert.equal(
      new DataView(records[1].buffer, records[1].byteOffset + i + 1, 4).getFloat32(0, true),
      2.5,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a resumed run's event file starts a session after its checkpoint's step, so TensorBoard purges what the killed run logged later", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const w = new TensorBoardWriter(dir, { resumeStep: 299 });
    w.scalars(300, { loss: 1 });
    w.close();
    const records = readRecords(await Deno.readFile(w.path));
    assert.equal(records.length, 3);
    const start = records[1];
    // wall_time (field 1, fixed64: 0x09 + 8 bytes), step 300 (field 2 varint: 0x10 0xac 0x02),
    // session_log (field 7, length-delimited: 0x3a) holding status START (field 1 = 1).
    assert.equal(start[0], 0x09);
    assert.deepEqual([...start.subarray(9)], [0x10, 0xac, 0x02, 0x3a, 0x02, 0x08, 0x01]);
    const fresh = new TensorBoardWriter(dir);
    fresh.close();
    assert.equal(readRecords(await Deno.readFile(fresh.path)).length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
