"""Papermill smoke runs of nbs/22_dmcac_repro.ipynb with tiny parameters: files written, numbers finite and in range."""
import json
import math

import pandas as pd
import pytest

TINY = dict(backbone="small_cnn", pretrained=False, backbone_kwargs={}, n_chars=4, n_typefaces=3, per_class=6, image_size=16, epochs=2, batch_size=8, A=3, k=3,
            refresh_every=1, eval_batch_size=64, attention_classes=4, gallery_queries=2, device="cpu")


def _check_common(out, ks=(1, 2, 4, 8)):
    for name in ("metrics.json", "results.csv", "table1_comparison.csv", "summary.json", "attention_maps.json",
                 "training_curves.png", "tsne.png", "retrieval_gallery.png", "figure3_attention.png", "train/log.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    for k in ks:
        v = m["metrics"][f"R@{k}"]
        assert math.isfinite(v) and 0.0 <= v <= 1.0, (k, v)
    assert [m["metrics"][f"R@{k}"] for k in ks] == sorted(m["metrics"][f"R@{k}"] for k in ks)   # Recall@K grows with K
    assert 0.0 <= m["metrics"]["mAP@R"] <= 1.0
    assert m["train_seconds"] > 0 and len(m["history"]["train"]) == m["params"]["epochs"]
    for row in m["history"]["train"]:
        for key in ("loss", "frob", "ce", "cac"):
            assert math.isfinite(row[key]) and row[key] >= 0, (key, row)
    maps = json.loads((out / "attention_maps.json").read_text())
    assert set(maps) == {"early", "late"}
    for a in maps.values():
        rows = [sum(r) for r in a]
        assert all(abs(s - 1) < 1e-4 for s in rows) and all(0 <= x <= 1 + 1e-6 for r in a for x in r)
    t1 = pd.read_csv(out / "table1_comparison.csv")
    assert (t1["source"] == "ours").sum() == 1 and (t1["source"] == "DMCAC Table 1").sum() == 2   # DMCAC-DeiT and DMCAC-ViT
    return m


def test_dmcac_repro_smoke(run_notebook, tmp_path):
    run_notebook("22_dmcac_repro.ipynb", TINY)
    m = _check_common(tmp_path / "out")
    assert m["params"]["retrieval"] == "approximate" and m["sizes"]["database"] > 0
    assert not (tmp_path / "out" / "table2_betas.csv").exists()                     # sweeps are off by default


@pytest.mark.slow
def test_dmcac_repro_sweeps_and_full(run_notebook, tmp_path):
    run_notebook("22_dmcac_repro.ipynb", {**TINY, "epochs": 1, "retrieval": "full", "run_sweeps": True, "sweep_epochs": 1, "sweep_views": [2, 3]})
    out = tmp_path / "out"
    _check_common(out)
    t2, t3, t4 = (pd.read_csv(out / f) for f in ("table2_betas.csv", "table3_views.csv", "table4_retrieval.csv"))
    assert len(t2) == 8 and len(t3) == 2 and len(t4) == 2
    for t in (t2, t3, t4):
        assert t["ours R@1"].between(0, 100).all()
    assert t2.filter(like="paper In-Shop R@1").notna().all().all()                  # every Table 2 setting has the paper's numbers
    assert t4.filter(like="paper CUB").notna().all().all()
