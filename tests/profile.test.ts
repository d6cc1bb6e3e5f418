import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { liveHandles, models, nn, randn, scope } from "../mod.ts";
import { profileWidths } from "../lib/models/profile.ts";
import { profile, UsageError } from "../tasks/profile.ts";

const { SlimmableResNet, ResNet, exportDense } = models;

/** Runs `fn` with console.log silenced; returns what it printed. */
function quiet<T>(fn: () => T): [T, string[]] {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => void lines.push(a.join(" "));
  try {
    return [fn(), lines.join("\n").split("\n")];
  } finally {
    console.log = log;
  }
}

Deno.test("S-ResNet-50 at 224 px matches the reference's params and MACs per width", () => {
  const net = new SlimmableResNet({ arch: "resnet50", numClasses: 1000, head: "supervised" });
  net.setWidth(0.5);
  const before = liveHandles().handles;
  const rows = profileWidths(net, 224);
  assert.equal(liveHandles().handles, before, "profiling allocated tensors");
  assert.equal(net.width, 0.5, "the active width changed");
  assert.deepEqual(rows.map((r) => r.width), [1, 0.75, 0.5, 0.25]);
  assert.deepEqual(rows.map((r) => r.params), [25_557_032, 14_771_992, 6_917_640, 1_993_976]);
  assert.deepEqual(rows.map((r) => (r.macs / 1e9).toPrecision(3)), [
    "4.09",
    "2.32",
    "1.05",
    "0.278",
  ]);
  assert.deepEqual(rows.map((r) => (r.macs / 1e9).toFixed(3)), [
    "4.089",
    "2.323",
    "1.052",
    "0.278",
  ]);
  // Exact counts, cross-checked with PyTorch forward hooks (conv + linear + average pool).
  assert.deepEqual(rows.map((r) => r.macs), [
    4_089_284_608,
    2_322_753_024,
    1_052_361_728,
    278_110_720,
  ]);
  // [h, w] form and a subset of widths.
  assert.deepEqual(profileWidths(net, [224, 224], { widths: [0.25] }), [rows[3]]);
  net.dispose();
});

Deno.test("params equal the exported dense twin's; MACs of a non-square input", () => {
  const net = new SlimmableResNet({
    arch: "resnet18",
    stem: "small",
    inChannels: 1,
    baseWidth: 16,
    numClasses: 10,
  });
  const rows = profileWidths(net, [28, 30]);
  for (const r of rows) {
    const dense = exportDense(net, r.width);
    assert.equal(r.params, dense.numParameters(), `width ${r.width}`);
    assert.deepEqual(profileWidths(dense, [28, 30]), [{ ...r, width: 1 }], `dense ${r.width}`);
    dense.dispose();
  }
  // Cross-checked with PyTorch forward hooks on the same architecture.
  assert.deepEqual(rows.map((r) => r.macs), [30_475_648, 17_165_856, 7_649_984, 1_928_032]);
  net.dispose();
});

Deno.test("projector heads: left out like exportDense, counted on request", () => {
  const net = new SlimmableResNet({
    arch: "resnet18",
    stem: "small",
    inChannels: 3,
    baseWidth: 8,
    numClasses: 16,
    head: "mocov2_slim",
  });
  const trunk = profileWidths(net, 32);
  const all = profileWidths(net, 32, { includeProjector: true });
  for (const [i, r] of trunk.entries()) {
    const dense = exportDense(net, r.width);
    assert.equal(r.params, dense.numParameters(), `width ${r.width}`);
    dense.dispose();
    const f = net.featureChannels[i];
    assert.equal(all[i].params - r.params, f * f + f + f * 16 + 16);
    assert.equal(all[i].macs - r.macs, f * f + f * 16);
  }
  net.dispose();
});

Deno.test("a dense ResNet profiles as width 1 with its own parameter count", () => {
  const net = new ResNet({ arch: "resnet34", numClasses: 100 });
  const [row] = profileWidths(net, 64);
  assert.equal(row.width, 1);
  assert.equal(row.params, net.numParameters());
  assert.throws(() => profileWidths(net, 64, { widths: [0.5] }), /only width 1/);
  net.dispose();
});

Deno.test("stems: small_s2 halves the stem's output side, quartering every stage's MACs", () => {
  const stride1 = new ResNet({
    arch: "resnet18",
    stem: "small",
    inChannels: 1,
    baseWidth: 8,
    numClasses: 0,
  });
  const stride2 = new ResNet({
    arch: "resnet18",
    stem: "small_s2",
    inChannels: 1,
    baseWidth: 8,
    numClasses: 0,
  });
  const [a] = profileWidths(stride1, 32);
  const [b] = profileWidths(stride2, 32);
  assert.equal(a.params, b.params);
  // Stem 32×32 → 16×16 and every later map halves per side too: exactly a quarter.
  assert.equal(b.macs * 4, a.macs);
  scope(() => assert.deepEqual(stride2.forward(randn([2, 1, 28, 28])).shape, [2, 64]));
  stride1.dispose();
  stride2.dispose();
});

