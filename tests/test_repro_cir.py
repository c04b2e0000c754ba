"""nbs/23_cir_repro.ipynb on the one-spec route (issue 25): papermill runs with tiny overrides write results.json in
the shared schema (floor, runs with health, variants, judged claims); the notebook and `fgr-train` give the same
metrics for the same seed, on glyphs and on the FashionIQ fixture tree; bad overrides fail before training."""
import json
import math
import time

import pytest

from fgr_core.run import main as fgr_train

TINY = {"data.n_chars": 4, "data.n_typefaces": 3, "data.per_class": 4, "data.image_size": 32, "data.n_triplets": 48,
        "model.image_backbone": "small_cnn", "model.pretrained": False, "model.freeze_image": False,
        "model.image_kwargs": {"width": 8}, "model.map_dim": 0, "model.text_encoder": "gru", "model.train_text": True,
        "model.text_kwargs": {"dim": 16}, "model.embed_dim": 16, "model.compositor": "tirg",
        "train.epochs": 2, "train.batch_size": 16, "train.device": "cpu", "seeds": [0], "eval.ks": [1, 10, 50]}


def _over(tmp_path, **extra):
    return {**TINY, "data.cache_dir": str(tmp_path / "glyph_cache"), "train.out_dir": str(tmp_path / "out"), **extra}


def _metrics(rec):
    return {(m["metric"] + (f"@{m['k']}" if m["k"] is not None else "") + (f" ({m['split']})" if m["split"] else "")): m["value"]
            for m in rec["metrics"]}


def test_cir_repro_glyphs(run_notebook, tmp_path):
    "The glyph config through the notebook: floor, both methods, the 3a variants, health and the claims"
    run_notebook("23_cir_repro.ipynb", {"overrides": _over(tmp_path, **{"params.ablations": ["3a"]})})
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    runs = {(r["method"], r["variant"], r["seed"]): r for r in res["runs"]}
    assert ("floor", None, 0) in runs and ("cir_baseline", None, 0) in runs and ("cir_uncertainty", None, 0) in runs
    assert {v for m, v, s in runs if v} == {"dropout_0.2", "dropout_0.5", "augment_source", "only_L_u"}
    for r in res["runs"]:
        m = _metrics(r)
        assert all(math.isfinite(v) and 0 <= v <= 100 for v in m.values())
        assert m["R@1"] <= m["R@10"] <= m["R@50"]                             # Recall@K grows with K
    base = runs[("cir_baseline", None, 0)]
    assert base["health"]["L_info"]["chance"] == pytest.approx(math.log(16))   # a batch of 16: 16-way InfoNCE
    assert base["config"]["method_args"]["reference"] == "code"
    ours = runs[("cir_uncertainty", None, 0)]
    assert ours["health"]["gamma"]["first"] == 1.0 and ours["health"]["gamma"]["last"] == pytest.approx(math.exp(-1 / 2))
    assert runs[("cir_baseline", "dropout_0.5", 0)]["config"]["method_args"]["text_dropout"] == 0.5
    claims = {c["statement"]: c for c in res["claims"]}
    assert len(claims) == 4 and all(c["verdict"] != "not run" for c in claims.values())
    main = claims["CIR-UR beats the InfoNCE baseline at Recall@50 (Shoes: 76.46 -> 79.84)"]
    assert main["n_seeds"] == 1 and main["verdict"].startswith(("indicative", "inconclusive"))   # one seed
    assert claims["CIR-UR beats dropout on the text features (Table 3a)"]["n_seeds"] == 1
    assert res["key_figure"] == "training_loss.png"
    for f in ("training_loss", "top5_cir_baseline", "top5_cir_uncertainty"):
        assert (tmp_path / "out" / "figures" / f"{f}.png").stat().st_size > 0


