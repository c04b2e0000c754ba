"""Benchmark: one training epoch of an embedding model with a fully trained, a partially frozen and a partially
frozen + memoised backbone (`fgr_core.backbones.PartiallyFrozenBackbone`).

    python benchmarks/bench_frozen_prefix.py                      # EfficientNet-Lite0 (random init), 128 px, 2 threads
    python benchmarks/bench_frozen_prefix.py --size 64 --images 256 --threads 1

Every variant trains the same backbone + linear head with a softmax loss for `--epochs` epochs over the same
`--images` fixed images (batches of `--batch`), then the median epoch time is reported. The memoised variant pays
for its frozen part in the first epoch only, so its *later* epochs are what the GAPan and FGAN defaults see; the
table gives both. Random weights suffice for timing (no download, no offline weights needed).
"""
from __future__ import annotations

import argparse, statistics, time

import torch
import torch.nn.functional as F

from fgr_core.backbones import create_image_backbone


def run(variant:str, args)->list[float]:
    "Seconds per epoch of `variant` ('full', 'frozen', 'frozen+memo')"
    torch.manual_seed(0)
    kw = {} if variant == "full" else {"train_stages": args.train_stages, "memo": {} if variant == "frozen+memo" else None}
    net = create_image_backbone(args.backbone, **kw)
    head = torch.nn.Linear(net.num_features, args.classes)
    params = [p for p in list(net.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.images, 3, args.size, args.size, generator=g)
    y = torch.randint(0, args.classes, (args.images,), generator=g)
    net.train(); times = []
    for _ in range(args.epochs):
        t = time.perf_counter()
        for i in range(0, args.images, args.batch):
            loss = F.cross_entropy(head(net(x[i:i + args.batch])[0]), y[i:i + args.batch])
            opt.zero_grad(); loss.backward(); opt.step()
        times.append(time.perf_counter() - t)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-stages", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = {v: run(v, args) for v in ("full", "frozen", "frozen+memo")}
    base = statistics.median(res["full"])
    print(f"{args.backbone}, {args.size} px, {args.images} images, batch {args.batch}, train_stages={args.train_stages}, "
          f"{args.threads} thread(s); seconds per epoch")
    print(f"{'variant':<14}{'first epoch':>13}{'median':>10}{'later epochs':>14}{'speed-up (median)':>19}")
    for v, t in res.items():
        later = statistics.median(t[1:]) if len(t) > 1 else float("nan")
        print(f"{v:<14}{t[0]:>13.2f}{statistics.median(t):>10.2f}{later:>14.2f}{base / statistics.median(t):>18.1f}x")


if __name__ == "__main__":
    main()
