"""PyTorch reference for benches/ffi_bench.ts: the same ops and training step, same threads."""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def time_ms(fn, iters, warmup=None):
    warmup = warmup or max(1, iters // 10)
    for _ in range(warmup):
        fn()
    rounds = min(iters, 7)
    per = max(1, iters // rounds)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(per):
            fn()
        samples.append((time.perf_counter() - t0) * 1000 / per)
    samples.sort()
    return samples[len(samples) // 2]


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(h))
        return F.relu(y + (self.downsample(x) if self.downsample is not None else x), inplace=True)


class ResNet18Small(nn.Module):
    def __init__(self, in_ch=3, classes=10, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, c = [], width
        for i in range(4):
            w = width * 2**i
            layers.append(nn.Sequential(Block(c, w, 1 if i == 0 else 2), Block(w, w, 1)))
            c = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)), inplace=True)
        h = self.layers(h)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


def main():
    threads = int(sys.argv[1])
    op_iters = int(sys.argv[2])
    step_iters = int(sys.argv[3])
    batch = int(sys.argv[4])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    out = {}
    a, b = torch.randn(4), torch.randn(4)
    m = torch.randn(4, 4)
    out["op_add"] = time_ms(lambda: a.add(b), op_iters)
    out["op_matmul_4x4"] = time_ms(lambda: m.matmul(m), op_iters)

    def chain():
        c = a.add(b)
        d = c.mul(2)
        e = d.relu()
        return e.sum()

    out["op_chain4"] = time_ms(chain, op_iters) / 4
    out["op_chain4_scoped"] = out["op_chain4"]  # Python frees by reference counting either way
    if step_iters == 0:
        print(json.dumps(out))
        return
    net = ResNet18Small()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()

    out["resnet18_step"] = time_ms(step, step_iters, warmup=1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
