import assert from "node:assert/strict";
import { join } from "node:path";
import { manualSeed, models, noGrad, randn, scope, serialize, type Tensor } from "../mod.ts";
import { exportTask } from "../tasks/export.ts";
import { tinyRun } from "./fixtures/tiny_run.ts";

Deno.test("export writes a dense twin that reproduces its width, and never overwrites", async () => {
  manualSeed(5);
  const dir = await Deno.makeTempDir();
  const net = new models.SlimmableResNet({
    arch: "resnet18",
    stem: "small",
    inChannels: 1,
    baseWidth: 8,
    numClasses: 10,
  });
  try {
    scope(() => void noGrad(() => net.forwardWidths(randn([4, 1, 12, 12]))));
    net.eval();
    const ckpt = join(dir, "model.pt");
    await models.saveModel(ckpt, net);
    const prefix = join(dir, "w050");
    const written = await exportTask(["--checkpoint", ckpt, "--width", "0.5", "--out", prefix]);
    assert.deepEqual(written, [`${prefix}.safetensors`, `${prefix}.pt`, `${prefix}.json`]);
    const info = JSON.parse(await Deno.readTextFile(`${prefix}.json`));
    assert.equal(info.stem_channels, 4);
    assert.equal(info.width, 0.5);

    // The .pt holds torchvision names and loads strictly into a dense ResNet of that plan.
    const raw = await serialize.loadRawStateDict(`${prefix}.pt`);
    assert.ok(
      raw.has("layer2.0.downsample.0.weight") && raw.has("fc.weight") && raw.has("bn1.running_var"),
    );
    const plan = models.planAtWidth(net.plan, net.state.indexOf(0.5));
    const dense = new models.ResNet({
      arch: "resnet18",
      stem: "small",
      inChannels: 1,
      numClasses: 10,
      plan,
    });
    scope(() => {
      dense.loadStateDict(
        new Map<string, Tensor>([...raw].map(([k, r]) => [k, serialize.fromRaw(r)])),
      );
      dense.eval();
      const x = randn([2, 1, 12, 12]);
      const a = noGrad(() => net.withWidth(0.5, () => net.forward(x)));
      const b = noGrad(() => dense.forward(x));
      assert.ok(a.allclose(b, 1e-5, 1e-6));
    });
    dense.dispose();
    const st = await serialize.loadSafetensors(`${prefix}.safetensors`);
    assert.deepEqual([...st.tensors.keys()].sort(), [...raw.keys()].sort());

    await assert.rejects(
      () => exportTask(["--checkpoint", ckpt, "--width", "0.5", "--out", prefix]),
      /refusing to overwrite/,
    );
    await assert.rejects(
      () => exportTask(["--checkpoint", ckpt, "--width", "0.3", "--out", join(dir, "x")]),
      /--width: 0\.3 is not one of this network's widths \[1, 0\.75, 0\.5, 0\.25\]/,
    );
    await assert.rejects(
      () => exportTask(["--width", "0.5", "--out", "x"]),
      /--checkpoint is required/,
    );
  } finally {
    net.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("export of a pretraining checkpoint writes what export of its run's model.pt writes", async () => {
  const dir = await Deno.makeTempDir();
  const run = await tinyRun(dir, ["--run.max_steps=3"]);
  for (const t of run.state.values()) t.dispose();
  try {
    const [a, b] = [join(dir, "from_ckpt"), join(dir, "from_model")];
    await exportTask(["--checkpoint", run.checkpoint, "--width", "0.5", "--out", a]);
    await exportTask(["--checkpoint", run.model, "--width", "0.5", "--out", b]);
    const fromCkpt = await serialize.loadRawStateDict(`${a}.pt`);
    const fromModel = await serialize.loadRawStateDict(`${b}.pt`);
    assert.ok(fromCkpt.has("layer4.1.conv2.weight") && fromCkpt.has("bn1.running_var"));
    assert.deepEqual([...fromCkpt.keys()], [...fromModel.keys()]);
    for (const [k, r] of fromCkpt) {
      const m = fromModel.get(k)!;
      assert.deepEqual([r.dtype, r.shape], [m.dtype, m.shape], k);
      assert.deepEqual(new Uint8Array(r.data), new Uint8Array(m.data), k);
    }
    assert.deepEqual(
      JSON.parse(await Deno.readTextFile(`${a}.json`)),
      JSON.parse(await Deno.readTextFile(`${b}.json`)),
    );
    const text = join(dir, "notes.txt");
    await Deno.writeTextFile(text, "not a model\n");
    await assert.rejects(
      () => exportTask(["--checkpoint", text, "--width", "0.5", "--out", join(dir, "x")]),
      new RegExp(`${text} is not a slimclr model, checkpoint or official SlimCLR checkpoint`),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
