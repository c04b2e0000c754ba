"""Benchmark: training throughput (images/s) of the raw model step, the loader alone, the `Trainer` and the
`Trainer` with `compile=True`, on the same model and the same glyph batches, on the CPU and on CUDA when present.

    python benchmarks/bench_train_throughput.py --no-compile   # ~1 min on 2 idle CPU cores (compile: +1-2 min)
    python benchmarks/bench_train_throughput.py --size 224 --batch 120 --chars 16 --typefaces 16 --per-class 30 \
        --steps 40 --devices cuda                                       # the issue's GPU setting
    python benchmarks/bench_train_throughput.py --threads 1 --clock cpu  # on a busy shared CPU machine
    python benchmarks/bench_train_throughput.py --train-stages 1 --no-compile   # memoised frozen prefix (GAPan's)
    python benchmarks/bench_train_throughput.py --augment --workers 2 --no-compile  # random crops: DataLoader path

* raw step: `training_step` + backward + AdamW step over one epoch's batches already on the device, nothing else.
* loader: the training batches (m-per-class, as the reproductions use) fed as the Trainer feeds them (whole
  in-memory batches through `epoch_feed` where it exists, else the `DataLoader`), on the device.
* Trainer: `Trainer.fit` over that loader; images/s between the end of warm-up and the last step (logging every
  `--log-every` steps, no evaluation, no checkpoint inside the timed span).
* Trainer + compile: the same with `TrainConfig(compile=True)`; its compilation happens in the warm-up steps.

`--train-stages K` trains only the last K stages and memoises the frozen prefix's outputs (GAPan's default
setting); the memo is filled before anything is timed, so the rows measure the hit path. `--augment` gives the
glyphs a random-crop transform, which sends them through the `DataLoader` path (seeded items, persistent workers,
uint8 batches normalised on the device) instead of whole in-memory batches. Results: `throughput_results.md`.

The method is `norm_softmax` (EfficientNet-Lite0 with random weights + an embedding head). The last line is
`trainer/raw throughput ratio: X.XX` for the first device (the Trainer without compile over the raw eager step).
The raw step and the Trainer are measured `--repeats` times, alternately, and the best of each is kept.
"""
from __future__ import annotations

import argparse, dataclasses, tempfile, time

import torch
from torch.utils.data import DataLoader

from fgr_core.data import GlyphsDataset, MPerClassSampler, train_transform
from fgr_core.feed import to_device
from fgr_core.method import create_method
from fgr_core.train import Trainer, TrainConfig
import fgr_core.gapan  # noqa: F401  (registers norm_softmax)


MEMO = {}   # --train-stages: the frozen prefix's outputs, shared by every measurement (same weights: seed 0)


def make_method(ds, args, device):
    torch.manual_seed(0)
    kw = {"train_stages": args.train_stages, "memo": MEMO} if args.train_stages is not None else {}
    m = create_method("norm_softmax", num_classes=ds.num_classes, image_backbone=args.backbone, pretrained=False,
                      image_kwargs=kw)
    return m.to(device).train()


def fill_memo(ds, loader, args, device):
    "Run the frozen prefix over every training image once, so that the timed steps read the memo"
    m = make_method(ds, args, device)
    frozen = [x for x in m.modules() if hasattr(x, "frozen_features")]
    with torch.no_grad():
        for b in feed(loader, device): frozen[0].frozen_features(b["image"])


def make_loader(ds, args, device):
    sampler = MPerClassSampler(ds.labels, args.m, args.batch, torch.Generator().manual_seed(0))
    return DataLoader(ds, batch_sampler=sampler, num_workers=args.workers, pin_memory=device.type == "cuda",
                      persistent_workers=args.workers > 0)


CLOCK = time.perf_counter   # --clock cpu: time.process_time (this process's CPU seconds: robust to a shared machine)


def feed(loader, device, epoch:int=0):
    "One epoch of batches on `device`, fed as the Trainer feeds them (`epoch_feed` where it exists, else the loader)"
    try: from fgr_core.feed import epoch_batches, epoch_feed
    except ImportError: return (to_device(b, device, non_blocking=True) for b in loader)
    batches = epoch_feed(loader, epoch_batches(loader, 0, epoch), 0, epoch, device)
    return (to_device(b, device, non_blocking=True) for b in batches)


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize(device)


def channels_last(args, device)->bool:
    return device.type == "cuda" if args.channels_last == "auto" else args.channels_last == "1"


def raw_step(ds, loader, args, device)->float:
    "Images/s of fwd + bwd + AdamW over one epoch's batches, all already on the device"
    m = make_method(ds, args, device)
    cl = channels_last(args, device)
    if cl: m.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
    batches = list(feed(loader, device))               # cycling real batches (one repeated batch drives the loss
    if cl:                                             # to 0 and the CPU into slow denormal arithmetic)
        for b in batches: b["image"] = b["image"].contiguous(memory_format=torch.channels_last)
    def step(i):
        loss = m.training_step(batches[i % len(batches)])["loss"]
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    for i in range(args.warmup): step(i)
    sync(device); t = CLOCK()
    for i in range(args.warmup, args.warmup + args.steps): step(i)
    sync(device)
    return args.steps * args.batch / (CLOCK() - t)


