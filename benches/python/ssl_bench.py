"""PyTorch reference for benches/ssl_bench.ts: the same SlimCLR-MoCo v2 step, same threads.

Usage: ssl_bench.py THREADS ITERS BATCH BASE_WIDTH QUEUE [ARCH SIZE IN_CHANNELS DEVICE STEM_STRIDE AMP CUDNN_BENCHMARK].
ARCH is resnet18 (small 3×3 stem with stride STEM_STRIDE, default 1; 28 px, 1 channel by default)
or resnet50 (ImageNet stem). Prints one JSON line
{"full": ms, "slim": ms, "full_peak": bytes, "slim_peak": bytes}: the median time of one training step with the full width only and with
the four widths 1/0.75/0.5/0.25 (SEED KD at T=5, alpha 0.5, loss weights [2.5, 1, 1, 1]), and on
CUDA the peak allocated memory of one step of each (torch.cuda.max_memory_allocated after a
reset). AMP is none, bf16 (autocast) or fp16 (autocast and torch.amp.GradScaler). The
slimmable ResNet-18 and the loss math come from tests/fixtures/make_ssl_fixtures.py; the
slimmable ResNet-50 below reuses its sliced layers.
"""

import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures"))
import make_ssl_fixtures as R  # noqa: E402

WIDTHS = [1.0, 0.75, 0.5, 0.25]
DIM, TAU, M = 128, 0.2, 0.999
KD = dict(kind="seed", alpha=0.5, Ts=5.0, Tt=5.0)


class Bottleneck(torch.nn.Module):
    """torchvision's v1.5 bottleneck (stride on the 3×3) with sliced convolutions."""

    def __init__(self, inc, mid, out, stride):
        super().__init__()
        self.conv1, self.bn1 = R.SConv(inc, mid, 1, 1, 0), R.SBN(mid)
        self.conv2, self.bn2 = R.SConv(mid, mid, 3, stride, 1), R.SBN(mid)
        self.conv3, self.bn3 = R.SConv(mid, out, 1, 1, 0), R.SBN(out)
        self.downsample = None
        if stride != 1 or inc != out:
            self.downsample = R.Seq([R.SConv(inc, out, 1, stride, 0), R.SBN(out)])

    def forward(self, x, i):
        h = F.relu(self.bn1(self.conv1(x, i), i))
        h = F.relu(self.bn2(self.conv2(h, i), i))
        h = self.bn3(self.conv3(h, i), i)
        return F.relu(h + (self.downsample(x, i) if self.downsample is not None else x))


class SlimResNet50(torch.nn.Module):
    """Slimmable ResNet-50, ImageNet stem, MoCo v2 slimmable head (slimclr's channel plan)."""

    def __init__(self, widths, base, in_ch, dim):
        super().__init__()
        at = lambda c: [int(c * w) for w in widths]  # noqa: E731
        c = at(base)
        self.conv1, self.bn1 = R.SConv([in_ch] * len(widths), c, 7, 2, 3), R.SBN(c)
        self.stages = torch.nn.ModuleList()
        for s, n in enumerate([3, 4, 6, 3]):
            out = at(base * 2**s * 4)
            mid = [o // 4 for o in out]
            blocks = [Bottleneck(c if j == 0 else out, mid, out, 2 if s > 0 and j == 0 else 1) for j in range(n)]
            self.stages.append(torch.nn.ModuleList(blocks))
            c = out
        self.fc = R.head("mocov2_slim", widths, c, dim, 0)

    def forward(self, x, i):
        h = F.max_pool2d(F.relu(self.bn1(self.conv1(x, i), i)), 3, 2, 1)
        for stage in self.stages:
            for b in stage:
                h = b(h, i)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1), i)


def interleaved(fns, iters, warmup):
    """Median ms of each function, timed alternately (load drifts hit all of them)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples = [[] for _ in fns]
    for _ in range(iters):
        for s, fn in zip(samples, fns):
            t0 = time.perf_counter()
            fn()
            s.append((time.perf_counter() - t0) * 1000)
    return [sorted(s)[len(s) // 2] for s in samples]


def main():
    threads, iters, batch, base, queue_size = (int(a) for a in sys.argv[1:6])
    arch = sys.argv[6] if len(sys.argv) > 6 else "resnet18"
    size = int(sys.argv[7]) if len(sys.argv) > 7 else 28
    in_ch = int(sys.argv[8]) if len(sys.argv) > 8 else 1
    device = torch.device(sys.argv[9] if len(sys.argv) > 9 else "cpu")
    stem_stride = int(sys.argv[10]) if len(sys.argv) > 10 else 1
    amp = sys.argv[11] if len(sys.argv) > 11 else "none"
    torch.backends.cudnn.benchmark = len(sys.argv) > 12 and sys.argv[12] == "1"
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
    torch.set_num_threads(threads)
    torch.manual_seed(0)

    def build():
        if arch == "resnet50":
            return SlimResNet50(WIDTHS, base, in_ch, DIM)
        return R.SlimResNet18(WIDTHS, base, in_ch, "mocov2_slim", DIM, stem_stride=stem_stride)

    enc_q = build()
    R.randomize(enc_q, torch.Generator().manual_seed(0))
    enc_k = build()
    enc_k.load_state_dict(enc_q.state_dict())
    enc_q.to(device)
    enc_k.to(device)
    for p in enc_k.parameters():
        p.requires_grad_(False)
    queue = F.normalize(torch.randn(DIM, queue_size, device=device), dim=0)
    ptr = [0]
    opt = torch.optim.SGD(enc_q.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    a = torch.randn(batch, in_ch, size, size, device=device)
    b = torch.randn(batch, in_ch, size, size, device=device)
    weights = R.loss_weights(WIDTHS, 5)

    def step(n):
        R.ema(enc_k, enc_q, M)
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            perm = torch.randperm(batch, device=device)  # shuffle-BN in one process
            k = F.normalize(enc_k(b[perm], 0), dim=1)[perm.argsort()]
        snapshot = queue.clone()
        labels = torch.zeros(batch, dtype=torch.long, device=device)
        outs = []
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            for i in range(n):
                q = F.normalize(enc_q(a, i), dim=1)
                lg = R.moco_v2_logits(q, k, snapshot)
                outs.append({"emb": q, "logits": lg, "loss": F.cross_entropy(lg / TAU, labels)})
            total, _, _ = R.compose(outs, weights, KD["kind"], KD["alpha"], KD["Ts"], KD["Tt"], False, n > 1)
        opt.zero_grad()
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.step(opt)
            scaler.update()
        else:
            total.backward()
            opt.step()
        queue[:, ptr[0] : ptr[0] + batch] = k.t().to(queue.dtype)
        ptr[0] = (ptr[0] + batch) % queue_size

    def timed(n):
        step(n)
        if device.type == "cuda":
            torch.cuda.synchronize()

    full, slim = interleaved([lambda: timed(1), lambda: timed(len(WIDTHS))], iters, 2)
    result = {"full": full, "slim": slim}
    if device.type == "cuda":
        for key, n in (("full_peak", 1), ("slim_peak", len(WIDTHS))):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            timed(n)
            result[key] = torch.cuda.max_memory_allocated()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
