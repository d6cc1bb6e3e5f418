import assert from "node:assert/strict";
import { join } from "node:path";
import { loadModel, modelRecord, saveModel } from "../lib/models/model_file.ts";
import { modelHome, resolveModelPath } from "../lib/models/model_source.ts";
import { oursToOfficialKey } from "../lib/models/official.ts";
import { SlimmableResNet } from "../lib/models/slimmable_resnet.ts";
import type { RawTensor } from "../lib/serialize/raw.ts";
import { OrderedDict } from "../lib/serialize/pytypes.ts";
import { toRaw } from "../lib/serialize/tensors.ts";
import { saveTorchFile } from "../lib/serialize/torch_file.ts";
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION } from "../lib/train/checkpoint.ts";
import { type Tensor, zeros } from "../lib/tensor.ts";
import { assertTensorEqual } from "./_helpers.ts";
import { tinyRun } from "./fixtures/tiny_run.ts";

/** Asserts that `net`'s state dict is exactly `state`'s entries under `prefix`, prefix dropped. */
function assertEncoderState(
  net: SlimmableResNet,
  state: Map<string, Tensor>,
  prefix: string,
) {
  const mine = net.stateDict();
  const theirs = [...state].filter(([k]) => k.startsWith(prefix));
  assert.ok(theirs.length > 20, `few '${prefix}' keys: ${theirs.length}`);
  assert.deepEqual([...mine.keys()].sort(), theirs.map(([k]) => k.slice(prefix.length)).sort());
  for (const [k, t] of theirs) assertTensorEqual(mine.get(k.slice(prefix.length))!, t, k);
}

