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
    res = results_checker(out, "fggan", BASELINES + ["FGGAN+CroW"], [0], METRICS, ["figure4", "figure5"])
    assert res["setting"] == "open-set" and res["sizes"]["train_classes"] == 2   # one of two typefaces x two characters
    assert res["open_set"]["years"] == [1] and res["open_set"]["excluded"] == {"1": 0}   # typeface 2 is the one "year"
    assert {r["method"] for r in res["runs"]} == set(BASELINES) | {"FGGAN+CroW"} and res["claim"] is None


# The real-data path: the notebook on a CompCars tree in the official format (tests/official_fixtures.py).
CC = dict(dataset="compcars", canonical_view="front", image_size=16, epochs=1, batch_size=8, image_backbone="small_cnn",
          pretrained=False, embed_dim=16, ks=[1, 2, 4], ablation=False, device="cpu", aggregation="fc")


def test_fggan_repro_compcars_closed_set(run_notebook, results_checker, tmp_path):
    from official_fixtures import write_compcars
    write_compcars(tmp_path / "data")
    out = tmp_path / "out"
    run_notebook("21_fggan_repro.ipynb", {**CC, "data_root": str(tmp_path / "data"), "out_dir": str(out)})
    rows = BASELINES + ["FGGAN"]
    res = results_checker(out, "fggan", rows, [0], METRICS, ["figure5", "training_curves", "retrieval_gallery"])
    assert res["dataset"] == "compcars" and res["setting"] == "closed-set" and res["relevance"] == "shared_label"
    assert res["sizes"] == {"train_classes": 5, "fit": 13, "gallery": 13, "queries": 11}   # the lists, one label space
    sizes = {"training images (database)": 13, "test images (queries)": 11, "car models": 5}
    assert res["split_sizes"]["ours (as read)"] == sizes                                    # beside §4.2's 30,730 / 11,119
    shown = {(r["table"], r["setting"]) for r in res["paper_rows"]}
    assert {(1, "closed-set"), (5, "canonical view=front"), (6, "reconstruction at conv4")} == shown   # Tables 1, 5, 6
    other = pd.read_csv(out / "table_other_relevance.csv")
    assert set(other["source"]) == {"ours", "FGGAN Table 7"}
    assert other[other.source == "ours"]["mAP@1"].between(0, 100).all()


def test_fggan_repro_compcars_open_set_paper_faithful(run_notebook, results_checker, tmp_path):
    from official_fixtures import write_compcars
    write_compcars(tmp_path / "data")
    out = tmp_path / "out"
    run_notebook("21_fggan_repro.ipynb", {**CC, "data_root": str(tmp_path / "data"), "out_dir": str(out),
                                          "open_set": True, "paper_faithful": True, "epochs": 2,
                                          "methods": ["finetuned", "fggan"]})
    res = results_checker(out, "fggan", ["Backbone+ft", "FGGAN"], [0], METRICS, ["figure4", "figure5"])
    assert res["setting"] == "open-set" and res["paper_rows"] == []            # Fig. 4 prints no numbers
    assert res["sizes"]["train_classes"] == 3 and res["sizes"]["fit"] == 5       # the cars made before 2010
    assert res["open_set"]["years"] == [2010, 2011, 2012, 2013, 2014] and res["open_set"]["excluded"]["2011"] == 1
    years = pd.read_csv(out / "open_set_years.csv")
    for m in ("Backbone+ft", "FGGAN"):
        d = years[years.method == m]
        assert d["year"].tolist() == res["open_set"]["years"]
        assert abs(d["mAP@2"].mean() - res["summary"][m]["mAP@2"]["mean"]) < 1e-6     # the table is the mean over years
    hist = json.loads((out / "fggan_seed0" / "history.json").read_text())
    assert {"d", "g"}.isdisjoint(hist["train"][0]) and {"d", "g"} <= set(hist["train"][1])   # epoch 0 trains S alone
