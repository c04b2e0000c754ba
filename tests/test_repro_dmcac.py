"""Papermill smoke runs of nbs/22_dmcac_repro.ipynb with tiny parameters: the shared results schema, the CE-only
baseline next to DMCAC, Figure 3's maps, and the optional sweeps; on the glyphs and on a tiny CUB-200-2011 tree in
the official format (the paper's protocol: RandAugment views, random crops, the paper's database shares)."""
import json
import math

import pandas as pd
import pytest

from official_fixtures import write_cub

TINY = dict(image_backbone="small_cnn", pretrained=False, image_kwargs={}, data_kwargs={"n_chars": 4, "n_typefaces": 3, "per_class": 6},
            image_size=16, epochs=2, batch_size=8, A=3, k=3, refresh_every=1, eval_batch_size=64, attention_classes=4,
            gallery_queries=2, device="cpu")
METHODS, SEEDS, METRICS = ["dmcac_ce", "dmcac"], [0, 1], ["R@1", "R@2", "R@4", "R@8", "mAP@R"]


def _check_common(out, check, seeds=SEEDS, epochs=2):
    res = check(out, "dmcac", METHODS, seeds, METRICS, ["training_curves", "tsne", "retrieval_gallery", "figure3_attention"])
    for r in res["runs"]:
        vals = [r["metrics"][f"R@{k}"] for k in (1, 2, 4, 8)]
        assert vals == sorted(vals), vals                                              # Recall@K grows with K
        assert r["train_seconds"] > 0
    hist = json.loads((out / f"dmcac_seed{seeds[0]}" / "history.json").read_text())
    assert len(hist["train"]) == epochs and len(hist["eval"]) == epochs               # Figure 3's run evaluates every epoch
    for row in hist["train"]:
        for key in ("loss", "frob", "ce", "cac"):
            assert math.isfinite(row[key]) and row[key] >= 0, (key, row)
    ce = json.loads((out / f"dmcac_ce_seed{seeds[0]}" / "history.json").read_text())
    assert set(ce["train"][0]) == {"epoch", "step", "loss", "ce"} and len(ce["eval"]) == 1   # cross-entropy only
    maps = json.loads((out / "attention_maps.json").read_text())
    assert set(maps) == {"early", "late"}
    for a in maps.values():
        rows = [sum(r) for r in a]
        assert all(abs(s - 1) < 1e-4 for s in rows) and all(0 <= x <= 1 + 1e-6 for r in a for x in r)
    t1 = pd.read_csv(out / "table.csv")
    assert (t1["source"] == "ours").sum() == 2 and (t1["source"] == "DMCAC Table 1").sum() == 2   # DMCAC-DeiT and DMCAC-ViT
    assert "full loss vs cross-entropy only" in res["claim"]
    return res


def test_dmcac_repro_smoke(run_notebook, results_checker, tmp_path):
    run_notebook("22_dmcac_repro.ipynb", TINY)
    res = _check_common(tmp_path / "out", results_checker)
    assert res["params"]["retrieval"] == "approximate" and res["sizes"]["database"] > 0
    assert not (tmp_path / "out" / "table2_betas.csv").exists()                     # sweeps are off by default


# CUB-200-2011 in its official layout: classes 1-100 train, 101-200 test. Class 3 has one image (no database item can
# share its class) and class 200 one test image (a query without a positive): both are stated exclusions.
CUB = {1: 10, 2: 10, 3: 1, 101: 5, 102: 5, 200: 1}
TINY_CUB = {**TINY, "dataset": "cub200", "data_kwargs": {}, "image_size": 32, "epochs": 1, "seeds": [0], "k": 2}


def test_dmcac_repro_cub_official_tree(run_notebook, results_checker, tmp_path):
    root = write_cub(tmp_path / "data", CUB)
    run_notebook("22_dmcac_repro.ipynb", {**TINY_CUB, "data_root": str(root)})
    res = _check_common(tmp_path / "out", results_checker, seeds=[0], epochs=1)
    p = res["params"]
    assert (p["views"], p["image_size"], p["database_fraction"]) == ("randaugment", 32, 0.2)   # the paper's protocol
    assert res["sizes"] == {"train": 21, "query_set": 17, "database": 4, "test": 11}   # 2 of 10 a class; 3: query
    assert res["exclusions"] == {"train classes absent from the database": 1, "test queries without a positive": 1}
    t1 = pd.read_csv(tmp_path / "out" / "table.csv")
    assert set(t1.loc[t1["source"] == "DMCAC Table 1", "R@1"]) == {78.4, 86.2}                     # CUB's own rows


@pytest.mark.slow
def test_dmcac_repro_cub_sweeps(run_notebook, results_checker, tmp_path):
    root = write_cub(tmp_path / "data", CUB)
    run_notebook("22_dmcac_repro.ipynb", {**TINY_CUB, "data_root": str(root), "run_sweeps": True, "sweep_epochs": 1,
                                          "sweep_views": [2, 3], "methods": ["dmcac"]})
    out = tmp_path / "out"
    t2, t3, t4 = (pd.read_csv(out / f"{n}.csv", index_col=0)
                  for n in ("table2_betas", "table3_views", "table4_retrieval"))
    assert len(t2) == 8 and len(t3) == 2 and len(t4) == 2
    for t in (t2, t3, t4):
        assert t["ours R@1"].between(0, 100).all()
    assert not t2.filter(like="paper").columns.size                                    # Table 2 is In-Shop: no CUB rows
    assert list(t3.filter(like="paper").columns) == ["paper cub200 DMCAC-DeiT R@1", "paper cub200 DMCAC-ViT R@1"]
    assert t3.loc["A=3", "paper cub200 DMCAC-ViT R@1"] == 86.0 and t3.loc["A=2"].filter(like="paper").isna().all()
    assert t4["database_share"].to_dict() == {"retrieval=approximate": 0.2, "retrieval=full": 0.1}   # Table 4: 90-10
    assert t4.loc["retrieval=full", "database"] == 2 and t4.loc["retrieval=approximate", "database"] == 4
    assert t4.loc["retrieval=full", "paper cub200 DMCAC-ViT R@1"] == 86.8
    assert "paper cars196" not in " ".join(t4.columns)                                # only this dataset's rows


@pytest.mark.slow
def test_dmcac_repro_full_retrieval(run_notebook, results_checker, tmp_path):
    run_notebook("22_dmcac_repro.ipynb", {**TINY, "epochs": 1, "seeds": [0], "retrieval": "full"})
    res = _check_common(tmp_path / "out", results_checker, seeds=[0], epochs=1)
    assert res["params"]["database_fraction"] == 0.1 and res["params"]["views"] == "affine"   # glyphs: CUB's FR share
