"""nbs/21_fggan_repro.ipynb on the one-spec route, with tiny overrides: the results schema (floor, fggan_s, fggan with
aggregation and Table 3 variants, health, claims), the notebook and `fgr-train` giving the same numbers for the same
seed, bad overrides failing before anything trains, and the CompCars path on the fixture tree."""
import json
import time

import papermill as pm
import pytest

from fgr_core.run import main

TINY = {"seeds": [0], "train.epochs": 3, "train.batch_size": 16, "data.n_chars": 2, "data.n_typefaces": 4,
        "data.per_class": 8, "data.image_size": 32, "model.image_backbone": "small_cnn", "model.pretrained": False,
        "model.image_kwargs": {}, "params.ablation_epochs": 1}
KINDS = ["mac", "spoc", "crow", "scda"]


def _metric(rec, label):
    "A run record's metric by label ('mAP@5', 'make:mAP@5', 'xc_dist/pixel_ratio'), in percent"
    for m in rec["metrics"]:
        if (f"{m['metric']}@{m['k']}" if m["k"] is not None else m["metric"]) == label: return m["value"]
    raise KeyError(label)


def test_fggan_repro_glyphs_schema_and_same_numbers_as_fgr_train(run_notebook, tmp_path):
    out = tmp_path / "nb"
    run_notebook("21_fggan_repro.ipynb", {"overrides": {**TINY, "train.out_dir": str(out), "params.ablation": True}})
    res = json.loads((out / "results.json").read_text())
    runs = {(r["method"], r["variant"], r["seed"]): r for r in res["runs"]}
    want = {("floor", None), ("fggan_s", None), ("fggan", None)} | {(m, k) for m in ("floor", "fggan_s", "fggan") for k in KINDS} \
        | {("fggan", v) for v in ("G", "GD", "GDNstar", "GDN", "GDNstarS", "GDNS")}
    assert {(m, v) for m, v, _ in runs} == want
    fg = runs[("fggan", None, 0)]
    assert fg["config"]["method_args"]["g_pretrain_epochs"] == 2 and fg["config"]["train"]["epochs"] == 3
    assert fg["health"]["s"]["chance"] == pytest.approx(2 * __import__("math").log(4))   # (1 + s_weight_xz) ln C
    assert {"g_pix", "s"} <= set(fg["health"])          # the harness reads the terms of epoch 0 (the G stage)
    assert runs[("fggan", "crow", 0)]["config"]["method_args"]["aggregation"] == "crow"
    assert _metric(runs[("floor", None, 0)], "xc_dist/pixel_ratio") == pytest.approx(100.0)   # no G: x_z = x_r
    assert _metric(fg, "xc_dist/pixel_ratio") < 100                                           # G moved x_r towards x_c
    assert runs[("fggan", "GD", 0)]["config"]["train"]["epochs"] == 1
    claims = {(c["a"], c["b"], c["variant_a"]): c for c in res["claims"]}
    assert ("fggan", "fggan_s", None) in claims and ("fggan", "fggan_s", "scda") in claims
    assert all(c["verdict"] for c in res["claims"]) and all(c["n_seeds"] == 1 for c in res["claims"])
    for f in ("figure5", "training_curves", "retrieval_gallery"): assert (out / "figures" / f"{f}.png").is_file()
    # fgr-train, same config, overrides and seed: the same numbers
    sets = [f"{k}={json.dumps(v)}" for k, v in {**TINY, "train.out_dir": str(tmp_path / "cli"), "methods": ["fggan"]}.items()]
    assert main(["--config", "fggan_glyphs"] + sum([["--set", s] for s in sets], [])) == 0
    cli = json.loads((tmp_path / "cli" / "fggan_seed0" / "metrics.json").read_text())["metrics"]
    for label in ("mAP@5", "P@10", "xc_dist/pixel_ratio"):
        assert _metric(fg, label) == pytest.approx(100 * cli[label], abs=1e-6)
    assert _metric(runs[("fggan", "mac", 0)], "mAP@5") == pytest.approx(100 * cli["mac/mAP@5"], abs=1e-6)


@pytest.mark.parametrize("bad, named", [({"method_args.fggan.lamda": 1.0}, "lamda"), ({"data.n_charz": 4}, "n_charz"),
                                        ({"params.ablaton": True}, "ablaton")])
def test_bad_override_fails_before_training(tmp_path, bad, named):
    t = time.time()
    with pytest.raises(pm.PapermillExecutionError, match=named):
        pm.execute_notebook("nbs/21_fggan_repro.ipynb", str(tmp_path / "o.ipynb"), cwd="nbs", kernel_name="python3",
                            parameters={"overrides": {**TINY, **bad, "train.out_dir": str(tmp_path / "r")}}, progress_bar=False)
    assert time.time() - t < 120 and not (tmp_path / "r" / "fggan_seed0").exists()


def test_fggan_repro_compcars_fixture(run_notebook, tmp_path):
    from official_fixtures import write_compcars
    write_compcars(tmp_path / "data")
    out = tmp_path / "out"
    tf = {"kind": "center_crop", "size": 16}
    run_notebook("21_fggan_repro.ipynb", {"dataset": "compcars", "data_root": str(tmp_path / "data"), "overrides": {
        "seeds": [0], "eval.ks": [1, 2, 4], "train.epochs": 2, "train.batch_size": 8, "train.device": "cpu", "train.amp": "off",
        "model.image_backbone": "small_cnn", "model.pretrained": False, "data.train_transform": tf, "data.eval_transform": tf,
        "train.out_dir": str(out)}})
    res = json.loads((out / "results.json").read_text())
    assert res["dataset"] == "compcars" and res["split_sizes"]["ours (as read)"] == {
        "training images (database)": 13, "test images (queries)": 11, "car models": 5}
    fg = next(r for r in res["runs"] if r["method"] == "fggan" and r["variant"] is None)
    assert fg["config"]["method_args"]["paper_faithful"] is True and fg["config"]["method_args"]["canonical_view"] == "front"
    assert 0 <= _metric(fg, "make:mAP@2") <= 100 and 0 <= _metric(fg, "mAP@2") <= 100   # Tables 1-3 and Table 7 criteria
    assert {r["table"] for r in res["paper_rows"]} == {1, 7}
