"""PyTorch reference for benches/ssl_bench.ts: the same SlimCLR-MoCo v2 step, same threads.

Usage: ssl_bench.py THREADS ITERS BATCH BASE_WIDTH QUEUE. Prints one JSON line
{"full": ms, "slim": ms}: the median time of one training step with the full width only and with
the four widths 1/0.75/0.5/0.25 (SEED KD at T=5, alpha 0.5, loss weights [2.5, 1, 1, 1]). The
slimmable ResNet-18 and the loss math come from tests/fixtures/make_ssl_fixtures.py.
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
SIZE, DIM, TAU, M = 28, 128, 0.2, 0.999
KD = dict(kind="seed", alpha=0.5, Ts=5.0, Tt=5.0)


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
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    enc_q = R.SlimResNet18(WIDTHS, base, 1, "mocov2_slim", DIM)
    R.randomize(enc_q, torch.Generator().manual_seed(0))
    enc_k = R.SlimResNet18(WIDTHS, base, 1, "mocov2_slim", DIM)
    enc_k.load_state_dict(enc_q.state_dict())
    for p in enc_k.parameters():
        p.requires_grad_(False)
    queue = F.normalize(torch.randn(DIM, queue_size), dim=0)
    ptr = [0]
    opt = torch.optim.SGD(enc_q.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    a, b = torch.randn(batch, 1, SIZE, SIZE), torch.randn(batch, 1, SIZE, SIZE)
    weights = R.loss_weights(WIDTHS, 5)

    def step(n):
        R.ema(enc_k, enc_q, M)
        with torch.no_grad():  # shuffle-BN in one process: permute, encode, restore
            perm = torch.randperm(batch)
            k = F.normalize(enc_k(b[perm], 0), dim=1)[perm.argsort()]
        snapshot = queue.clone()
        labels = torch.zeros(batch, dtype=torch.long)
        outs = []
        for i in range(n):
            q = F.normalize(enc_q(a, i), dim=1)
            lg = R.moco_v2_logits(q, k, snapshot)
            outs.append({"emb": q, "logits": lg, "loss": F.cross_entropy(lg / TAU, labels)})
        total, _, _ = R.compose(outs, weights, KD["kind"], KD["alpha"], KD["Ts"], KD["Tt"], False, n > 1)
        opt.zero_grad()
        total.backward()
        opt.step()
        queue[:, ptr[0] : ptr[0] + batch] = k.t()
        ptr[0] = (ptr[0] + batch) % queue_size

    full, slim = interleaved([lambda: step(1), lambda: step(len(WIDTHS))], iters, 2)
    print(json.dumps({"full": full, "slim": slim}))


if __name__ == "__main__":
    main()
