"""nbs/24_fgan_repro.ipynb through papermill with tiny overrides: the one-spec route (config + overrides), the floor,
runs recorded split by retrieval mode, health, claims; the notebook route and fgr-train give the same metrics."""
import json
import math
import time

import pandas as pd
import pytest

from fgr_core.run import main as fgr_train

TINY = {"model.image_backbone": "small_cnn", "model.pretrained": False, "model.image_kwargs": {"width": 8, "image_size": 32},
        "model.text_encoder": "gru", "model.text_kwargs": {"dim": 16, "embed_dim": 8}, "model.train_text": True,
        "model.embed_dim": 16, "method_args.fgan.image_size": 32, "method_args.fgan.max_words": 12,
        "method_args.fgan.n_samples": 10, "method_args.fgan.pseudo_size": 32,
        "data.n_chars": 4, "data.n_typefaces": 3, "data.per_class": 6, "data.image_size": 32,
        "train.epochs": 2, "train.batch_size": 12, "data.m": 2, "train.warmup_steps": 2, "train.device": "cpu",
        "seeds": [0], "params.n_show": 2}
MODES = ("RE", "LD", "JR")


def _over(tmp_path, **more):
    return {**TINY, "data.cache_dir": str(tmp_path / "glyph_cache"), "train.out_dir": str(tmp_path / "out"), **more}


def _check(out, seeds=(0,), variants=()):
    res = json.loads((out / "results.json").read_text())
    assert res["paper"] == "fgan" and res["dataset"] == "glyphs" and res["seconds"] > 0
    runs = {(r["method"], r["variant"], r["seed"]): r for r in res["runs"]}
    assert {("floor", None, s) for s in seeds} | {("fgan", None, s) for s in seeds} | {("fgan", v, seeds[0]) for v in variants} == set(runs)
    for r in res["runs"]:
        by = {(m["metric"], m["k"], m["split"]): m["value"] for m in r["metrics"]}
        assert {s for _, _, s in by} == set(MODES)                                          # split by retrieval mode
        for mode in MODES:
            avg, i2t, t2i = (by[(f"{d} mAP@all", None, mode)] for d in ("Avg", "I2T", "T2I"))
            assert 0 <= avg <= 100 and math.isclose(avg, (i2t + t2i) / 2, abs_tol=1e-9)
            assert 0 <= by[("Avg Prec", 100, mode)] <= 100
    trained = runs[("fgan", None, seeds[0])]
    assert {"loss", "apn", "aps", "align", "vae", "kl"} <= set(trained["health"])
    assert trained["health"]["apn"]["chance"] == pytest.approx(0.5)                         # FGCL's hinge at m1
    assert trained["config"]["method_args"]["seed"] == seeds[0] and trained["train_seconds"] > 0
    floor_claims = {c["metric"]: c for c in res["claims"] if c["b"] == "floor"}
    assert set(floor_claims) == {f"Avg mAP@all ({m})" for m in MODES} and all(c["a"] == "fgan" for c in floor_claims.values())
    modes = {(c["metric"], c["metric_b"]) for c in res["claims"] if c["b"] == "fgan"}          # Table 4: JR > RE > LD
    assert modes == {("Avg mAP@all (JR)", "Avg mAP@all (RE)"), ("Avg mAP@all (RE)", "Avg mAP@all (LD)")}
    assert all(c["verdict"] for c in res["claims"])
    assert res["unseen_classes"]["0"] and 0 < res["chance_map"] < 1
    table = pd.read_csv(out / "table.csv")
    assert {f"fgan_{m}" for m in MODES} | {f"floor_{m}" for m in MODES} <= set(table[table["source"] == "ours"]["method"])
    assert (table["source"] == "FGAN Table 1").sum() == 3                                  # paper's Pascal Sentence rows
    for f in ("training_loss", "saliency", "tsne", "top5_t2i"):
        assert (out / "figures" / f"{f}.png").stat().st_size > 0
    return res


def test_fgan_repro_smoke(run_notebook, tmp_path):
    run_notebook("24_fgan_repro.ipynb", {"overrides": _over(tmp_path)})
    res = _check(tmp_path / "out")
    assert res["params"]["ablations"] is False


def test_notebook_and_fgr_train_give_the_same_metrics(run_notebook, tmp_path):
    run_notebook("24_fgan_repro.ipynb", {"overrides": _over(tmp_path)})
    nb = json.loads((tmp_path / "out" / "fgan_seed0" / "metrics.json").read_text())["metrics"]
    cli_out = tmp_path / "cli"
    args = ["--config", "fgan_glyphs", "--out-dir", str(cli_out)]
    for k, v in _over(tmp_path).items():
        if k.startswith("params.") or k == "train.out_dir": continue
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert fgr_train(args) == 0
    cli = json.loads((cli_out / "fgan_seed0" / "metrics.json").read_text())["metrics"]
    assert cli.keys() == nb.keys() and all(math.isclose(cli[k], nb[k], abs_tol=1e-9) for k in nb), (cli, nb)


def test_bad_override_fails_before_training(run_notebook, tmp_path):
    import papermill as pm
    for bad, key in (({"method_args.fgan.m11": 0.3}, "m11"), ({"data.n_charz": 4}, "n_charz"), ({"params.ablation": True}, "ablation")):
        t = time.time()
        with pytest.raises(pm.PapermillExecutionError, match=key):
            run_notebook("24_fgan_repro.ipynb", {"overrides": _over(tmp_path, **bad)})
        assert time.time() - t < 120


@pytest.mark.slow
def test_fgan_repro_ablations_are_variants(run_notebook, tmp_path):
    over = _over(tmp_path, **{"train.epochs": 1, "params.ablations": True, "params.sweep_margins": [0.3],
                              "params.sweep_image_ratios": [0.2], "params.sweep_text_ratios": [0.5]})
    run_notebook("24_fgan_repro.ipynb", {"overrides": over})
    variants = ["no_fgla", "no_fgcl", "gap_regions", "random_regions", "linear_ld", "no_aps", "all_triplets", "pairwise_loss",
                "classification_loss", "random_pseudo_labels", "onehot_pseudo_labels", "word_embedding_labels",
                "m1=0.3", "m2=0.3", "image_ratio=0.2", "text_ratio=0.5"]
    _check(tmp_path / "out", variants=variants)
    assert (tmp_path / "out" / "figures" / "fig4_sweeps.png").is_file()
