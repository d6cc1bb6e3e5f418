/**
 * Batched augmentation: exact agreement with torchvision on fixed parameters, parameter
 * statistics of the recipes, and exact reproducibility for a fixed seed.
 */
import assert from "node:assert/strict";
import * as D from "../lib/data/mod.ts";
import { getNumThreads, scope, setNumThreads, type Tensor, tensor } from "../mod.ts";
import { assertClose, leakFree, numbers, readFixture } from "./_helpers.ts";

interface Golden {
  image: number[];
  shape: number[];
  crops: { box: number[]; size: number; flip: number; out: number[] }[];
  eval_resize16_crop12: number[];
  ops: Record<string, number[]>;
  "sequence_h-0.1_b0.8_s1.5_c1.2": number[];
}
const G = readFixture<Golden>(new URL("./fixtures/data/augment_golden.json", import.meta.url));
const F = D.PARAM_FIELDS;

/** A parameter row: identity geometry on an h×w box, everything else off unless given. */
function row(o: Partial<Record<(typeof F)[number], number>>, h: number, w: number, S: number) {
  const base: Record<string, number> = {
    y0: 0,
    x0: 0,
    h,
    w,
    vh: S,
    vw: S,
    oy: 0,
    ox: 0,
    flip: 0,
    jitter: 0,
    brightness: 1,
    contrast: 1,
    saturation: 1,
    hue: 0,
    order: 27,
    gray: 0,
    sigma: 0,
    solarize: 0,
  };
  return F.map((f) => o[f] ?? base[f]);
}

function apply(images: Tensor, rows: number[][], cfg: D.AugmentConfig): Tensor {
  const p = tensor(rows.flat(), [rows.length, F.length], { dtype: "float64" });
  return D.applyParams(images, p, cfg);
}

const image = () => tensor(G.image, [1, ...G.shape], { dtype: "uint8" });
const crop12 = () => image().narrow(2, 0, 12).narrow(3, 0, 12).to("float32").div(255).contiguous();

Deno.test("crop + resize + flip equal torchvision's resized_crop (antialiased bilinear)", () => {
  leakFree(() => {
    for (const c of G.crops) {
      const [y0, x0, h, w] = c.box;
      const cfg = { ...D.baseConfig(c.size), mode: "rrc" as const };
      const out = apply(image(), [row({ y0, x0, h, w, flip: c.flip }, h, w, c.size)], cfg);
      assertClose(out, { shape: [1, 3, c.size, c.size], data: c.out }, 1e-5, 2e-6, `crop ${c.box}`);
    }
  });
});

Deno.test("eval geometry equals Resize(16) + CenterCrop(12)", () => {
  leakFree(() => {
    const cfg: D.AugmentConfig = { ...D.baseConfig(12), mode: "resize_crop", resize: 16 };
    const p = D.sampleParams([[20, 24]], cfg, { seed: 0 });
    assert.deepEqual(numbers(p).slice(0, 8), [0, 0, 20, 24, 16, 19, 2, 4]);
    assertClose(
      D.applyParams(image(), p, cfg),
      { shape: [1, 3, 12, 12], data: G.eval_resize16_crop12 },
      1e-5,
      2e-6,
    );
  });
});

Deno.test("colour ops equal torchvision's functional ops on tensors", () => {
  leakFree(() => {
    const id = (o: Parameters<typeof row>[0]) => row(o, 12, 12, 12);
    const cfg = D.baseConfig(12);
    const cases: [string, number[], D.AugmentConfig][] = [
      ["brightness_1.3", id({ jitter: 1, brightness: 1.3 }), cfg],
      ["contrast_0.6", id({ jitter: 1, contrast: 0.6 }), cfg],
      ["saturation_1.4", id({ jitter: 1, saturation: 1.4 }), cfg],
      ["hue_0.2", id({ jitter: 1, hue: 0.2 }), cfg],
      ["hue_-0.35", id({ jitter: 1, hue: -0.35 }), cfg],
      ["gray", id({ gray: 1 }), cfg],
      ["blur_5_0.8", id({ sigma: 0.8 }), { ...cfg, blur: { p: 1, sigma: [0.8, 0.8], kernel: 5 } }],
      ["solarize", id({ solarize: 1 }), cfg],
      ["normalize", id({}), { ...cfg, normalize: D.IMAGENET_STATS }],
    ];
    for (const [name, r, c] of cases) {
      assertClose(
        apply(crop12(), [r], c),
        { shape: [1, 3, 12, 12], data: G.ops[name] },
        1e-5,
        1e-5,
        name,
      );
    }
    // Random order: hue, brightness, saturation, contrast (order code 3·64 + 0·16 + 2·4 + 1).
    const seq = id({
      jitter: 1,
      order: 201,
      brightness: 0.8,
      contrast: 1.2,
      saturation: 1.5,
      hue: -0.1,
    });
    assertClose(
      apply(crop12(), [seq], cfg),
      {
        shape: [1, 3, 12, 12],
        data: G["sequence_h-0.1_b0.8_s1.5_c1.2"],
      },
      1e-5,
      1e-5,
      "jitter sequence",
    );
  });
});

