"""PyTorch reference for benches/slim_bench.ts: a slimmable ResNet-18 (small-image stem) run at
each width the way the reference's slimmable ops do it: the widest weights sliced w[:out, :in]
and a private BatchNorm per width. Eval-mode forward under no_grad, same threads and batch.

Usage: slim_bench.py THREADS BATCH ITERS ROUNDS WIDTHS(comma-separated, descending)
Prints one JSON object {"w1": [ms, ...], "w0.75": [...], ...}: ROUNDS samples per width, each the
mean of ITERS forwards.
"""
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class SConv(nn.Module):
    """Slimmable convolution: the widest weight, sliced to the active width."""

    def __init__(self, cin, cout, k, stride, padding):
        super().__init__()
        self.cin, self.cout, self.stride, self.padding = cin, cout, stride, padding
        self.weight = nn.Parameter(torch.empty(max(cout), max(cin), k, k))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x, i):
        w = self.weight[: self.cout[i], : self.cin[i]]
        return F.conv2d(x, w, None, self.stride, self.padding)


class SBN(nn.Module):
    """Switchable batch norm: one BatchNorm2d per width."""

    def __init__(self, cs):
        super().__init__()
        self.bn = nn.ModuleList(nn.BatchNorm2d(c) for c in cs)

    def forward(self, x, i):
        return self.bn[i](x)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = SConv(cin, cout, 3, stride, 1)
        self.bn1 = SBN(cout)
        self.conv2 = SConv(cout, cout, 3, 1, 1)
        self.bn2 = SBN(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = (SConv(cin, cout, 1, stride, 0), SBN(cout))
            self.down_conv, self.down_bn = self.down

    def forward(self, x, i):
        h = F.relu(self.bn1(self.conv1(x, i), i), inplace=True)
        h = self.bn2(self.conv2(h, i), i)
        s = self.down_bn(self.down_conv(x, i), i) if self.down else x
        return F.relu(h.add_(s), inplace=True)


class SlimResNet18Small(nn.Module):
    def __init__(self, widths, in_ch=1, base=16, classes=10):
        super().__init__()
        at = lambda c: [int(c * w) for w in widths]  # noqa: E731
        stem = at(base)
        self.conv1 = SConv([in_ch] * len(widths), stem, 3, 1, 1)
        self.bn1 = SBN(stem)
        blocks, c = [], stem
        for s in range(4):
            out = at(base * 2**s)
            for b in range(2):
                blocks.append(Block(c, out, 2 if b == 0 and s > 0 else 1))
                c = out
        self.blocks = nn.ModuleList(blocks)
        self.feat = c
        self.fc = nn.Linear(max(c), classes)

    def forward(self, x, i):
        h = F.relu(self.bn1(self.conv1(x, i), i), inplace=True)
        for b in self.blocks:
            h = b(h, i)
        h = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
        return F.linear(h, self.fc.weight[:, : self.feat[i]], self.fc.bias)


def main():
    threads, batch, iters, rounds = (int(a) for a in sys.argv[1:5])
    widths = [float(w) for w in sys.argv[5].split(",")]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = SlimResNet18Small(widths).eval()
    x = torch.randn(batch, 1, 28, 28)
    out = {}
    with torch.no_grad():
        for i, w in enumerate(widths):
            for _ in range(2):
                net(x, i)
            samples = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                for _ in range(iters):
                    net(x, i)
                samples.append((time.perf_counter() - t0) * 1000 / iters)
            out[f"w{w:g}"] = samples
    print(json.dumps(out))


if __name__ == "__main__":
    main()
