"""Heavier reference checks for fgr_core.metrics and fgr_core.index than the notebooks' quick cells.

Every metric is compared with an independent computation: a dense numpy ranking scored by plain Python
loops, and scikit-learn's `average_precision_score` for the full-gallery AP of FGAN Eq. 32.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from sklearn.metrics import average_precision_score

from fgr_core.index import EmbeddingIndex, topk_union
from fgr_core.metrics import evaluate_retrieval, knn, map_all, map_at_k


def _dense_rank(q, g, metric, self_=False):
    "Full ranking (Q, G) from a float64 dense score matrix and a stable argsort"
    q, g = q.astype(np.float64), g.astype(np.float64)
    if metric == "cosine":
        q, g = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
    S = -((q[:, None] - g[None]) ** 2).sum(-1) if metric == "l2" else q @ g.T
    if self_:
        np.fill_diagonal(S, -np.inf)
    order = np.argsort(-S, axis=1, kind="stable")
    return order[:, : S.shape[1] - self_], S


def _ap(rel, Z):
    s, hits = 0.0, 0
    for i, r in enumerate(rel, 1):
        if r:
            hits += 1
            s += hits / i
    return s / Z if Z else 0.0


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_leave_one_out_all_metrics(metric):
    rng = np.random.default_rng(0)
    E = rng.normal(size=(600, 12)).astype(np.float32)
    y = rng.integers(0, 25, size=600)
    ks = (1, 2, 4, 8, 5, 10, 20)
    res = evaluate_retrieval(E, y, ks=ks, metric=metric, chunk_size=97,
                             metrics=("recall", "map_at_r", "precision", "map_at_k", "map_all", "prec_at_100"))
    order, _ = _dense_rank(E, E, metric, self_=True)
    rel = y[order] == y[:, None]
    R = rel.sum(1)
    keep = R > 0
    m = lambda f: float(np.mean([f(i) for i in np.flatnonzero(keep)]))
    for k in ks:
        assert abs(res[f"R@{k}"] - m(lambda i: rel[i, :k].any())) < 1e-6
        assert abs(res[f"P@{k}"] - m(lambda i: rel[i, :k].mean())) < 1e-6
        assert abs(res[f"mAP@{k}"] - m(lambda i: _ap(rel[i, :k], min(k, R[i])))) < 1e-6
    assert abs(res["mAP@R"] - m(lambda i: _ap(rel[i, : R[i]], R[i]))) < 1e-6
    assert abs(res["Prec@100"] - m(lambda i: rel[i, :100].mean())) < 1e-6
    assert abs(res["mAP@all"] - m(lambda i: _ap(rel[i], R[i]))) < 1e-6


@pytest.mark.parametrize("direction", ["i2t", "t2i"])
def test_map_all_matches_sklearn_cross_modal(direction):
    rng = np.random.default_rng(1)
    img, txt = rng.normal(size=(150, 16)).astype(np.float32), rng.normal(size=(260, 16)).astype(np.float32)
    yi, yt = rng.integers(0, 10, size=150), rng.integers(0, 10, size=260)
    q, ql, g, gl = (img, yi, txt, yt) if direction == "i2t" else (txt, yt, img, yi)
    _, S = _dense_rank(q, g, "cosine")
    ref = np.mean([average_precision_score(gl == ql[i], S[i]) for i in range(len(q))])
    assert abs(evaluate_retrieval(q, ql, g, gl, metrics=("map_all",))["mAP@all"] - ref) < 1e-6


def test_map_at_k_hits_normalisation_matches_sklearn():
    rng = np.random.default_rng(2)
    kl, ql = rng.integers(0, 3, size=(400, 20)), rng.integers(0, 3, size=400)
    rel = kl == ql[:, None]
    ref = [average_precision_score(rel[i], -np.arange(20)) if rel[i].any() else 0.0 for i in range(400)]
    np.testing.assert_allclose(map_at_k(kl, ql, 20, reduction="none"), ref, atol=1e-12)
    np.testing.assert_allclose(map_all(kl, ql, reduction="none"), ref, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 40), copies=st.integers(1, 5), k=st.integers(1, 6), chunk=st.integers(1, 50))
def test_exclude_self_with_duplicates(n, copies, k, chunk):
    rng = np.random.default_rng(n * 31 + copies)
    X = np.repeat(rng.normal(size=(n, 4)).astype(np.float32), copies, axis=0)
    k = min(k, len(X) - 1)
    if k < 1:
        return
    D, I = knn(X, X, k, exclude_self=True, chunk_size=chunk)
    assert (I.numpy() != np.arange(len(X))[:, None]).all()
    # the scores are the best k among the other rows
    _, S = _dense_rank(X, X, "cosine", self_=True)
    best = -np.sort(-S, axis=1)[:, :k]
    np.testing.assert_allclose(D.numpy(), best, atol=1e-5)


def test_chunk_size_does_not_change_results():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 8)).astype(np.float32)
    a = knn(X, X, 7, exclude_self=True, chunk_size=500)
    b = knn(X, X, 7, exclude_self=True, chunk_size=13)
    assert torch.equal(a[1], b[1]) and torch.allclose(a[0], b[0])


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 6), A=st.integers(1, 5), k=st.integers(1, 8), hi=st.integers(1, 40), seed=st.integers(0, 10_000))
def test_topk_union_matches_python_sets(B, A, k, hi, seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.randint(-1, hi, (B, A, k), generator=g)
    ids, mask = topk_union(v)
    for b in range(B):
        ref = sorted(set(v[b].flatten().tolist()) - {-1})
        assert ids[b][mask[b]].tolist() == ref
        assert (ids[b][~mask[b]] == -1).all()


@pytest.mark.slow
@pytest.mark.parametrize("kind,kw", [("ivf", dict(nlist=64, nprobe=16)), ("hnsw", dict(M=32, ef_search=128))])
def test_approximate_indexes_recall_vs_flat(kind, kw):
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(100, 64)).astype(np.float32)
    db = centres[rng.integers(0, 100, 20000)] + 0.7 * rng.normal(size=(20000, 64)).astype(np.float32)
    qs = centres[rng.integers(0, 100, 500)] + 0.7 * rng.normal(size=(500, 64)).astype(np.float32)
    _, exact = EmbeddingIndex(64).add(db).search(qs, 10)
    _, approx = EmbeddingIndex(64, kind=kind, **kw).add(db).search(qs, 10)
    rec = np.mean([len(set(a.tolist()) & set(e.tolist())) / 10 for a, e in zip(approx, exact)])
    assert rec > 0.9, f"{kind} recall@10 vs exact: {rec:.3f}"