/** Parameter rows as column arrays. */
function columns(p: Tensor): Record<string, number[]> {
  const flat = numbers(p);
  const out: Record<string, number[]> = {};
  F.forEach((f, j) => (out[f] = flat.filter((_, i) => i % F.length === j)));
  return out;
}

const rate = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

Deno.test("RandomResizedCrop: area and aspect ratio within bounds, centre-crop fallback", () => {
  leakFree(() => {
    const cfg = D.recipe("mocov2").views[0];
    const n = 4000;
    const c = columns(
      D.sampleParams(Array.from({ length: n }, () => [375, 500] as const), cfg, { seed: 3 }),
    );
    for (let i = 0; i < n; i++) {
      const area = (c.h[i] * c.w[i]) / (375 * 500);
      const ratio = c.w[i] / c.h[i];
      assert.ok(area >= 0.2 - 0.01 && area <= 1.0, `area ${area}`);
      assert.ok(ratio >= 0.75 * 0.98 && ratio <= (4 / 3) * 1.02, `ratio ${ratio}`);
      assert.ok(c.y0[i] >= 0 && c.y0[i] + c.h[i] <= 375 && c.x0[i] >= 0 && c.x0[i] + c.w[i] <= 500);
      assert.equal(c.vh[i], 224);
    }
    const areas = c.h.map((h, i) => (h * c.w[i]) / (375 * 500));
    assert.ok(Math.min(...areas) < 0.21 && Math.max(...areas) > 0.95, "areas span [0.2, 1]");
    // A 10×1000 strip never fits the ratio range: torchvision's fallback crops the centre.
    const f = columns(D.sampleParams([[10, 1000]], cfg, { seed: 1 }));
    assert.deepEqual([f.y0[0], f.x0[0], f.h[0], f.w[0]], [0, 493, 10, 13]);
  });
});

Deno.test("recipe statistics: flip, jitter, grayscale, blur, solarize rates and ranges", () => {
  leakFree(() => {
    const n = 6000;
    const sizes = Array.from({ length: n }, () => [64, 64] as const);
    const [v1, v2] = D.recipe("mocov3").views;
    const a = columns(D.sampleParams(sizes, v1, { seed: 11, view: 0 }));
    const b = columns(D.sampleParams(sizes, v2, { seed: 11, view: 1 }));
    const near = (x: number, want: number, tol: number, what: string) =>
      assert.ok(Math.abs(x - want) < tol, `${what}: ${x}, expected about ${want}`);
    near(rate(a.flip), 0.5, 0.03, "flip rate");
    near(rate(a.jitter), 0.8, 0.02, "jitter rate");
    near(rate(a.gray), 0.2, 0.02, "grayscale rate");
    near(rate(a.sigma.map((s) => (s > 0 ? 1 : 0))), 1.0, 1e-9, "view-1 blur rate");
    near(rate(b.sigma.map((s) => (s > 0 ? 1 : 0))), 0.1, 0.015, "view-2 blur rate");
    near(rate(a.solarize), 0, 1e-9, "view-1 solarize rate");
    near(rate(b.solarize), 0.2, 0.02, "view-2 solarize rate (one coin per image)");
    const within = (xs: number[], lo: number, hi: number, what: string) => {
      assert.ok(xs.every((x) => x >= lo && x <= hi), `${what} outside [${lo}, ${hi}]`);
      assert.ok(
        Math.min(...xs) < lo + 0.05 * (hi - lo) && Math.max(...xs) > hi - 0.05 * (hi - lo),
        `${what} does not span its range`,
      );
    };
    within(a.brightness, 0.6, 1.4, "brightness");
    within(a.contrast, 0.6, 1.4, "contrast");
    within(a.saturation, 0.8, 1.2, "saturation");
    within(a.hue, -0.1, 0.1, "hue (fraction of the wheel)");
    within(a.sigma.filter((s) => s > 0), 0.1, 2, "blur sigma");
    const orders = new Set(a.order);
    assert.equal(orders.size, 24, "every order of the four jitter ops occurs");
    for (const o of orders) {
      assert.deepEqual([o >> 6, (o >> 4) & 3, (o >> 2) & 3, o & 3].sort(), [0, 1, 2, 3]);
    }
    // Within a batch, solarize flips a coin per image: neither all nor none.
    const batch = b.solarize.slice(0, 64);
    assert.ok(batch.includes(0) && batch.includes(1));
  });
});

