"""Reference side of benches/data_bench.ts (b): torchvision + PIL decoding an ImageFolder of JPEGs
with RandomResizedCrop(224) + flip + ToTensor + Normalize in a DataLoader with N workers.

  --make-images DIR --count N   writes N synthetic JPEGs (about 500x375, quality 90) in DIR/<class>/
  --time DIR --workers W --batch B   prints {"images_per_s": ...} for one pass after a warm-up pass

The last stdout line is JSON. torchvision's CUDA wheels cannot load their C extension on a CPU
torch; the transforms and ImageFolder are pure Python, so the meta registrations are skipped."""
import argparse
import json
import os
import sys
import time
import types


def make_images(root, count):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        w, h = (500, 375) if i % 3 else (375, 500)
        base = rng.integers(0, 256, size=(h // 25 + 1, w // 25 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.BICUBIC)
        arr = np.asarray(img).astype(np.int16) + rng.integers(-20, 21, size=(h, w, 3))
        d = os.path.join(root, f"class{i % 4}")
        os.makedirs(d, exist_ok=True)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(os.path.join(d, f"{i:05d}.JPEG"), quality=90)
    print(json.dumps({"made": count}))


def time_torchvision(root, workers, batch):
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import PIL
    import torch
    import torchvision
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    tf = T.Compose([
        T.RandomResizedCrop(224),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    ds = ImageFolder(root, transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    for _ in dl:  # warm-up pass (starts the workers)
        pass
    t0 = time.perf_counter()
    n = 0
    for x, _ in dl:
        n += x.shape[0]
    dt = time.perf_counter() - t0
    print(json.dumps({"images_per_s": n / dt, "torchvision": torchvision.__version__, "pillow": PIL.__version__, "torch": torch.__version__}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--make-images")
    p.add_argument("--count", type=int, default=256)
    p.add_argument("--time")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    a = p.parse_args()
    try:
        if a.make_images:
            make_images(a.make_images, a.count)
        elif a.time:
            time_torchvision(a.time, a.workers, a.batch)
    except ImportError as e:
        print(json.dumps({"error": f"{e} (install Pillow and torchvision, or pass --python)"}))


if __name__ == "__main__":
    main()
