"""Papermill smoke runs of nbs/24_fgan_repro.ipynb with tiny parameters: files written, numbers finite and in range."""
import json
import math

import pandas as pd
import pytest

TINY = dict(data_kwargs={"n_chars": 4, "n_typefaces": 3, "per_class": 8, "image_size": 32},
            image_backbone="small_cnn", pretrained=False, image_kwargs={"width": 8}, image_size=32,
            text_encoder="gru", text_kwargs={"dim": 16, "embed_dim": 8}, max_words=12, embed_dim=16, n_samples=10,
            pseudo_size=32, epochs=2, batch_size=12, m_per_class=2, lr=1e-3, warmup_steps=2, query_fraction=0.3,
            seeds=[0], n_show=2, device="cpu")
MODES, DIRS = ("RE", "LD", "JR"), ("I2T", "T2I", "Avg")


def _params(tmp_path, **over):
    p = {**TINY, **over}
    p["data_kwargs"] = {**p["data_kwargs"], "cache_dir": str(tmp_path / "glyph_cache")}
    return p


def _check(out, check, epochs=2):
    rows = [f"FGAN_{m}" for m in MODES]
    res = check(out, "fgan", rows, [0], [*DIRS, *(f"{d} Prec@100" for d in DIRS)], ["training_loss", "saliency", "tsne", "top5_t2i"])
    assert res["params"]["methods"] == ["fgan"]
    assert res["sizes"]["seen_classes"] == 6 and res["sizes"]["unseen_classes"] == 6            # 50% of the classes unseen
    assert res["sizes"]["query"] + res["sizes"]["support"] == 6 * 8
    assert res["sizes"]["excluded_queries"] == 0
    assert res["protocol"].startswith("random query/support split")                         # glyphs: no official split
    assert res["regions"]["image_regions"] == 64 and res["regions"]["image_k"] == 6             # stated with the table
    for r in res["runs"]:
        assert abs(r["metrics"]["Avg"] - (r["metrics"]["I2T"] + r["metrics"]["T2I"]) / 2) < 1e-9
    assert 0 < res["chance_map"] < 1 and isinstance(res["jr_best"], bool) and "joint retrieval" in res["claim"]
    assert res["jr_tolerance"] >= 0.5                                                       # nb 30's tie margin
    assert res["jr_best"] == (res["jr_lead"] > res["jr_tolerance"])                         # a lead within it ties
    assert ("ties with" in res["claim"]) == (abs(res["jr_lead"]) <= res["jr_tolerance"])
    grads = {g["term"]: g for g in res["grad_check"]}                         # the figures nb 24's prose quotes
    assert "FGCL" in grads and all(math.isfinite(g["|grad| on the FGE heads"]) for g in grads.values())
    assert all(0 <= v <= 1 for v in res["seen_mean"].values()) and "JR/Avg/mAP@all" in res["seen_mean"]
    hist = json.loads((out / "fgan_seed0" / "history.json").read_text())
    assert len(hist["train"]) == epochs and all(math.isfinite(h[k]) for h in hist["train"] for k in ("loss", "apn", "aps", "align", "vae"))
    assert len(hist["eval"]) == 1                                                           # the Trainer's eval_fn, once at the end
    table = pd.read_csv(out / "table.csv")
    assert (table["source"] == "ours").sum() == 3                                          # RE, LD, JR
    assert (table["source"] == "FGAN Table 1").sum() == 3                                  # paper's Pascal Sentence rows
    return res


def test_fgan_repro_smoke(run_notebook, results_checker, tmp_path):
    run_notebook("24_fgan_repro.ipynb", _params(tmp_path))
    out = tmp_path / "out"
    _check(out, results_checker)
    assert not (out / "ablations.csv").exists()                                            # ablations are off by default


@pytest.mark.slow
def test_fgan_repro_ablations(run_notebook, results_checker, tmp_path):
    run_notebook("24_fgan_repro.ipynb", _params(tmp_path, epochs=1, ablations=True, sweep_margins=[0.3],
                                               sweep_image_ratios=[0.2], sweep_text_ratios=[0.5]))
    out = tmp_path / "out"
    _check(out, results_checker, epochs=1)
    abl = pd.read_csv(out / "ablations.csv")
    assert len(abl) == 1 + 12 and abl[list(MODES)].apply(lambda c: c.between(0, 100)).all().all()
    assert {"pairwise loss", "classification loss", "word-embedding label space"} <= set(abl["setting"])  # Table 4 rows
    sw = pd.read_csv(out / "sweeps.csv")                                                   # Fig. 4
    assert sw[["knob", "value"]].values.tolist() == [["m1", 0.3], ["m2", 0.3], ["image_ratio", 0.2],
                                                     ["text_ratio", 0.5]]
    assert sw.loc[sw["knob"] == "image_ratio", "image_k"].item() == round(0.2 * 64)             # 8x8 regions at 32 px
    assert (out / "figures" / "fig4_sweeps.png").is_file()
