"""Benchmark: one DMCAC training step with full vs approximate retrieval as the training database grows.

    python benchmarks/bench_dmcac.py                          # D = 1k, 10k, 100k database embeddings, F = 384
    python benchmarks/bench_dmcac.py --sizes 1000 10000 --steps 3 --device cuda

What is timed is `fgr_core.dmcac.DMCAC.training_step` + backward + AdamW step (the real method: views, Eq. 5
encoding, retrieval, L_frob, L_ce, L_cac, Eq. 20), with a stand-in encoder so that only retrieval and the losses
scale with the database: the "images" are random 384-d vectors (B, 384, 1, 1), the encoder is one 384x384 linear
layer, and the database is random vectors embedded by that layer (approximate: refreshed once, before timing, and
the refresh is not part of a step; full: embedded inside every step, which is the point of Eq. 6-7). Batch B = 32 queries x A = 6 views, k = 12.

* full:        Eq. 6-7 end to end: the whole database is re-embedded in every step *with* gradient, in checkpointed
               chunks of --chunk-size (the encoder runs forward twice and backward once over all D rows), then P and
               CAC over the whole database; gradients through all of it, to the encoder.
* approx-flat: Eq. 8-10 with an exact FAISS IndexFlatIP search (linear in D, but no gradient, no (B, A, D) tensors).
* approx-ivf:  the same with an IVF index (nlist = 4 sqrt(D), nprobe = 8): sub-linear search.

Each (mode, D) runs in its own subprocess. Peak memory on CPU is the largest resident set size seen by a 1 ms
sampler thread during the warm-up and timed steps, minus the resident size right before them (after the database
and its index were built): the extra memory one training step needs. On CUDA it is
`torch.cuda.max_memory_allocated()` minus the allocation before the steps. Times are medians over `--steps` steps.
"""
from __future__ import annotations

import argparse, json, os, statistics, subprocess, sys, threading, time
from pathlib import Path

MODES = ("full", "approx-flat", "approx-ivf")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    "Samples the resident set size every `interval` seconds in a background thread"
    def __init__(self, interval: float = 0.001): self.interval, self.peak, self._stop = interval, 0, threading.Event()
    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes()); time.sleep(self.interval)
    def __enter__(self):
        self.peak = _rss_bytes(); self._t = threading.Thread(target=self._run, daemon=True); self._t.start(); return self
    def __exit__(self, *exc):
        self._stop.set(); self._t.join(); self.peak = max(self.peak, _rss_bytes())


