"""Papermill runs of nbs/20_gapan_repro.ipynb on the one-spec route with tiny overrides: floor, the compared methods
and both ablations (variants) per seed with health and claims; the notebook and `fgr-train` give the same metrics."""
import json

import pytest

from fgr_core.run import main

TINY = {"model.image_backbone": "small_cnn", "model.pretrained": False, "model.image_kwargs": {}, "model.embed_dim": 16,
        "data.n_chars": 4, "data.n_typefaces": 3, "data.per_class": 6, "data.image_size": 32, "data.m": 3,
        "train.epochs": 1, "train.batch_size": 12, "train.device": "cpu", "seeds": [0, 1],
        "method_args.gapan.flow_hidden": 16, "method_args.gapan.flow_depth": 2, "method_args.gapan_no_flow.flow_hidden": 16,
        "method_args.gapan_no_sampling.flow_hidden": 16, "method_args.gapan_no_sampling.flow_depth": 2,
        "params.tsne_points": 36, "params.anchor_classes": 3, "params.gallery_queries": 2}


@pytest.mark.slow
def test_gapan_repro_runs_floor_methods_ablations_and_matches_fgr_train(run_notebook, tmp_path):
    out = tmp_path / "nb"
    run_notebook("20_gapan_repro.ipynb", {"overrides": {**TINY, "train.out_dir": str(out)}}, timeout=600)
    res = json.loads((out / "results.json").read_text())
    runs = {(r["method"], r["variant"], r["seed"]): r for r in res["runs"]}
    want = {("floor", None, 0)} | {(m, None, s) for m in ("norm_softmax", "gapan") for s in (0, 1)} | \
           {(m, v, s) for m, v in (("gapan_no_flow", "no_flow"), ("gapan_no_sampling", "no_sampling")) for s in (0, 1)}
    assert set(runs) == want
    C = res["sizes"]["train"]["classes"]
    assert abs(runs[("norm_softmax", None, 0)]["health"]["loss"]["chance"] - __import__("math").log(C)) < 1e-6
    assert runs[("gapan", None, 0)]["health"]["align"]["chance"] > 0 and runs[("gapan", None, 0)]["health"]["nll"]["chance"] is None
    assert {(c["b"], c["variant_b"]) for c in res["claims"]} == {("norm_softmax", None), ("gapan_no_flow", "no_flow"),
                                                                 ("gapan_no_sampling", "no_sampling")}
    assert all(c["n_seeds"] == 2 for c in res["claims"])
    for f in ("training_curves", "tsne", "anchors", "retrieval_gallery"): assert (out / "figures" / f"{f}.png").is_file()
    cli = tmp_path / "cli"
    sets = {**TINY, "seeds": [1]}
    assert main(["--config", "gapan_glyphs", *[f"--set={k}={json.dumps(v)}" for k, v in sets.items()], "--out-dir", str(cli)]) == 0
    for m in ("norm_softmax", "gapan"):
        got = json.loads((cli / f"{m}_seed1" / "metrics.json").read_text())["metrics"]
        nb = {x["metric"] + (f"@{x['k']}" if x["k"] is not None else ""): x["value"] for x in runs[(m, None, 1)]["metrics"]}
        assert {k: round(100 * v, 6) for k, v in got.items()} == {k: round(v, 6) for k, v in nb.items()}, m
