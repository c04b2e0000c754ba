"""Benchmark: Recall@{1,2,4,8} + mAP@R with fgr's chunked FAISS evaluation vs a naive dense torch version.

    python benchmarks/bench_metrics.py                       # N = 20k and 50k, d = 512, 1000 classes
    python benchmarks/bench_metrics.py --sizes 5000 --repeats 2

Each (variant, N, repeat) runs in its own subprocess, so the peak resident memory it reports
(`resource.getrusage(RUSAGE_SELF).ru_maxrss` after the evaluation minus the same reading after imports and
loading the embeddings) belongs to that evaluation alone; tracemalloc would miss FAISS's and torch's C++
allocations. Times are wall-clock medians over the repeats.

* ours:  `fgr_core.metrics.evaluate_retrieval` (exact FAISS IndexFlatIP, query chunks, k = max R neighbours).
* naive: the whole N x N cosine similarity matrix in torch, the diagonal masked, every row fully sorted,
  then Recall@K and mAP@R from the sorted labels. When one full `torch.sort` of the N x N matrix would not
  fit in the available memory (values + int64 indices = 3 x the matrix) the sort runs over blocks of rows
  (still a full sort of every row, against the full similarity matrix); the table says which.
"""
from __future__ import annotations

import argparse, json, os, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np

KS = (1, 2, 4, 8)


def make_data(n: int, dim: int, classes: int, seed: int, path: Path):
    "Clustered unit-free embeddings: class centre + isotropic noise, labels balanced and shuffled"
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim), dtype=np.float32)
    labels = rng.permutation(np.arange(n) % classes).astype(np.int64)
    emb = centres[labels]
    emb += 2.5 * rng.standard_normal((n, dim), dtype=np.float32)
    np.save(path / f"emb_{n}.npy", emb); np.save(path / f"lab_{n}.npy", labels)


def run_ours(emb, labels):
    from fgr_core.metrics import evaluate_retrieval
    return evaluate_retrieval(emb, labels, ks=KS, metrics=("recall", "map_at_r")), "faiss IndexFlatIP, query chunks of 2048"


def run_naive(emb, labels, avail_bytes: int):
    import torch
    x = torch.nn.functional.normalize(torch.from_numpy(emb), dim=1)
    y = torch.from_numpy(labels)
    n = len(x)
    S = x @ x.T                                   # (N, N) cosine similarities
    S.fill_diagonal_(float("-inf"))               # leave-one-out: a query never retrieves itself
    R = torch.bincount(y)[y] - 1                  # relevant items per query
    full = 3 * S.numel() * 4 < 0.8 * (avail_bytes - S.numel() * 4)  # sort values + int64 indices next to S
    block = n if full else 2048
    K = int(R.max())                              # deepest rank any metric looks at (max R >= 8 here)
    rec = {k: 0.0 for k in KS}; ap = 0.0
    ranks = torch.arange(1, K + 1)
    for s in range(0, n, block):
        order = torch.sort(S[s:s + block], dim=1, descending=True).indices[:, :K].clone()  # full sort of every row
        rel = (y[order] == y[s:s + block, None])                                          # (b, K) relevance by rank
        for k in KS: rec[k] += rel[:, :k].any(1).sum().item()
        r = R[s:s + block]
        prec = rel.cumsum(1) / ranks
        ap += ((prec * (rel & (ranks[None] <= r[:, None]))).sum(1) / r.clamp(min=1)).sum().item()
        del order, rel, prec
    out = {f"R@{k}": rec[k] / n for k in KS}; out["mAP@R"] = ap / n
    return out, ("full N x N sort" if full else f"N x N matrix, sort in row blocks of {block}")


def worker(variant: str, n: int, data: Path):
    import torch, faiss  # noqa: F401  (imports counted in the baseline, not in the peak)
    import fgr_core.metrics  # noqa: F401
    emb, labels = np.load(data / f"emb_{n}.npy"), np.load(data / f"lab_{n}.npy")
    import psutil
    avail = psutil.virtual_memory().available
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    res, how = run_ours(emb, labels) if variant == "ours" else run_naive(emb, labels, avail)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"time_s": dt, "peak_mb": (peak - base) / 1024, "rss_mb": peak / 1024, "res": res, "how": how,
                      "torch_threads": torch.get_num_threads(), "faiss_threads": faiss.omp_get_max_threads()}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20000, 50000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive-repeats", type=int, default=None, help="repeats for the naive variant at the largest N (default: --repeats)")
    ap.add_argument("--variants", nargs="+", default=["ours", "naive"], choices=["ours", "naive"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", nargs=3, metavar=("VARIANT", "N", "DATA"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker: return worker(a.worker[0], int(a.worker[1]), Path(a.worker[2]))
    import psutil
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in a.sizes:
            make_data(n, a.dim, a.classes, a.seed, tmp)
            for v in a.variants:
                reps = a.naive_repeats if (v == "naive" and a.naive_repeats and n == max(a.sizes)) else a.repeats
                need = 4 * n * n * 1.15 + 4 * n * a.dim * 3
                if v == "naive" and need > psutil.virtual_memory().available:
                    print(f"skip naive N={n}: needs ~{need / 2**30:.1f} GiB, {psutil.virtual_memory().available / 2**30:.1f} GiB available", flush=True)
                    continue
                runs = []
                for r in range(reps):
                    p = subprocess.run([sys.executable, __file__, "--worker", v, str(n), str(tmp)], capture_output=True, text=True)
                    if p.returncode: raise RuntimeError(f"{v} N={n} failed:\n{p.stderr[-2000:]}")
                    runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
                    print(f"{v:5s} N={n:6d} run {r + 1}/{reps}: {runs[-1]['time_s']:.1f} s, peak +{runs[-1]['peak_mb']:.0f} MB", flush=True)
                rows.append(dict(variant=v, n=n, time_s=statistics.median(x["time_s"] for x in runs),
                                 peak_mb=statistics.median(x["peak_mb"] for x in runs), reps=reps, res=runs[0]["res"],
                                 how=runs[0]["how"], threads=(runs[0]["torch_threads"], runs[0]["faiss_threads"])))
    print(f"\nd={a.dim}, {a.classes} classes, leave-one-out Recall@{{1,2,4,8}} + mAP@R; median wall time, peak RSS increase; "
          f"threads torch/faiss = {rows[0]['threads'] if rows else '?'}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    hdr = f"{'N':>6} {'variant':7} {'reps':>4} {'time s':>8} {'peak MB':>9} {'R@1':>7} {'R@8':>7} {'mAP@R':>7}  how"
    print(hdr); print("-" * len(hdr))
    for r in rows:
        print(f"{r['n']:>6} {r['variant']:7} {r['reps']:>4} {r['time_s']:>8.2f} {r['peak_mb']:>9.0f} {r['res']['R@1']:>7.4f} "
              f"{r['res']['R@8']:>7.4f} {r['res']['mAP@R']:>7.4f}  {r['how']}")
    for n in a.sizes:
        o = [r for r in rows if r["n"] == n and r["variant"] == "ours"]; nv = [r for r in rows if r["n"] == n and r["variant"] == "naive"]
        if o and nv:
            diff = max(abs(o[0]["res"][k] - nv[0]["res"][k]) for k in o[0]["res"])
            print(f"N={n}: naive/ours time x{nv[0]['time_s'] / o[0]['time_s']:.1f}, peak memory x{nv[0]['peak_mb'] / max(o[0]['peak_mb'], 1):.1f}; "
                  f"max |metric difference| = {diff:.2e}")


if __name__ == "__main__":
    main()
