import assert from "node:assert/strict";
import { join } from "node:path";
import { manualSeed, models, noGrad, randn, scope, serialize } from "../mod.ts";

const {
  SlimmableResNet,
  officialPart,
  loadOfficialCheckpoint,
  oursToOfficialKey,
  officialKeyToOurs,
} = models;

type Layout = Record<string, Record<string, [number[], string]>>;
const layouts: Layout = JSON.parse(
  await Deno.readTextFile(
    new URL("../../shared/reference/official_checkpoint_layouts.json", import.meta.url),
  ).catch(() =>
    Deno.readTextFile(new URL("./fixtures/official_layout_keys.json", import.meta.url))
  ),
);

/** Fake raw tensors with the layout's shapes (no data: only names and shapes are compared). */
function layoutAsRaw(layout: Record<string, [number[], string]>): Map<string, serialize.RawTensor> {
  return new Map(
    Object.entries(layout).map(([k, [shape, dtype]]) => [
      k,
      { shape, dtype: dtype as serialize.DTypeName, data: new Uint8Array(0) },
    ]),
  );
}

function assertSameLayout(
  ours: Map<string, { shape: number[] }>,
  theirs: Map<string, serialize.RawTensor>,
) {
  const missing = [...ours.keys()].filter((k) => !theirs.has(k));
  const extra = [...theirs.keys()].filter((k) => !ours.has(k));
  assert.deepEqual(missing, [], "our keys absent from the official layout");
  assert.deepEqual(extra, [], "official keys without a place in our model");
  for (const [k, t] of ours) assert.deepEqual(t.shape, theirs.get(k)!.shape, k);
}

Deno.test("official SlimCLR-MoCo v2 encoder_q maps key by key onto S-ResNet-50 + mocov2 head", () => {
  const net = new SlimmableResNet({ arch: "resnet50", head: "mocov2_slim", numClasses: 128 });
  const raw = layoutAsRaw(layouts.slimclr_mocov2_r50);
  assertSameLayout(net.stateDict(), officialPart(raw, "encoder_q"));
  assertSameLayout(net.stateDict(), officialPart(raw, "encoder_k"));
  net.dispose();
});

Deno.test("official SlimCLR-MoCo v3 base encoder maps onto S-ResNet-50 + mocov3 projector", () => {
  const net = new SlimmableResNet({
    arch: "resnet50",
    head: "mocov3_slim",
    numClasses: 256,
    mlpDim: 4096,
  });
  const raw = layoutAsRaw(layouts.slimclr_mocov3_r50);
  assertSameLayout(net.stateDict(), officialPart(raw, "base_encoder"));
  assertSameLayout(net.stateDict(), officialPart(raw, "momentum_encoder"));
  net.dispose();
});

Deno.test("official switchable linear-probe checkpoint maps onto supervised_switch", () => {
  const net = new SlimmableResNet({
    arch: "resnet50",
    head: "supervised_switch",
    numClasses: 1000,
  });
  assertSameLayout(
    net.stateDict(),
    officialPart(layoutAsRaw(layouts.slimclr_linear_switch_r50), "network"),
  );
  net.dispose();
});

Deno.test("key mapping is invertible and a foreign key is an error naming it", () => {
  assert.equal(
    officialKeyToOurs("features.7.shortcut.1.bn.2.weight"),
    "layer3.0.downsample.1.bn.2.weight",
  );
  assert.equal(oursToOfficialKey("layer4.2.bn3.bn.0.bias"), "features.15.bn3.bn.0.bias");
  assert.throws(() => officialKeyToOurs("features.16.conv1.weight"), /features\.16\.conv1\.weight/);
});

Deno.test("a synthetic official checkpoint loads and reproduces the source network", async () => {
  manualSeed(3);
  const opts = { arch: "resnet50", baseWidth: 8, head: "mocov2_slim", numClasses: 16 } as const;
  const src = new SlimmableResNet(opts);
  const dir = await Deno.makeTempDir();
  try {
    // Lay the source out exactly as the reference saves a MoCo v2 checkpoint.
    const sd = new serialize.OrderedDict<string, serialize.RawTensor>();
    sd.set("module.queue_ptr", serialize.toRaw(scope(() => randn([1]).to("int64"))));
    for (const prefix of ["module.encoder_q.", "module.encoder_k."]) {
      for (const [k, t] of src.stateDict()) {
        sd.set(prefix + oursToOfficialKey(k), serialize.toRaw(t));
      }
    }
    const path = join(dir, "checkpoint_0199.pth.tar");
    await serialize.saveTorchFile(path, { epoch: 200, arch: "resnet50", state_dict: sd });
    const dst = new SlimmableResNet(opts);
    await loadOfficialCheckpoint(path, dst, "encoder_q");
    src.eval();
    dst.eval();
    scope(() => {
      const x = randn([2, 3, 32, 32]);
      for (const w of src.widths) {
        const [a, b] = noGrad(() => [
          src.withWidth(w, () => src.forward(x)),
          dst.withWidth(w, () => dst.forward(x)),
        ]);
        assert.ok(a.equal(b), `width ${w}`);
      }
    });
    // A network of another shape is refused with the offending keys named.
    const wrong = new SlimmableResNet({ ...opts, numClasses: 32 });
    await assert.rejects(
      () => loadOfficialCheckpoint(path, wrong, "encoder_q"),
      /fc\.2\.weight: checkpoint \[16,/,
    );
    wrong.dispose();
    dst.dispose();
  } finally {
    src.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
