"""Papermill smoke run of nbs/20_gapan_repro.ipynb with tiny parameters: files written, numbers finite and in range."""
import json, math

import pandas as pd
import pytest

SMOKE = dict(backbone="small_cnn", pretrained=False, image_size=32, glyph_chars=4, glyph_typefaces=3, glyph_per_class=6,
             embedding_dim=16, epochs=1, batch_size=12, m_per_class=3, seeds=[0, 1],
             methods=["norm_softmax", "proxy_anchor", "gapan"], method_args={"gapan": {"flow_depth": 2, "flow_hidden": 16}},
             eval_batch_size=64, tsne_points=36, anchor_classes=3, gallery_queries=2, device="cpu")


@pytest.mark.slow
def test_gapan_repro_smoke(run_notebook, tmp_path):
    run_notebook("20_gapan_repro.ipynb", SMOKE, timeout=300)
    out = tmp_path / "out"
    for f in ("metrics.json", "results_table.csv", "training_curves.png", "tsne.png", "anchors.png", "retrieval_gallery.png"):
        assert (out / f).is_file(), f"missing {f}"
    m = json.loads((out / "metrics.json").read_text())
    assert m["methods"] == SMOKE["methods"]
    assert [r["method"] for r in m["runs"]].count("imagenet_features") == 1      # the untrained reference row
    assert len(m["runs"]) == len(SMOKE["methods"]) * len(SMOKE["seeds"]) + 1
    for run in m["runs"]:
        for k in ("R@1", "R@2", "R@4", "R@8", "mAP@R"):
            assert math.isfinite(run[k]) and 0.0 <= run[k] <= 1.0, (run["method"], k, run[k])
        assert run["R@1"] <= run["R@2"] <= run["R@4"] <= run["R@8"]
    for meth, vals in m["mean_percent"].items():
        assert all(math.isfinite(v) and 0 <= v <= 100 for v in vals.values()), meth
    table = pd.read_csv(out / "results_table.csv")
    assert list(table.columns[:2]) == ["source", "method"] and len(table) == len(SMOKE["methods"]) + 1
    assert table[table["method"].isin(SMOKE["methods"])]["R@1"].str.contains("±").all()   # two seeds -> mean ± std
    for meth in SMOKE["methods"]:
        assert (out / f"{meth}_seed0" / "log.csv").is_file()
