"""Papermill runs of nbs/22_dmcac_repro.ipynb on the one-spec route with tiny overrides: the results schema (floor,
both methods per seed, health next to chance, the claim judged once), the notebook and `fgr-train` giving the same
metrics for the same seed, on the glyphs and on a tiny CUB-200-2011 tree in the official format."""
import json

import pytest

from fgr_core.run import main
from official_fixtures import write_cub

TINY = {"model.image_backbone": "small_cnn", "model.pretrained": False, "model.image_kwargs": {}, "model.k": 2, "model.A": 3,
        "data.n_chars": 4, "data.n_typefaces": 3, "data.per_class": 6, "data.image_size": 32, "train.epochs": 1,
        "train.batch_size": 8, "train.device": "cpu", "seeds": [0], "params.attention_classes": 3, "params.gallery_queries": 2}
FIGURES = ["training_curves", "tsne", "retrieval_gallery", "figure3_attention"]


def _check(out, seeds):
    res = json.loads((out / "results.json").read_text())
    assert res["paper"] == "dmcac" and res["config"]["methods"] == ["dmcac_ce", "dmcac"]
    runs = {(r["method"], r["seed"]): r for r in res["runs"]}
    assert ("floor", seeds[0]) in runs and {(m, s) for m in ("dmcac_ce", "dmcac") for s in seeds} <= set(runs)
    for (m, s), r in runs.items():
        assert {x["metric"] for x in r["metrics"]} >= {"R"} and all(0 <= x["value"] <= 100 for x in r["metrics"])
        if m == "floor": continue
        assert r["config"]["method"] == m and r["config"]["seed"] == s
        terms = {"dmcac_ce": {"loss", "ce"}, "dmcac": {"loss", "frob", "ce", "cac"}}[m]
        assert set(r["health"]) == terms
        A, C = r["config"]["method_args"]["A"], res["sizes"]["train"]["classes"]
        for t in ("ce", "cac"):
            if t in terms: assert abs(r["health"][t]["chance"] - A * __import__("math").log(C)) < 1e-6   # A ln c
    (claim,) = res["claims"]
    assert (claim["a"], claim["b"], claim["metric"]) == ("dmcac", "dmcac_ce", "R@1") and claim["verdict"]
    for f in FIGURES: assert (out / "figures" / f"{f}.png").is_file()
    return res


@pytest.mark.slow
def test_dmcac_repro_glyphs_and_same_numbers_as_fgr_train(run_notebook, tmp_path):
    out = tmp_path / "nb"
    run_notebook("22_dmcac_repro.ipynb", {"overrides": {**TINY, "train.out_dir": str(out)}}, timeout=600)
    res = _check(out, [0])
    cli = tmp_path / "cli"
    assert main(["--config", "dmcac_glyphs", *[f"--set={k}={json.dumps(v)}" for k, v in TINY.items()], "--out-dir", str(cli)]) == 0
    for m in ("dmcac_ce", "dmcac"):
        got = json.loads((cli / f"{m}_seed0" / "metrics.json").read_text())["metrics"]
        nb = {x["metric"] + (f"@{x['k']}" if x["k"] is not None else ""): x["value"] for r in res["runs"] if r["method"] == m for x in r["metrics"]}
        assert {k: round(100 * v, 6) for k, v in got.items()} == {k: round(v, 6) for k, v in nb.items()}, m


@pytest.mark.slow
def test_dmcac_repro_cub_official_tree(run_notebook, tmp_path):
    root = write_cub(tmp_path / "data", {1: 10, 2: 10, 101: 5, 102: 5})
    ov = {k: v for k, v in TINY.items() if not k.startswith("data.n_") and k != "data.per_class" and k != "data.image_size"}
    ov |= {"model.crop_size": 32, "data.train_transform": {"kind": "center_crop", "size": 32},
           "data.eval_transform": {"kind": "center_crop", "size": 32}, "train.out_dir": str(tmp_path / "out")}
    run_notebook("22_dmcac_repro.ipynb", {"dataset": "cub200", "data_root": str(root), "overrides": ov}, timeout=600)
    res = _check(tmp_path / "out", [0])
    assert res["config"]["model"]["views"] == "randaugment"                          # §4.2's query views on benchmarks
