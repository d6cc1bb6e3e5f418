import assert from "node:assert/strict";
import { manualSeed, models, nn } from "../mod.ts";

const std = (t: { std(): { item(): number; dispose(): void } }) => {
  const s = t.std();
  const v = s.item();
  s.dispose();
  return v;
};

Deno.test("PyTorch default init: conv and linear weights uniform in ±1/sqrt(fan_in)", () => {
  manualSeed(0);
  const conv = new nn.Conv2d(16, 64, 3);
  const fanIn = 16 * 9;
  const w = conv.weight.toFloat32Array();
  const bound = 1 / Math.sqrt(fanIn);
  assert.ok(w.every((x) => Math.abs(x) <= bound));
  // U(-b, b) has standard deviation b/sqrt(3).
  assert.ok(Math.abs(std(conv.weight) - bound / Math.sqrt(3)) < 0.05 * bound);
  const lin = new nn.Linear(256, 32);
  assert.ok(lin.bias!.toFloat32Array().every((x) => Math.abs(x) <= 1 / 16));
  conv.dispose();
  lin.dispose();
});

Deno.test("paper init: kaiming-normal fan_out convs, N(0, 0.01) linears, BN 1/0, zero-γ residuals", () => {
  manualSeed(0);
  const net = new models.SlimmableResNet({
    arch: "resnet50",
    baseWidth: 32,
    head: "mocov2_slim",
    numClasses: 128,
    zeroInitResidual: true,
  });
  const sd = net.stateDict();
  // layer3.0.conv2: 3×3 with 128 output channels at width 1 → std sqrt(2 / (128·9)).
  const conv = sd.get("layer3.0.conv2.weight")!;
  const expected = Math.sqrt(2 / (conv.shape[0] * 9));
  assert.ok(Math.abs(std(conv) / expected - 1) < 0.03, `conv std ${std(conv)} vs ${expected}`);
  const fc = sd.get("fc.0.weight")!;
  assert.ok(Math.abs(std(fc) / 0.01 - 1) < 0.03, `linear std ${std(fc)}`);
  assert.ok(sd.get("fc.0.bias")!.toFloat32Array().every((x) => x === 0));
  for (let i = 0; i < 4; i++) {
    assert.ok(sd.get(`layer1.0.bn1.bn.${i}.weight`)!.toFloat32Array().every((x) => x === 1));
    assert.ok(sd.get(`layer1.0.bn3.bn.${i}.weight`)!.toFloat32Array().every((x) => x === 0));
    assert.ok(sd.get(`layer1.0.bn3.bn.${i}.bias`)!.toFloat32Array().every((x) => x === 0));
  }
  net.dispose();
});

Deno.test("weight-decay groups exempt batch-norm parameters and biases, and skip frozen ones", () => {
  const net = new models.SlimmableResNet({
    arch: "resnet18",
    stem: "small",
    baseWidth: 4,
    numClasses: 3,
  });
  const names = nn.normAndBiasNames(net);
  assert.ok(names.has("bn1.bn.2.weight") && names.has("fc.bias") && !names.has("conv1.weight"));
  net.conv1.requiresGrad_(false);
  const [decay, exempt] = nn.weightDecayGroups(net, true);
  const total = net.parameters().length;
  assert.equal(decay.params.length + exempt.params.length, total - 1);
  assert.equal(exempt.options?.weight_decay, 0);
  assert.equal(nn.weightDecayGroups(net, false).length, 1);
  net.dispose();
});