for (const [method, prefix] of [["mocov2", "encoder_q."], ["mocov3", "base_encoder."]]) {
  Deno.test(`a ${method} pretraining checkpoint loads as its ${prefix}* encoder, as model.pt does`, async () => {
    const dir = await Deno.makeTempDir();
    const run = await tinyRun(dir, [`--method=${method}`, "--run.max_steps=3"]);
    const fromCkpt = await loadModel(run.checkpoint);
    const fromModel = await loadModel(run.model);
    try {
      assertEncoderState(fromCkpt, run.state, prefix);
      assertEncoderState(fromModel, run.state, prefix);
      for (
        const key of ["arch", "stem", "inChannels", "baseWidth", "head", "numClasses"] as const
      ) {
        assert.equal(fromCkpt.slimOptions[key], fromModel.slimOptions[key], key);
      }
      assert.deepEqual(fromCkpt.widths, [1, 0.5]);
    } finally {
      fromCkpt.dispose();
      fromModel.dispose();
      for (const t of run.state.values()) t.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("a run folder means its model.pt, else its newest checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  const run = await tinyRun(dir, [
    "--run.max_steps=2",
    "--run.keep_last=3",
    "--run.ckpt_every=0.125",
  ]);
  for (const t of run.state.values()) t.dispose();
  try {
    assert.equal(resolveModelPath(dir), run.model);
    assert.equal(resolveModelPath(dir, ["probe_model.pt"]), run.checkpoint);
    assert.match(run.checkpoint, /ckpt_e0000_s2\.pt$/); // the newest of s1 and s2
    await Deno.remove(run.model);
    assert.equal(resolveModelPath(dir), run.checkpoint);
    assert.equal(resolveModelPath(run.checkpoint), run.checkpoint);
    assert.equal(modelHome(dir), dir);
    assert.equal(modelHome(run.model), dir);
    const net = await loadModel(dir);
    net.dispose();
    const empty = join(dir, "empty");
    await Deno.mkdir(empty);
    await assert.rejects(
      () => loadModel(empty),
      new RegExp(`${empty} is a folder without model\\.pt or a checkpoints/ckpt_\\*\\.pt file`),
    );
    await assert.rejects(
      () => loadModel(join(dir, "missing.pt")),
      /missing\.pt: no such file or folder/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("files loadModel cannot read are errors naming the file and what is wrong", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const text = join(dir, "notes.txt");
    await Deno.writeTextFile(text, "not a model\n");
    await assert.rejects(
      () => loadModel(text),
      new RegExp(`${text} is not a slimclr model, checkpoint or official SlimCLR checkpoint`),
    );
    const dict = join(dir, "dict.pt");
    await saveTorchFile(dict, { weights: 1 });
    await assert.rejects(
      () => loadModel(dict),
      new RegExp(
        `${dict} is not a slimclr model, checkpoint or official SlimCLR checkpoint: it has no ` +
          `'slimclr-model' record, no 'slimclr-checkpoint' marker`,
      ),
    );
    const record = (rest: Record<string, unknown>) => ({
      format: CHECKPOINT_FORMAT,
      version: CHECKPOINT_VERSION,
      epoch: 1,
      step: 8,
      ...rest,
    });
    const config = {
      method: "mocov2",
      model: { arch: "resnet18", stem: "small", in_channels: 1, base_width: 4, widths: [1, 0.5] },
    };
    const noEncoder = join(dir, "no_encoder.pt");
    const queue = zeros([4, 8]);
    await saveTorchFile(
      noEncoder,
      record({ config, model: new OrderedDict([["queue", toRaw(queue)]]) }),
    );
    queue.dispose();
    await assert.rejects(
      () => loadModel(noEncoder),
      new RegExp(
        `${noEncoder} has no encoder weights: a mocov2 checkpoint keeps them as 'encoder_q\\.\\*', ` +
          `this one has 'queue'`,
      ),
    );
    const noConfig = join(dir, "no_config.pt");
    await saveTorchFile(noConfig, record({ model: new OrderedDict() }));
    await assert.rejects(
      () => loadModel(noConfig),
      new RegExp(
        `${noConfig} is a slimclr training checkpoint without a model record or a pretraining config`,
      ),
    );
    // A supervised checkpoint keeps a model record: it loads.
    const net = new SlimmableResNet({
      arch: "resnet18",
      stem: "small",
      inChannels: 1,
      baseWidth: 4,
      widths: [1],
      numClasses: 3,
    });
    const model = join(dir, "model.pt");
    await saveModel(model, net);
    net.dispose();
    const again = await loadModel(model);
    const supervised = join(dir, "supervised.pt");
    await saveTorchFile(supervised, record({ model: modelRecord(again) }));
    again.dispose();
    const back = await loadModel(supervised);
    assert.equal(back.slimOptions.numClasses, 3);
    back.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an official checkpoint still loads through loadModel (query encoder by default)", async () => {
  const dir = await Deno.makeTempDir();
  const src = new SlimmableResNet({
    arch: "resnet18",
    stem: "small",
    baseWidth: 8,
    head: "mocov2_slim",
    numClasses: 16,
  });
  try {
    const sd = new OrderedDict<string, RawTensor>();
    for (const prefix of ["module.encoder_q.", "module.encoder_k."]) {
      for (const [k, t] of src.stateDict()) {
        sd.set(prefix + oursToOfficialKey(k, "resnet18"), toRaw(t));
      }
    }
    const path = join(dir, "checkpoint_0199.pth.tar");
    await saveTorchFile(path, { epoch: 200, arch: "resnet18", state_dict: sd });
    const net = await loadModel(path, { arch: "resnet18" });
    try {
      assert.deepEqual(net.widths, [1, 0.75, 0.5, 0.25]);
      assert.equal(net.slimOptions.head, "mocov2_slim");
      for (const [k, t] of src.stateDict()) assertTensorEqual(net.stateDict().get(k)!, t, k);
    } finally {
      net.dispose();
    }
    await assert.rejects(
      () => loadModel(path, { arch: "resnet18", widths: [1, 0.5] }),
      /has 4 widths per batch norm, --widths gives 2/,
    );
  } finally {
    src.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
