"""Papermill smoke run of nbs/21_fggan_repro.ipynb with tiny parameters: files written, numbers finite and in range."""
import json
import math

import pandas as pd

TINY = dict(n_chars=2, n_typefaces=2, per_class=6, image_size=32, epochs=1, epochs_ablation=1, batch_size=8,
            backbone="small_cnn", pretrained=False, ks=[1, 2, 4], ablation=True, open_set=False)


def _check_outputs(out):
    res = json.loads((out / "results.json").read_text())
    assert {"params", "rows", "seconds", "setting"} <= set(res)
    rows = pd.read_csv(out / "results.csv")
    assert set(rows.columns) == {"part", "method", "seed", "metric", "value"}
    assert rows["value"].map(math.isfinite).all()
    assert rows["value"].between(0, 1).all()
    methods = set(rows.loc[rows.part == "main", "method"])
    assert {"Backbone", "Backbone+ft", "MAC+ft", "Sum pooling+ft", "CroW+ft", "SCDA+ft", "FGGAN", "FGGAN+MAC",
            "FGGAN+Sum pooling", "FGGAN+CroW", "FGGAN+SCDA"} <= methods
    assert {f"mAP@{k}" for k in (1, 2, 4)} | {f"P@{k}" for k in (1, 2, 4)} <= set(rows.metric)
    assert (out / "figure5.png").stat().st_size > 0
    assert (out / "fggan" / "log.csv").is_file()
    return res, rows


def test_fggan_repro_smoke(run_notebook, tmp_path):
    out = tmp_path / "out"
    run_notebook("21_fggan_repro.ipynb", {**TINY, "out_dir": str(out)})
    res, rows = _check_outputs(out)
    abl = set(rows.loc[rows.part == "ablation", "method"])
    assert abl == {"CAE (G)", "DCGAN (GD)", "FGGAN GDN*", "FGGAN GDN", "FGGAN GDN*S", "FGGAN GDNS"}
    assert res["setting"] == "closed-set" and res["n_train_classes"] == 4


def test_fggan_repro_open_set_smoke(run_notebook, tmp_path):
    out = tmp_path / "out"
    run_notebook("21_fggan_repro.ipynb", {**TINY, "ablation": False, "open_set": True, "aggregation": "crow", "out_dir": str(out)})
    res = json.loads((out / "results.json").read_text())
    assert res["setting"] == "open-set" and res["n_train_classes"] == 2   # one of two typefaces x two characters
    main = pd.read_csv(out / "results.csv")
    assert set(main.method) == {"Backbone", "Backbone+ft", "MAC+ft", "Sum pooling+ft", "CroW+ft", "SCDA+ft", "FGGAN+CroW"}
