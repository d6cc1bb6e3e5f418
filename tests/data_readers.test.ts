/** Dataset readers on tiny committed fixtures: IDX, CIFAR, STL-10, ImageFolder; bad input. */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as D from "../lib/data/mod.ts";
import { liveHandles, scope, type Tensor, tensor } from "../mod.ts";
import { numbers, readFixture } from "./_helpers.ts";

const FIX = fileURLToPath(new URL("./fixtures/data/", import.meta.url));
const meta = JSON.parse(Deno.readTextFileSync(`${FIX}meta.json`));

/** The values of `f(image)` for a dataset image, every intermediate tensor freed. */
function pixels(ds: D.Dataset, i: number, f: (t: Tensor) => Tensor): number[] {
  return scope(() => numbers(f(ds.image(i))));
}

Deno.test("IDX: gzipped and plain files, both splits, classes and labels", async () => {
  const before = liveHandles().handles;
  const train = await D.loadMnist(`${FIX}idx`, { split: "train" });
  const test = await D.loadMnist(`${FIX}idx`, { split: "test", variant: "mnist" });
  try {
    assert.equal(train.size, 4);
    assert.equal(test.size, 3);
    assert.equal(train.classes.length, 10);
    assert.equal(train.classes[9], "Ankle boot");
    assert.deepEqual([0, 1, 2, 3].map((i) => train.label(i)), [3, 0, 9, 5]);
    assert.deepEqual([0, 1, 2].map((i) => test.label(i)), [1, 2, 7]);
    assert.deepEqual(train.images.shape, [4, 1, 28, 28]);
    assert.deepEqual(
      pixels(train, 0, (t) => t.select(1, 0).narrow(1, 0, 8)),
      meta.train_first_pixels,
    );
    assert.deepEqual(
      pixels(test, 2, (t) => t.select(1, 27).narrow(1, 20, 8)),
      meta.test_last_pixels,
    );
    assert.equal(train.channels, 1);
    assert.equal(train.imageSize, 28);
  } finally {
    train.dispose();
    test.dispose();
  }
  assert.equal(liveHandles().handles, before);
});