def loader_alone(ds, loader, args, device)->float:
    "Images/s of iterating the loader and moving each batch to the device"
    n, t, epoch = 0, None, 0
    while n < args.warmup + args.steps:
        for b in feed(loader, device, epoch):
            n += 1
            if n == args.warmup: sync(device); t = CLOCK()
            if n == args.warmup + args.steps: break
        epoch += 1
    sync(device)
    return args.steps * args.batch / (CLOCK() - t)


class _TimedTrainer(Trainer):
    "A Trainer that records the time after every step"
    def _train_step(self, batch):
        out = super()._train_step(batch)
        self.stamps.append(CLOCK())
        return out


def trainer(ds, loader, args, device, compile:bool=False)->float|None:
    "Images/s of `Trainer.fit` between the end of warm-up and its last step"
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if compile and "compile" not in fields: return None
    extra = {"compile": True} if compile else {}
    if "channels_last" in fields: extra["channels_last"] = channels_last(args, device)
    epochs = -(-(args.warmup + args.steps + 1) // len(loader))
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(epochs=epochs, lr=1e-4, batch_size=args.batch, device=str(device), eval_every=0,
                          checkpoint_every_epochs=0, log_every=args.log_every, progress=False, out_dir=out, **extra)
        tr = _TimedTrainer(make_method(ds, args, device), loader, cfg)
        tr.stamps = []
        tr.fit()
    s = tr.stamps[args.warmup - 1:args.warmup + args.steps]
    return (len(s) - 1) * args.batch / (s[-1] - s[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--size", type=int, default=64, help="glyph image side")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--m", type=int, default=4, help="images per class in a batch")
    ap.add_argument("--chars", type=int, default=8)
    ap.add_argument("--typefaces", type=int, default=8)
    ap.add_argument("--per-class", type=int, default=12)
    ap.add_argument("--steps", type=int, default=12, help="timed steps per measurement")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    ap.add_argument("--repeats", type=int, default=2, help="raw step and Trainer measured alternately, best kept")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--devices", default="auto", help="comma-separated, e.g. cpu,cuda; auto: cpu, and cuda if present")
    ap.add_argument("--channels-last", default="auto", choices=["auto", "0", "1"],
                    help="channels_last conv weights in the raw step and the Trainer; auto: CUDA only (the default)")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="cpu: this process's CPU time (with --threads 1 on a busy machine; not with workers or CUDA)")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled Trainer (slow to compile on a CPU)")
    ap.add_argument("--train-stages", type=int, default=None, help="train the last K stages, memoise the frozen rest")
    ap.add_argument("--augment", action="store_true", help="random-crop transform: the DataLoader path")
    args = ap.parse_args()
    if args.warmup < 1 or args.steps < 2 or args.repeats < 1:
        ap.error("--warmup and --repeats must be >= 1, --steps >= 2")
    torch.set_num_threads(args.threads)
    global CLOCK
    if args.clock == "cpu": CLOCK = time.process_time
    auto = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    devices = args.devices.split(",") if args.devices != "auto" else auto
    tf = train_transform(args.size, resize_ratio=1.15, flip=False) if args.augment else None
    ds = GlyphsDataset("train", n_chars=args.chars, n_typefaces=args.typefaces, per_class=args.per_class,
                       image_size=args.size, transform=tf)
    print(f"{args.backbone} (random init), norm_softmax, glyphs {args.size} px, {len(ds)} train images, "
          f"batch {args.batch}, "
          f"{args.steps} timed steps after {args.warmup}, {args.threads} CPU thread(s), {args.workers} worker(s), "
          f"channels_last={args.channels_last}, {args.clock} clock, train_stages={args.train_stages} (memo), "
          f"augment={args.augment}, torch {torch.__version__}")
    print(f"{'device':<8}{'what':<22}{'images/s':>10}{'/ raw':>8}")
    ratio = None
    for d in devices:
        device = torch.device(d)
        loader = make_loader(ds, args, device)
        if args.train_stages is not None: fill_memo(ds, loader, args, device)
        raw, tr = [], []
        for _ in range(args.repeats):   # alternated, best kept: a shared machine's load swings between measurements
            raw.append(raw_step(ds, loader, args, device)); tr.append(trainer(ds, loader, args, device))
        rows = {"raw step": max(raw), "loader alone": loader_alone(ds, loader, args, device), "Trainer": max(tr)}
        rows["Trainer + compile"] = None if args.no_compile else trainer(ds, loader, args, device, compile=True)
        for k, v in rows.items():
            print(f"{d:<8}{k:<22}" + (f"{v:>10.1f}{v / rows['raw step']:>8.2f}" if v else f"{'n/a':>10}{'':>8}"))
        if ratio is None: ratio = rows["Trainer"] / rows["raw step"]
    print(f"trainer/raw throughput ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