def test_notebook_and_cli_agree_on_glyphs(run_notebook, tmp_path):
    "The same config and seed give the same metrics through the notebook and through fgr-train"
    over = _over(tmp_path, **{"params.ablations": [], "methods": ["cir_uncertainty"]})
    run_notebook("23_cir_repro.ipynb", {"overrides": over})
    nb = next(r for r in json.loads((tmp_path / "out" / "results.json").read_text())["runs"] if r["method"] == "cir_uncertainty")
    cli_out = tmp_path / "cli"
    sets = [f"{k}={json.dumps(v)}" for k, v in {**over, "train.out_dir": str(cli_out)}.items() if not k.startswith("params.")]
    assert fgr_train(["--config", "cir_glyphs", *sum((["--set", s] for s in sets), [])]) == 0
    cli = json.loads((cli_out / "cir_uncertainty_seed0" / "metrics.json").read_text())["metrics"]
    assert _metrics(nb) == pytest.approx({k: 100 * v for k, v in cli.items()}, abs=1e-9)


FIQ = {"model.image_backbone": "small_cnn", "model.pretrained": False, "model.image_kwargs": {"width": 8},
       "model.input_size": 16, "model.text_encoder": "gru", "model.text_kwargs": {"dim": 8}, "model.embed_dim": 8,
       "model.compositor": "tirg", "model.layer4_stride": 2, "train.epochs": 2, "train.batch_size": 4,
       "train.warmup_epochs": 0, "train.milestones": [], "train.device": "cpu", "train.amp": "off", "seeds": [0],
       "eval.ks": [1, 2], "data.train_transform": {"kind": "resize", "size": 16},
       "data.eval_transform": {"kind": "resize", "size": 16}}


def test_cir_repro_fashioniq_fixture(run_notebook, tmp_path):
    "Table 1 on the official-format FashionIQ tree: joint training, each category on its own gallery, the mean"
    from official_fixtures import write_fashioniq
    write_fashioniq(tmp_path)
    over = {**FIQ, "train.out_dir": str(tmp_path / "out"), "params.ablations": [], "methods": ["cir_uncertainty"]}
    run_notebook("23_cir_repro.ipynb", {"dataset": "fashioniq", "data_root": str(tmp_path), "overrides": over})
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    cats = ["dress", "shirt", "toptee"]
    for r in res["runs"]:
        m = _metrics(r)
        for k in ("R@1", "R@2"):
            assert m[k] == pytest.approx(sum(m[f"{k} ({c})"] for c in cats) / 3)
        assert m["coarse_R@2"] == pytest.approx(sum(m[f"coarse_R@2 ({c})"] for c in cats) / 3)
    assert res["queries"] == {c: {"queries": 2, "coarse": 1} for c in cats}
    nb = next(r for r in res["runs"] if r["method"] == "cir_uncertainty")
    cli_out = tmp_path / "cli"
    sets = [f"{k}={json.dumps(v)}" for k, v in {**over, "train.out_dir": str(cli_out), "data.root": str(tmp_path)}.items()
            if not k.startswith("params.")]
    assert fgr_train(["--config", "cir_fashioniq", *sum((["--set", s] for s in sets), [])]) == 0
    cli = json.loads((cli_out / "cir_uncertainty_seed0" / "metrics.json").read_text())["metrics"]
    assert _metrics(nb) == pytest.approx({(k.split("/")[1] + f" ({k.split('/')[0]})" if "/" in k else k): 100 * v
                                          for k, v in cli.items()}, abs=1e-9)


@pytest.mark.parametrize("bad,says", [({"method_args.cir_uncertainty.gama0": 2}, "gamma0"),
                                      ({"data.n_charz": 4}, "n_chars"), ({"params.ablation": ["3a"]}, "ablations"),
                                      ({"params.ablations": ["3e"]}, "3a")])
def test_bad_override_fails_fast(run_notebook, tmp_path, bad, says):
    "A typo fails within seconds, before anything trains, naming the key and what is accepted"
    import papermill as pm
    t0 = time.time()
    with pytest.raises(pm.PapermillExecutionError, match=says):
        run_notebook("23_cir_repro.ipynb", {"overrides": {**_over(tmp_path), **bad}})
    assert time.time() - t0 < 120 and not (tmp_path / "out" / "cir_baseline_seed0").exists()