Deno.test("IDX: a truncated file is an error naming the path and the expected size", async () => {
  await assert.rejects(
    D.loadMnist(`${FIX}idx_truncated`),
    (e: Error) =>
      e instanceof D.DataError &&
      /idx_truncated\/train-images-idx3-ubyte: truncated/.test(e.message) &&
      /4×28×28 = 3136 bytes/.test(e.message),
  );
  await assert.rejects(
    D.loadMnist(`${FIX}nope`),
    /nope: folder not found \(expected the fashion-mnist/,
  );
  await assert.rejects(
    D.loadMnist(`${FIX}cifar-10-batches-bin`),
    /train-images-idx3-ubyte: file not found \(expected train-images-idx3-ubyte or .*\.gz\)/,
  );
});

Deno.test("IDX: wrong format and corrupt gzip are named errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/train-images-idx3-ubyte`, new Uint8Array([1, 2, 3, 4, 5, 6]));
    await assert.rejects(D.readIdx(`${dir}/train-images-idx3-ubyte`), /not an IDX file/);
    await Deno.writeFile(`${dir}/x.gz`, new Uint8Array([0x1f, 0x8b, 8, 0, 1, 2, 3]));
    await assert.rejects(D.readIdx(`${dir}/x.gz`), /x\.gz: corrupt or truncated gzip data/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CIFAR-10 and CIFAR-100 binary: sizes, labels, classes, pixels", async () => {
  const c10 = await D.loadCifar10(FIX);
  const c10t = await D.loadCifar10(`${FIX}cifar-10-batches-bin`, { split: "test" });
  const c100 = await D.loadCifar100(FIX);
  try {
    assert.equal(c10.size, 10);
    assert.deepEqual(Array.from({ length: 10 }, (_, i) => c10.label(i)), [
      1,
      5,
      2,
      6,
      3,
      7,
      4,
      8,
      5,
      9,
    ]);
    assert.equal(c10.classes[1], "automobile");
    assert.deepEqual(c10.images.shape, [10, 3, 32, 32]);
    assert.deepEqual(pixels(c10, 2, (t) => t.select(0, 1).select(0, 5).select(0, 7)), [
      meta.cifar10_train_2_pixel,
    ]);
    assert.equal(c10t.size, 2);
    assert.deepEqual([c10t.label(0), c10t.label(1)], [0, 9]);
    assert.equal(c100.size, 3);
    assert.deepEqual([0, 1, 2].map((i) => c100.label(i)), [40, 99, 0]);
    assert.equal(c100.classes.length, 100);
    assert.equal(c100.classes[99], "worm");
    assert.deepEqual(pixels(c100, 0, (t) => t.select(0, 2).select(0, 31).select(0, 0)), [
      meta.cifar100_train_0_pixel,
    ]);
  } finally {
    for (const d of [c10, c10t, c100]) d.dispose();
  }
});

Deno.test("CIFAR: a truncated batch is an error naming the path and the record size", async () => {
  await assert.rejects(
    D.loadCifar10(`${FIX}cifar10_truncated`, { split: "test" }),
    /cifar10_truncated\/test_batch\.bin: 6046 bytes is not a whole number of 3073-byte records/,
  );
  await assert.rejects(
    D.loadCifar10(`${FIX}cifar10_truncated`),
    /data_batch_1\.bin: file not found/,
  );
});

Deno.test("STL-10 binary: column-major images, 1-based labels, unlabeled split", async () => {
  const train = await D.loadStl10(FIX);
  const both = await D.loadStl10(FIX, { split: "train+unlabeled" });
  try {
    assert.equal(train.size, 2);
    assert.deepEqual([train.label(0), train.label(1)], [0, 9]);
    assert.equal(train.classes[7], "monkey");
    assert.deepEqual(pixels(train, 1, (t) => t.select(0, 0).select(0, 3).select(0, 70)), [
      meta.stl_train_1_pixel_c0_y3_x70,
    ]);
    assert.equal(both.size, 3);
    assert.equal(both.label(2), -1);
    assert.deepEqual(pixels(both, 2, (t) => t.select(0, 2).select(0, 90).select(0, 1)), [
      meta.stl_unlabeled_pixel_c2_y90_x1,
    ]);
  } finally {
    train.dispose();
    both.dispose();
  }
  await assert.rejects(D.loadStl10(FIX, { split: "test" }), /test_X\.bin: file not found/);
});

interface Expected {
  [key: string]: { rgb: number[]; shape: number[] };
}

Deno.test("ImageFolder: classes, sorted files, JPEG and PNG decode equal to PIL's", () => {
  const ds = new D.ImageFolder(`${FIX}imagefolder`, { split: "train" });
  const expected = readFixture<Expected>(
    new URL("./fixtures/data/imagefolder_expected.json", import.meta.url),
  );
  try {
    assert.deepEqual(ds.classes, ["cat", "dog"]);
    assert.equal(ds.size, 8); // readme.txt is not an image
    assert.deepEqual(
      Array.from({ length: 8 }, (_, i) => `${ds.label(i)}:${ds.relativePath(i)}`),
      [
        "0:cat/a.JPEG",
        "0:cat/b.png",
        "0:cat/c_gray.png",
        "1:dog/d.jpg",
        "1:dog/e_rgba.png",
        "1:dog/f_gray.jpeg",
        "1:dog/g_truncated.jpg",
        "1:dog/h_not_an_image.png",
      ],
    );
    for (let i = 0; i < 6; i++) {
      const want = expected[ds.relativePath(i)];
      using img = ds.image(i);
      assert.deepEqual(img.shape, want.shape, ds.relativePath(i));
      const got = numbers(img);
      const diff = got.reduce((m, v, k) => Math.max(m, Math.abs(v - want.rgb[k])), 0);
      assert.equal(diff, 0, `${ds.relativePath(i)} differs from PIL by up to ${diff}`);
    }
  } finally {
    ds.dispose();
  }
});

Deno.test("ImageFolder: corrupt images are errors per image, not crashes", () => {
  const ds = new D.ImageFolder(`${FIX}imagefolder/train`, { channels: 1 });
  try {
    assert.throws(() => ds.image(6), /g_truncated\.jpg: corrupt JPEG: .*truncated/);
    assert.throws(() => ds.image(7), /h_not_an_image\.png: not a JPEG or PNG image/);
    using idx = tensor([0, 6, 1, 7, 2], [5], { dtype: "int64" });
    const { images, errors } = ds.source.decode(idx, 1);
    assert.deepEqual(images.map((t) => t === null), [false, true, false, true, false]);
    assert.deepEqual([...errors.keys()], [1, 3]);
    assert.deepEqual(images[0]!.shape, [1, 30, 40]);
    for (const t of images) t?.dispose();
  } finally {
    ds.dispose();
  }
});

Deno.test("ImageFolder: a missing or empty folder is an error naming it", () => {
  assert.throws(() => new D.ImageFolder(`${FIX}missing`), /missing: folder not found/);
  assert.throws(
    () => new D.ImageFolder(`${FIX}idx`),
    /idx: no class folders \(expected <class>\/\*\.JPEG/,
  );
  assert.throws(
    () => new D.ImageFolder(`${FIX}imagefolder`, { split: "val" }),
    /imagefolder\/val: folder not found/,
  );
});

Deno.test("subsets: seeded, by fraction or count, sorted, labels follow", async () => {
  const ds = await D.loadCifar10(FIX);
  try {
    const a = ds.subset({ count: 4, seed: 7 });
    const b = ds.subset({ count: 4, seed: 7 });
    const c = ds.subset({ fraction: 0.5, seed: 8 });
    const idx = (s: D.Dataset) => Array.from({ length: s.size }, (_, i) => s.sourceIndex(i));
    assert.deepEqual(idx(a), idx(b));
    assert.equal(c.size, 5);
    assert.notDeepEqual(idx(a), idx(ds.subset({ count: 4, seed: 9 })));
    assert.deepEqual(idx(a), [...idx(a)].sort((x, y) => x - y));
    assert.equal(new Set(idx(c)).size, 5);
    assert.equal(a.label(0), ds.label(a.sourceIndex(0)));
    assert.equal(a.classes, ds.classes);
    assert.throws(() => ds.subset({ count: 11 }), /cannot take 11 of 10/);
    assert.throws(() => ds.subset({}), /exactly one of fraction or count/);
  } finally {
    ds.dispose();
  }
});