Deno.test("fixed seed: exactly reproducible, independent of threads and batch composition", () => {
  leakFree(() => {
    const imgs = image().expand(8, 3, 20, 24).contiguous();
    const cfg = D.recipe("simclr_small", { size: 16 }).views[0];
    const keys = [10, 11, 12, 13, 14, 15, 16, 17];
    const a = D.augment(imgs, cfg, { seed: 42, keys });
    const b = D.augment(imgs, cfg, { seed: 42, keys });
    assert.ok(a.equal(b), "same seed, same output");
    assert.ok(!a.equal(D.augment(imgs, cfg, { seed: 43, keys })), "another seed differs");
    const threads = getNumThreads();
    setNumThreads(1);
    try {
      assert.ok(a.equal(D.augment(imgs, cfg, { seed: 42, keys })), "one thread gives the same");
    } finally {
      setNumThreads(threads);
    }
    const part = D.augment(imgs.narrow(0, 4, 4), cfg, { seed: 42, keys: keys.slice(4) });
    assert.ok(part.equal(a.narrow(0, 4, 4)), "a sample's augmentation depends on its key only");
    // The stream itself is pinned: a change of the sampler shows up here.
    const p = numbers(D.sampleParams([[20, 24]], cfg, { seed: 42, keys: [10] }));
    assert.deepEqual(p.slice(0, 4), SNAPSHOT.box);
    assert.deepEqual(p.slice(8, 10), SNAPSHOT.flipJitter);
  });
});

const SNAPSHOT = { box: [1, 4, 19, 19], flipJitter: [0, 0] };

Deno.test("uint8 and float inputs agree; 1 → 3 channel output replicates", () => {
  leakFree(() => {
    const cfg = D.recipe("mocov2_small", { size: 10 }).views[0];
    const u8 = image();
    const f32 = u8.to("float32").div(255);
    const want = D.augment(f32, cfg, { seed: 5 });
    assertClose(
      D.augment(u8, cfg, { seed: 5 }),
      { shape: want.shape, data: numbers(want) },
      1e-5,
      1e-5,
    );
    const gray = image().narrow(1, 0, 1).contiguous();
    const cfg3 = { ...D.baseConfig(10), channels: 3 as const };
    const out = D.augment(gray, cfg3, { seed: 1 });
    assert.deepEqual(out.shape, [1, 3, 10, 10]);
    assert.ok(out.select(1, 0).equal(out.select(1, 2)));
  });
});

Deno.test("bad configs and inputs are errors", () => {
  scope(() => {
    const cfg = D.baseConfig(8);
    assert.throws(() => D.augment(image().to("float64"), cfg, { seed: 0 }), /uint8 or float32/);
    assert.throws(
      () => D.augment(image(), { ...cfg, jitter: { ...cfg.jitter, hue: 0.7 } }, { seed: 0 }),
      /hue jitter must be in \[0, 0\.5\]/,
    );
    assert.throws(
      () => D.augment(image(), { ...cfg, blur: { ...cfg.blur, kernel: 4 } }, { seed: 0 }),
      /odd/,
    );
    const bad = tensor(row({ jitter: 1, order: 0 }, 20, 24, 8), [1, F.length], {
      dtype: "float64",
    });
    assert.throws(() => D.applyParams(image(), bad, cfg), /jitter order 0 is not a permutation/);
    assert.throws(
      () => D.recipe("mocov9"),
      /unknown recipe 'mocov9' \(expected one of mocov2, mocov3/,
    );
  });
});

Deno.test("a recipe's jitter strength scales every view's colour ranges; 0 turns jitter off", () => {
  const base = D.recipe("mocov3_small").views;
  const half = D.recipe("mocov3_small", { jitter: 0.5 }).views;
  const off = D.recipe("mocov3_small", { jitter: 0 }).views;
  for (let i = 0; i < base.length; i++) {
    const [b, h, o] = [base[i].jitter, half[i].jitter, off[i].jitter];
    assert.equal(h.p, b.p);
    assert.deepEqual(
      [h.brightness, h.contrast, h.saturation, h.hue],
      [b.brightness / 2, b.contrast / 2, b.saturation / 2, b.hue / 2],
    );
    assert.deepEqual([o.p, o.brightness, o.contrast, o.saturation, o.hue], [0, 0, 0, 0, 0]);
    assert.deepEqual({ ...h, ...b }, b); // nothing else changes
    assert.deepEqual(half[i].scale, base[i].scale);
  }
  assert.equal(D.recipe("simclr", { jitter: 4 }).views[0].jitter.hue, 0.5); // hue stays ≤ 0.5
  assert.throws(() => D.recipe("mocov2", { jitter: -1 }), /jitter strength must be ≥ 0/);
});
