"""Papermill smoke runs of nbs/21_fggan_repro.ipynb with tiny parameters: the shared results schema, every baseline
and FGGAN row, the Table 3 ablation, the open set."""
import json

import pandas as pd

TINY = dict(data_kwargs={"n_chars": 2, "n_typefaces": 2, "per_class": 6}, image_size=32, epochs=1, epochs_ablation=1, batch_size=8,
            image_backbone="small_cnn", pretrained=False, embed_dim=32, ks=[1, 2, 4], ablation=True, open_set=False, device="cpu")
METRICS = [f"mAP@{k}" for k in (1, 2, 4)] + [f"P@{k}" for k in (1, 2, 4)]
BASELINES = ["Backbone", "Backbone+ft", "MAC+ft", "Sum pooling+ft", "CroW+ft", "SCDA+ft"]


def test_fggan_repro_smoke(run_notebook, results_checker, tmp_path):
    out = tmp_path / "out"
    run_notebook("21_fggan_repro.ipynb", {**TINY, "out_dir": str(out)})
    rows = BASELINES + ["FGGAN", "FGGAN+MAC", "FGGAN+Sum pooling", "FGGAN+CroW", "FGGAN+SCDA"]
    res = results_checker(out, "fggan", rows, [0], METRICS, ["figure5", "training_curves", "retrieval_gallery"])
    assert res["params"]["methods"] == ["offshelf", "finetuned", "fggan"] and len(res["runs"]) == len(rows)
    assert res["setting"] == "closed-set" and res["sizes"]["train_classes"] == 4 and "FGGAN vs Backbone+ft" in res["claim"]
    for name in ("finetuned", "fggan"):
        hist = json.loads((out / f"{name}_seed0" / "history.json").read_text())
        assert len(hist["eval"]) == 1                                    # the Trainer's eval_fn, once at the end
    abl = pd.read_csv(out / "ablations.csv")
    assert set(abl["method"]) == {"CAE (G)", "DCGAN (GD)", "FGGAN GDN*", "FGGAN GDN", "FGGAN GDN*S", "FGGAN GDNS"}
    assert abl[METRICS].apply(lambda c: c.between(0, 100)).all().all()


def test_fggan_repro_open_set_smoke(run_notebook, results_checker, tmp_path):
    out = tmp_path / "out"
    run_notebook("21_fggan_repro.ipynb", {**TINY, "ablation": False, "open_set": True, "aggregation": "crow", "out_dir": str(out)})
    res = results_checker(out, "fggan", BASELINES + ["FGGAN+CroW"], [0], METRICS, ["figure5"])
    assert res["setting"] == "open-set" and res["sizes"]["train_classes"] == 2   # one of two typefaces x two characters
    assert {r["method"] for r in res["runs"]} == set(BASELINES) | {"FGGAN+CroW"} and res["claim"] is None