Deno.test("MACs of single conv/linear networks, by hand", () => {
  const net = new nn.Sequential(
    new nn.Conv2d(3, 8, 3, { stride: 2, padding: 1 }),
    new nn.BatchNorm2d(8),
    new nn.ReLU(),
    new nn.AdaptiveAvgPool2d(1),
    new nn.Flatten(),
    new nn.Linear(8, 5),
  );
  // conv 32×32 → 16×16: 8·3·3·3·256 = 55,296; pool 8·16·16 = 2,048; linear 8·5 = 40.
  // params: 8·27 + 8 (conv) + 16 (BN γ, β) + 40 + 5 (linear) = 285.
  assert.deepEqual(profileWidths(net, 32), [{ width: 1, params: 285, macs: 57_384 }]);
  net.dispose();

  // grouped, dilated: 10×10 → 6×6, 8 outputs of 2 channels · 3·3 taps = 8·2·9·36 = 5,184.
  const grouped = new nn.Sequential(
    new nn.Conv2d(4, 8, 3, { groups: 2, dilation: 2, bias: false }),
  );
  assert.deepEqual(profileWidths(grouped, 10), [{ width: 1, params: 144, macs: 5_184 }]);
  assert.throws(() => profileWidths(grouped, [4, 10]), /input 4×10 is too small for 0/);
  grouped.dispose();

  const state = new nn.WidthState([1, 0.5]);
  const slim = new nn.Sequential(
    new nn.SlimmableConv2d(state, [3, 3], [8, 4], 3, { stride: 2, padding: 1 }),
    new nn.SwitchableBatchNorm2d(state, [8, 4]),
    new nn.ReLU(),
    new nn.AdaptiveAvgPool2d(1),
    new nn.Flatten(),
    new nn.SlimmableLinear(state, [8, 4], [5, 5]),
  );
  // width 0.5: conv 4·27·256 = 27,648; pool 4·256 = 1,024; linear 4·5 = 20.
  // params: 4·27 (no bias) + 8 (BN) + 20 + 5 = 141.
  assert.deepEqual(profileWidths(slim, [32, 32]), [
    { width: 1, params: 216 + 16 + 45, macs: 55_296 + 2_048 + 40 },
    { width: 0.5, params: 141, macs: 27_648 + 1_024 + 20 },
  ]);
  slim.dispose();
});

Deno.test("profile CLI: table and JSON, --json alone", () => {
  const flags = ["--arch", "resnet18", "--stem", "small", "--in-channels", "1", "--base-width"];
  const [report, lines] = quiet(() =>
    profile([...flags, "16", "--num-classes", "10", "--input-size", "28x30", "--widths", "0.5,1"])
  );
  assert.ok(report);
  assert.deepEqual(report.input_size, [28, 30]);
  assert.deepEqual(report.widths.map((r) => r.params), [701_178, 176_258]);
  assert.deepEqual(lines.slice(1, 4), [
    "width  params (M)  MACs (G)",
    "    1       0.701   0.03048",
    "  0.5       0.176   0.00765",
  ]);
  assert.deepEqual(JSON.parse(lines[lines.length - 1]), report);
  const [, only] = quiet(() => profile([...flags, "16", "--num-classes", "10", "--json"]));
  assert.equal(only.length, 1);
  assert.equal(JSON.parse(only[0]).widths.length, 4);
});

Deno.test("profile CLI: bad flags are usage errors naming the flag (exit code 2)", async () => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /--bogus: unknown flag/],
    [["--widths", "1,abc"], /--widths: expected comma-separated numbers in \(0, 1\]/],
    [["--arch", "resnet51"], /--arch: expected one of resnet18, .*got 'resnet51'/],
    [["--input-size", "0"], /--input-size: expected a positive integer N or HxW/],
    [["--num-classes"], /--num-classes: expected a value/],
    [["--json=yes"], /--json: takes no value/],
  ];
  for (const [args, msg] of cases) {
    assert.throws(() => quiet(() => profile(args)), (e: unknown) => {
      assert.ok(e instanceof UsageError, `${args}: ${e}`);
      assert.match(e.message, msg);
      return true;
    });
  }
  const script = fileURLToPath(new URL("../tasks/profile.ts", import.meta.url));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, "--widths", "2"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.match(new TextDecoder().decode(out.stderr), /profile: --widths: expected/);
  assert.equal(out.stdout.length, 0);
});
