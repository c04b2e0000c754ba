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


def _check(out, epochs=2):
    for name in ("results.json", "runs.csv", "summary.csv", "table.csv", "timing.json",
                 "training_loss.png", "saliency.png", "tsne.png", "top5_t2i.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    res = json.loads((out / "results.json").read_text())
    assert res["n_seen_classes"] == 6 and res["n_unseen_classes"] == 6                   # 50% of the classes unseen
    assert res["n_query"] + res["n_support"] == 6 * 8
    for mode in MODES:
        for d in DIRS:
            for met in ("mAP@all", "Prec@100"):
                v = res["mean"][f"{mode}/{d}/{met}"]
                assert math.isfinite(v) and 0 <= v <= 1, (mode, d, met, v)
            i2t, t2i = res["mean"][f"{mode}/I2T/mAP@all"], res["mean"][f"{mode}/T2I/mAP@all"]
            assert abs(res["mean"][f"{mode}/Avg/mAP@all"] - (i2t + t2i) / 2) < 1e-9
    assert 0 < res["chance_map"] < 1 and isinstance(res["jr_best"], bool)
    assert set(res["seen_mean"]) == set(res["mean"]) and all(0 <= v <= 1 for v in res["seen_mean"].values())
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["method"]) == {f"FGAN_{m}" for m in MODES} and set(runs["metric"]) == {"mAP@all", "Prec@100"}
    assert runs[list(DIRS)].apply(lambda c: c.between(0, 1)).all().all()
    hist = json.loads((out / "fgan_seed0" / "history.json").read_text())["train"]
    assert len(hist) == epochs and all(math.isfinite(h[k]) for h in hist for k in ("loss", "apn", "aps", "align", "vae"))
    table = pd.read_csv(out / "table.csv")
    assert (table["source"] == "ours").sum() == 3                                          # RE, LD, JR
    assert (table["source"] == "FGAN Table 1").sum() == 3                                  # paper's Pascal Sentence rows
    assert json.loads((out / "timing.json").read_text())["seconds_total"] > 0
    return res


def test_fgan_repro_smoke(run_notebook, tmp_path):
    run_notebook("24_fgan_repro.ipynb", _params(tmp_path))
    out = tmp_path / "out"
    _check(out)
    assert not (out / "ablations.csv").exists()                                            # ablations are off by default


@pytest.mark.slow
def test_fgan_repro_ablations(run_notebook, tmp_path):
    run_notebook("24_fgan_repro.ipynb", _params(tmp_path, epochs=1, ablations=True))
    out = tmp_path / "out"
    _check(out, epochs=1)
    abl = pd.read_csv(out / "ablations.csv")
    assert len(abl) == 1 + 9 and abl[list(MODES)].apply(lambda c: c.between(0, 100)).all().all()
