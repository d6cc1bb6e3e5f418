/**
 * Converters and their readers, built in a temp dir by our writers: folder2lmdb + LMDB reader,
 * im2rec + RecordIO reader; refusal to overwrite; bad input named.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import * as D from "../lib/data/mod.ts";
import { liveHandles, scope } from "../mod.ts";
import { numbers } from "./_helpers.ts";

const FOLDER = fileURLToPath(new URL("./fixtures/data/imagefolder/", import.meta.url));

async function tempCopy(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "slimclr-data-" });
  const copy = async (from: string, to: string) => {
    await Deno.mkdir(to, { recursive: true });
    for await (const e of Deno.readDir(from)) {
      if (e.isDirectory) await copy(join(from, e.name), join(to, e.name));
      else await Deno.copyFile(join(from, e.name), join(to, e.name));
    }
  };
  await copy(FOLDER, dir);
  return dir;
}

Deno.test("folder2lmdb: the reference layout, raw bytes, sorted label list; LMDB reader", async () => {
  const dir = await tempCopy();
  const before = liveHandles().handles;
  try {
    const n = D.folderToLmdb(dir, "train", { commitEvery: 3 });
    assert.equal(n, 8);
    assert.ok(Deno.statSync(join(dir, "train_lmdb", "train.lmdb")).isFile, "single-file LMDB");
    const list = Deno.readTextFileSync(join(dir, "train_list.json"));
    assert.ok(list.startsWith('{\n    "cat/a.JPEG": 0,\n    "cat/b.png": 0,'), list.slice(0, 60));
    assert.ok(list.endsWith('    "dog/h_not_an_image.png": 1\n}'));
    const folder = new D.ImageFolder(join(dir, "train"));
    const db = new D.LmdbImageFolder(dir, { split: "train" });
    try {
      assert.equal(db.size, 8);
      assert.deepEqual(db.classes, ["cat", "dog"]);
      for (let i = 0; i < db.size; i++) {
        assert.equal(db.keys[i], folder.relativePath(i));
        assert.equal(db.label(i), folder.label(i));
        const same = scope(() => {
          const a = numbers(db.bytes(i));
          const want = Deno.readFileSync(folder.paths[i]);
          return a.length === want.length && a.every((v, k) => v === want[k]);
        });
        assert.ok(same, `${db.keys[i]}: stored bytes differ from the file`);
      }
      scope(() => assert.ok(db.image(3).equal(folder.image(3)), "decoded images agree"));
      assert.throws(() => db.image(6), /train\.lmdb:dog\/g_truncated\.jpg: corrupt JPEG/);
    } finally {
      db.dispose();
      folder.dispose();
    }
    assert.throws(
      () => D.folderToLmdb(dir, "train"),
      /train\.lmdb: exists already; conversion tasks never overwrite/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.equal(liveHandles().handles, before);
});

Deno.test("LMDB: missing files and bad label lists are named errors", async () => {
  const dir = await tempCopy();
  try {
    assert.throws(
      () => new D.LmdbImageFolder(dir),
      /train_list\.json: file not found \(expected the label list/,
    );
    Deno.writeTextFileSync(join(dir, "train_list.json"), "{}");
    assert.throws(() => new D.LmdbImageFolder(dir), /train_lmdb\/train\.lmdb: file not found/);
    Deno.mkdirSync(join(dir, "train_lmdb"));
    Deno.writeTextFileSync(join(dir, "train_lmdb", "train.lmdb"), "not an lmdb");
    assert.throws(() => new D.LmdbImageFolder(dir), /cannot open LMDB .*train\.lmdb/);
    Deno.writeTextFileSync(join(dir, "train_list.json"), "[1, 2]");
    assert.throws(() => new D.LmdbImageFolder(dir), /train_list\.json: expected a JSON object/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("im2rec: .lst/.rec/.idx in MXNet's format; RecordIO reader round trip", async () => {
  const dir = await tempCopy();
  const prefix = join(dir, "train");
  try {
    const n = await D.im2rec(prefix, join(dir, "train"), { seed: 100 });
    assert.equal(n, 8);
    const lst = Deno.readTextFileSync(`${prefix}.lst`).trim().split("\n");
    assert.equal(lst.length, 8);
    assert.match(lst[0], /^\d+\t[01]\.000000\t(cat|dog)\/\S+$/);
    const rec = Deno.readFileSync(`${prefix}.rec`);
    const v = new DataView(rec.buffer);
    assert.equal(v.getUint32(0, true), D.RECORD_MAGIC);
    assert.equal(rec.length % 4, 0);
    const folder = new D.ImageFolder(join(dir, "train"));
    const ds = new D.RecordIODataset(`${prefix}.rec`);
    try {
      assert.equal(ds.size, 8);
      assert.deepEqual(ds.classes, ["cat", "dog"]);
      const order = lst.map((l) => Number(l.split("\t")[0]));
      assert.deepEqual(ds.keys, order, "records follow the (shuffled) list");
      assert.notDeepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7]);
      for (let i = 0; i < ds.size; i++) {
        const k: number = ds.keys[i];
        assert.equal(ds.label(i), folder.label(k));
        const same = scope(() => {
          const want = Deno.readFileSync(folder.paths[k]);
          const got = numbers(ds.bytes(i));
          return got.length === want.length && got.every((b, j) => b === want[j]);
        });
        assert.ok(same, `record ${i} holds ${folder.relativePath(k)}`);
      }
      const j = ds.keys.indexOf(0);
      scope(() => assert.ok(ds.image(j).equal(folder.image(0))));
    } finally {
      ds.dispose();
      folder.dispose();
    }
    await assert.rejects(D.im2rec(prefix, join(dir, "train")), /train\.lst: exists already/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RecordIO: a wrong or missing index is a named error", async () => {
  const dir = await tempCopy();
  try {
    const prefix = join(dir, "x");
    await D.im2rec(prefix, join(dir, "train"), { shuffle: false });
    Deno.writeTextFileSync(`${prefix}.idx`, "0\t0\n1\t5\n");
    assert.throws(
      () => new D.RecordIODataset(`${prefix}.rec`),
      /x\.rec: no RecordIO record at offset 5 \(bad magic\)/,
    );
    Deno.writeTextFileSync(`${prefix}.idx`, "zero\t0\n");
    assert.throws(
      () => new D.RecordIODataset(`${prefix}.rec`),
      /x\.idx: line 1 is 'zero\t0', expected 'key<TAB>offset'/,
    );
    assert.throws(
      () => new D.RecordIODataset(join(dir, "none.rec")),
      /none\.rec: file not found \(expected an MXNet RecordIO/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