def run_one(mode: str, n: int, dim: int, batch: int, A: int, k: int, steps: int, device: str, seed: int,
            chunk_size: int = 4096) -> dict:
    import math
    import torch
    from torch import nn
    from fgr_core.dmcac import DMCAC

    torch.manual_seed(seed)
    dev = torch.device(device)

    class Encoder(nn.Module):   # stand-in backbone: (N, dim, 1, 1) -> (N, dim)
        def __init__(self):
            super().__init__(); self.num_features = dim; self.lin = nn.Linear(dim, dim)
        def forward(self, x): return self.lin(x.flatten(1))

    class Vectors(torch.utils.data.Dataset):
        def __init__(self, x): self.x = x
        def __len__(self): return len(self.x)
        def __getitem__(self, i): return {"image": self.x[i], "label": 0, "index": i}

    g = torch.Generator().manual_seed(seed)
    db = torch.randn(n, dim, 1, 1, generator=g)
    views = lambda x, A_, gen: x[:, None] + 0.1 * torch.randn(x.shape[0], A_, *x.shape[1:], generator=gen).to(x.device)
    retrieval = "full" if mode == "full" else "approximate"
    kind = "ivf" if mode == "approx-ivf" else "flat"
    index_kwargs = {"nlist": max(4, int(4 * math.sqrt(n))), "nprobe": 8} if kind == "ivf" else {}
    m = DMCAC(Encoder(), num_classes=100, A=A, k=k, retrieval=retrieval, views="affine", views_fn=views, index_kind=kind,
              index_kwargs=index_kwargs, refresh_every=10**6, chunk_size=chunk_size).to(dev)
    m.set_database(Vectors(db), batch_size=4096)
    t0 = time.perf_counter()
    m.database_images() if retrieval == "full" else m.refresh_database(0)   # full: images loaded once, embedded per step
    refresh_s = time.perf_counter() - t0
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    batches = [{"image": torch.randn(batch, dim, 1, 1, generator=g).to(dev), "label": torch.randint(0, 100, (batch,), generator=g).to(dev)}
               for _ in range(steps + 1)]

    def step(b):
        losses = m.training_step(b)
        opt.zero_grad(set_to_none=True); losses["loss"].backward(); opt.step()
        if dev.type == "cuda": torch.cuda.synchronize()
        return float(losses["loss"])

    if dev.type == "cuda":
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    times = []
    with _PeakRSS() as rss:
        base_rss = _rss_bytes()
        step(batches[0])                                  # warm-up (allocator, FAISS/BLAS threads)
        for b in batches[1:]:
            t = time.perf_counter(); loss = step(b); times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated() - base) if dev.type == "cuda" else (rss.peak - base_rss)
    return {"mode": mode, "D": n, "step_ms": 1000 * statistics.median(times), "peak_mb": peak / 2**20,
            "refresh_s": refresh_s, "loss": loss, "device": str(dev), "threads": torch.get_num_threads()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--A", type=int, default=6)
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per run (CPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-size", type=int, default=4096, help="full retrieval: database rows per checkpointed chunk")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--_one", nargs=2, metavar=("MODE", "D"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._one:
        import torch
        torch.set_num_threads(a.threads)
        print(json.dumps(run_one(a._one[0], int(a._one[1]), a.dim, a.batch, a.A, a.k, a.steps, a.device, a.seed, a.chunk_size)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    rows = []
    for n in a.sizes:
        for mode in a.modes:
            cmd = [sys.executable, __file__, "--_one", mode, str(n), "--dim", str(a.dim), "--batch", str(a.batch), "--A", str(a.A),
                   "--k", str(a.k), "--steps", str(a.steps), "--device", a.device, "--threads", str(a.threads), "--seed", str(a.seed),
                   "--chunk-size", str(a.chunk_size)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{mode} D={n}: failed\n{out.stderr[-2000:]}", file=sys.stderr); continue
            r = json.loads(out.stdout.strip().splitlines()[-1]); rows.append(r)
            print(f"  {mode:12s} D={n:>7d}: {r['step_ms']:9.1f} ms/step, peak +{r['peak_mb']:8.1f} MB", file=sys.stderr, flush=True)
    by = {(r["mode"], r["D"]): r for r in rows}
    print(f"\nDMCAC training step, B={a.batch} queries x A={a.A} views, F={a.dim}, k={a.k}, device={a.device}, threads={a.threads}, median of {a.steps} steps\n")
    print("| D | " + " | ".join(f"{m} ms" for m in a.modes) + " | " + " | ".join(f"{m} MB" for m in a.modes) + " | full/approx-flat time | full/approx-flat mem |")
    print("|---" * (2 + 2 * len(a.modes) + 1) + "|")
    for n in a.sizes:
        cells = [f"{by[(m, n)]['step_ms']:.1f}" if (m, n) in by else "-" for m in a.modes]
        cells += [f"{by[(m, n)]['peak_mb']:.1f}" if (m, n) in by else "-" for m in a.modes]
        f, ap_ = by.get(("full", n)), by.get(("approx-flat", n))
        ratio_t = f"{f['step_ms'] / ap_['step_ms']:.1f}x" if f and ap_ else "-"
        ratio_m = f"{f['peak_mb'] / max(ap_['peak_mb'], 1e-9):.1f}x" if f and ap_ else "-"
        print(f"| {n} | " + " | ".join(cells) + f" | {ratio_t} | {ratio_m} |")
    for m in a.modes:
        lo, hi = by.get((m, min(a.sizes))), by.get((m, max(a.sizes)))
        if lo and hi and lo is not hi:
            print(f"\n{m}: D x{max(a.sizes) // min(a.sizes)} -> time x{hi['step_ms'] / lo['step_ms']:.1f}, memory x{hi['peak_mb'] / max(lo['peak_mb'], 1e-9):.1f}", end="")
    print()
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
