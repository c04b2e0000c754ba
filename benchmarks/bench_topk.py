"""Benchmark: perturbed top-K forward + backward, fgr's index-based version vs a dense one-hot version.

    python benchmarks/bench_topk.py                          # B=64, N=196 regions, k=20, S=500 noise samples
    python benchmarks/bench_topk.py --batch 16 --repeats 3 --threads 2

* ours:  `fgr_core.topk.perturbed_topk`: indicators counted with `scatter_add_` into (B, k, N); the backward
  gathers the incoming gradient at the sampled indices (B, S, k) and contracts with the noise (B, S, N).
  Saved for backward: noise (B, S, N) float + indices (B, S, k) int64.
* dense: the straightforward version (as in Cordonnier et al.'s reference code): one-hot of the sorted top-k
  indices as a (B, S, k, N) float tensor, forward = its mean over S, backward = the Eq. 8 Jacobian
  E[Y Z^T] / sigma materialised as (B, k, N, N) and contracted with the incoming gradient.

Both use the same noise (`torch.randn(B, S, N, generator=...)`) so their outputs and gradients agree; the
script checks that first. Each variant runs in its own subprocess: one warm-up, then `--repeats` timed
forward+backward passes (wall clock, median reported). Peak memory is the rise of the resident set
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`) over the reading taken after imports and input creation, so it
counts torch's C++ allocations that tracemalloc cannot see. Threads are pinned (`--threads`, default 1) since
the machine may be shared.
"""
from __future__ import annotations

import argparse, json, os, platform, resource, statistics, subprocess, sys, time


def dense_topk_fn():
    import torch, torch.nn.functional as F

    class DenseTopK(torch.autograd.Function):
        @staticmethod
        def forward(ctx, s, k, sigma, S, generator):
            B, N = s.shape
            Z = torch.randn(B, S, N, generator=generator, dtype=s.dtype)                     # (B, S, N)
            idx = (s[:, None] + sigma * Z).topk(k, dim=-1).indices.sort(dim=-1).values       # (B, S, k)
            onehot = F.one_hot(idx, N).to(s.dtype)                                           # (B, S, k, N)
            ctx.save_for_backward(onehot, Z); ctx.sigma = sigma
            return onehot.mean(1)                                                            # (B, k, N)

        @staticmethod
        def backward(ctx, G):
            onehot, Z = ctx.saved_tensors
            J = torch.einsum("bskn,bsm->bknm", onehot, Z) / (Z.shape[1] * ctx.sigma)        # (B, k, N, N), Eq. 8
            return torch.einsum("bkn,bknm->bm", G, J), None, None, None, None

    return lambda s, k, sigma, S, g: DenseTopK.apply(s, k, sigma, S, g)


def ours_fn():
    from fgr_core.topk import perturbed_topk
    return lambda s, k, sigma, S, g: perturbed_topk(s, k, sigma, S, generator=g)


def worker(variant: str, B: int, N: int, k: int, S: int, sigma: float, repeats: int) -> dict:
    import torch
    fn = ours_fn() if variant == "ours" else dense_topk_fn()
    gen = torch.Generator().manual_seed(0)
    s = torch.rand(B, N, generator=gen).requires_grad_()
    G = torch.randn(B, k, N, generator=gen)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss            # KiB on Linux
    times = []
    for r in range(repeats + 1):
        t = time.perf_counter()
        Y = fn(s, k, sigma, S, gen)
        (Y * G).sum().backward()
        dt = time.perf_counter() - t
        s.grad = None; del Y
        if r: times.append(dt)                                             # first pass is the warm-up
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"variant": variant, "median_s": statistics.median(times), "min_s": min(times), "peak_mib": (peak - base) / 1024}


def check_agree(N=30, k=5, S=50, sigma=0.1):
    import torch
    s = torch.rand(4, N, dtype=torch.float64, requires_grad=True)
    G = torch.randn(4, k, N, dtype=torch.float64)
    out = []
    for fn in (ours_fn(), dense_topk_fn()):
        Y = fn(s, k, sigma, S, torch.Generator().manual_seed(3))
        (g,) = torch.autograd.grad((Y * G).sum(), s)
        out.append((Y.detach(), g))
    return float((out[0][0] - out[1][0]).abs().max()), float((out[0][1] - out[1][1]).abs().max())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=64); ap.add_argument("--regions", type=int, default=196)
    ap.add_argument("--k", type=int, default=20); ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--sigma", type=float, default=0.05); ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--worker", choices=["ours", "dense"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        import torch; torch.set_num_threads(a.threads)
        print(json.dumps(worker(a.worker, a.batch, a.regions, a.k, a.samples, a.sigma, a.repeats))); return
    dy, dg = check_agree()
    print(f"same noise, ours vs dense: max |dY| = {dy:.2e}, max |dgrad| = {dg:.2e}")
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    rows = []
    for v in ("ours", "dense"):
        cmd = [sys.executable, __file__, "--worker", v, "--batch", str(a.batch), "--regions", str(a.regions), "--k", str(a.k),
               "--samples", str(a.samples), "--sigma", str(a.sigma), "--repeats", str(a.repeats), "--threads", str(a.threads)]
        rows.append(json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]))
    import torch
    print(f"perturbed top-k fwd+bwd: B={a.batch} N={a.regions} k={a.k} S={a.samples} float32, CPU {platform.processor() or platform.machine()}, "
          f"{a.threads} thread(s), torch {torch.__version__}, median of {a.repeats} (after 1 warm-up)")
    dense_bytes = a.batch * a.samples * a.k * a.regions * 4
    print(f"(dense one-hot tensor alone: {dense_bytes / 2**20:.0f} MiB; its Jacobian (B, k, N, N): {a.batch * a.k * a.regions**2 * 4 / 2**20:.0f} MiB)")
    print(f"{'variant':8s} {'median s':>9s} {'min s':>8s} {'peak MiB':>9s}")
    for r in rows: print(f"{r['variant']:8s} {r['median_s']:9.3f} {r['min_s']:8.3f} {r['peak_mib']:9.0f}")
    o, d = rows
    print(f"ratio dense/ours: time x{d['median_s'] / o['median_s']:.1f}, peak memory x{d['peak_mib'] / max(o['peak_mib'], 1e-9):.1f}")


if __name__ == "__main__":
    main()
