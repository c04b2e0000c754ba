"""FGGAN's protocols pinned on tiny inputs: the CompCars closed set (official lists, one label space, errors), the
open set of §4.4 year by year against a brute-force reference, the two relevance criteria, and the game's switches
(`paper_faithful`, Eq. 5's N term, the saturating G loss, S trained first)."""
import math
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from fgr_core.benchmarks import DatasetFormatError
from fgr_core.data import create_dataset, test_transform
from fgr_core.fggan import (DEFAULT_SWITCHES, FGGAN, PAPER_SETTINGS, FGGANConfig, evaluator_objective,
                            fggan_feature_sets, generator_loss, open_set_steps)
from fgr_core.method import create_method
from fgr_core.train import TrainConfig, Trainer
from official_fixtures import _img, write_compcars

REPO = Path(__file__).resolve().parents[1]
T16 = test_transform(16)
LISTS = "train_test_split/classification"


def _lines(base, split):
    return [l for l in (base / LISTS / f"{split}.txt").read_text().splitlines() if l.strip()]


def test_compcars_official_lists_share_one_label_space(tmp_path):
    base = write_compcars(tmp_path)
    tr, te = (create_dataset("compcars", s, root=tmp_path, transform=T16) for s in ("train", "test"))
    assert tr.class_names == te.class_names == ["78/1", "78/12", "79/3", "80/9", "81/5"]
    for ds, split in ((tr, "train"), (te, "test")):
        rels = _lines(base, split)
        assert [str(p.relative_to(base / "image")) for p in ds.images] == rels          # the list, in its order
        for p, y, a in zip(rels, ds.labels.tolist(), ds.attributes):
            make, model, year, _ = p.split("/")
            assert ds.class_names[y] == f"{make}/{model}" and a == {"make": make, "model": model, "year": year}
    assert te.views[:3] == ["side", "front-side", "uncertain"]
    makes = [n.split("/")[0] for n in np.array(tr.class_names)[tr.labels]]
    assert tr.make_labels.tolist() == [["78", "79", "80", "81"].index(m) for m in makes]
    ut, uv = (create_dataset("compcars", s, root=tmp_path, transform=T16) for s in ("unseen_train", "unseen_test"))
    assert ut.class_names == ["78/1", "78/12"] and uv.class_names == ["79/3", "80/9", "81/5"]   # disjoint, own name
    assert len(ut) + len(uv) == len(create_dataset("compcars", "all", root=tmp_path)) == 24
    assert tr.view_index(0, "side") is None and tr.view_index(1, "side") == 2 and tr[0]["image"].shape == (3, 16, 16)
    assert len(create_dataset("compcars", "train", root=tmp_path, views=["side"])) == 2
    (base / "label" / "79" / "3" / "2010" / "c2.txt").write_text("7\n")
    with pytest.raises(DatasetFormatError, match="viewpoint must be one of"):
        create_dataset("compcars", "test", root=tmp_path)
    (base / "label" / "79" / "3" / "2010" / "c2.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"CompCars .*missing .*c2.txt"):
        create_dataset("compcars", "test", root=tmp_path)


def test_compcars_missing_lists_and_images(tmp_path):
    base = write_compcars(tmp_path)
    (base / LISTS / "test.txt").unlink()
    for split in ("train", "test"):
        with pytest.raises(DatasetFormatError, match=r"missing .*classification/test.txt"):
            create_dataset("compcars", split, root=tmp_path)
    base = write_compcars(tmp_path / "b")
    (base / "image" / "80" / "9" / "2011" / "d2.jpg").unlink()
    with pytest.raises(DatasetFormatError, match=r"1 image\(s\) named by .*classification/train.txt are missing"):
        create_dataset("compcars", "train", root=tmp_path / "b")
    ds = create_dataset("compcars", "train", root=tmp_path / "b", missing="skip")
    assert len(ds) == len(_lines(base, "train")) - 1 and ds.excluded == {"missing_images": 1, "other_views": 0}
    assert ds.num_classes == 5
    (base / LISTS / "train.txt").write_text("78/1/a1.jpg\n")
    with pytest.raises(DatasetFormatError, match=r"train.txt' line 1: expected '<make>/<model>/<year>/<name>.jpg'"):
        create_dataset("compcars", "train", root=tmp_path / "b")


def test_compcars_unseen_and_all_read_only_the_classification_models(tmp_path):
    base = write_compcars(tmp_path)
    for rel in ("82/7/2012/f1.jpg", "82/7/2013/f2.jpg", "10/3/2011/g1.jpg"):   # on disk, in neither list
        _img(base / "image" / rel)
        (base / "label" / rel).with_suffix(".txt").parent.mkdir(parents=True, exist_ok=True)
        (base / "label" / rel).with_suffix(".txt").write_text("1\n1\n1 1 7 7\n")
    listed = sorted(_lines(base, "train") + _lines(base, "test"))
    def read():
        ds = {s: create_dataset("compcars", s, root=tmp_path) for s in ("unseen_train", "unseen_test", "all")}
        return {s: (d.class_names, sorted(str(p.relative_to(base / "image")) for p in d.images)) for s, d in ds.items()}
    got = read()
    assert got["all"] == (["78/1", "78/12", "79/3", "80/9", "81/5"], listed)   # the lists' 5 models, not 82/7 or 10/3
    assert got["unseen_train"][0] == ["78/1", "78/12"] and got["unseen_test"][0] == ["79/3", "80/9", "81/5"]
    assert sorted(got["unseen_train"][1] + got["unseen_test"][1]) == listed                # the halves split "all"
    for split in ("train", "test"):                                                        # the lists in another order
        (base / LISTS / f"{split}.txt").write_text("".join(f"{l}\n" for l in reversed(_lines(base, split))))
    assert read() == got                                                                   # the same halves
    ds = create_dataset("compcars", "all", root=tmp_path)
    assert (len(ds), ds.num_classes, ds.excluded) == (24, 5, {"missing_images": 0, "other_views": 0})


def _brute_steps(gy, gl, qy, ql, first):
    steps = []
    for year in sorted({y for y in qy if y >= first}):
        gal = [i for i in range(len(gy)) if gy[i] <= year]
        qs = [i for i in range(len(qy)) if qy[i] == year and any(gl[j] == ql[i] for j in gal)]
        n_out = sum(1 for i in range(len(qy)) if qy[i] == year) - len(qs)
        if qs: steps.append((year, qs, gal, n_out))
    return [i for i in range(len(gy)) if gy[i] < first], steps


def test_open_set_steps_match_a_brute_force_reference():
    rng = random.Random(0)
    for _ in range(20):
        gy, qy = [rng.randint(2005, 2016) for _ in range(40)], [rng.randint(2005, 2016) for _ in range(25)]
        gl, ql = [rng.randint(0, 9) for _ in range(40)], [rng.randint(0, 9) for _ in range(25)]
        if min(gy) >= 2010: gy[0] = 2009
        o = open_set_steps(gy, gl, qy, ql, 2010)
        fit, steps = _brute_steps(gy, gl, qy, ql, 2010)
        assert o["fit"] == fit
        assert [(s["year"], s["queries"], s["gallery"], s["excluded"]) for s in o["steps"]] == steps
        assert all(set(a["gallery"]) <= set(b["gallery"]) for a, b in zip(o["steps"], o["steps"][1:]))   # accumulates
    o = open_set_steps([2008, 2011], [0, 1], [2011, 2013], [0, 1], 2010)
    assert o["empty"] == [2010, 2012] and [s["year"] for s in o["steps"]] == [2011, 2013]
    o = open_set_steps([2008, 2011], [0, 1], [2011, 2013], [2, 1], 2010)
    assert o["skipped"] == [2011]                                     # a year whose queries' classes are all absent


def _map_at_k(q, ql, g, gl, k):
    "AP over the top k divided by min(k, R), Euclidean ranking, queries without relevant items left out"
    aps = []
    for i in range(len(q)):
        R = int((gl == ql[i]).sum())
        if not R: continue
        order = torch.argsort(((g - q[i]) ** 2).sum(1), stable=True)[:k]
        hits = (gl[order] == ql[i]).float()
        prec = torch.cumsum(hits, 0) / torch.arange(1, len(hits) + 1)
        aps.append(float((prec * hits).sum()) / min(k, R))
    return float(np.mean(aps))


def _offshelf(num_classes):
    torch.manual_seed(0)
    return create_method("fggan", modules="", num_classes=num_classes, image_backbone="small_cnn", pretrained=False,
                         embed_dim=8).eval()


def test_relevance_criteria_and_open_set_scores_on_compcars(tmp_path):
    write_compcars(tmp_path)
    tr, te = (create_dataset("compcars", s, root=tmp_path, transform=T16) for s in ("train", "test"))
    m = _offshelf(tr.num_classes)
    q, g = (fggan_feature_sets(m, ds, ("fc",)) for ds in (te, tr))
    rel = {"make": (te.make_labels, tr.make_labels)}
    res = m.make_eval_fn(te, tr, ks=(2, 4), kinds=("fc",), relevance=rel)(m)
    for k in (2, 4):
        want_model = _map_at_k(q["fc"], te.labels, g["fc"], tr.labels, k)             # Table 7: same make and model
        want_make = _map_at_k(q["fc"], te.make_labels, g["fc"], tr.make_labels, k)    # Tables 1-3: a shared label
        assert math.isclose(res[f"fc/mAP@{k}"], want_model, abs_tol=1e-6)
        assert math.isclose(res[f"make:fc/mAP@{k}"], want_make, abs_tol=1e-6)
    assert res["make:fc/P@4"] > res["fc/P@4"]               # sharing a label (the make) is the looser criterion
    years = lambda ds: [int(a["year"]) for a in ds.attributes]
    osp = open_set_steps(years(tr), tr.labels, years(te), te.labels, 2010)
    assert [(s["year"], s["excluded"]) for s in osp["steps"]] == [(2010, 0), (2011, 1), (2012, 0), (2013, 0), (2014, 0)]
    res = m.make_eval_fn(te, tr, ks=(2,), kinds=("fc",), steps=osp["steps"])(m)
    per = []
    for s in osp["steps"]:
        qi, gi = torch.tensor(s["queries"]), torch.tensor(s["gallery"])
        per.append(_map_at_k(q["fc"][qi], te.labels[qi], g["fc"][gi], tr.labels[gi], 2))
        assert math.isclose(res[f"fc/{s['year']}/mAP@2"], per[-1], abs_tol=1e-6)
    assert math.isclose(res["fc/mAP@2"], float(np.mean(per)), abs_tol=1e-6)      # the table's number: mean over years
    assert math.isclose(res["mAP@2"], res["fc/mAP@2"])


def _tiny_config(**kw):
    return FGGANConfig(image_backbone="small_cnn", pretrained=False, embed_dim=8, g_width=4, g_depth=2, d_width=4,
                       d_depth=2, n_width=4, n_depth=2, feature_layer=2, **kw)


def test_paper_faithful_sets_every_switch():
    c = FGGANConfig(paper_faithful=True)
    assert {k: getattr(c, k) for k in PAPER_SETTINGS} == PAPER_SETTINGS
    assert [PAPER_SETTINGS[k] for k in ("g_loss", "n_rec", "s_weight_xz")] == ["saturating", True, 0.001]
    assert PAPER_SETTINGS["pretrain_s_epochs"] >= 1 and PAPER_SETTINGS["g_residual"] is False
    d = FGGANConfig()
    assert (d.g_loss, d.n_rec, d.s_weight_xz, d.pretrain_s_epochs) == ("non_saturating", False, 1.0, 0)   # deviations
    with pytest.raises(ValueError, match="paper_faithful=True sets optimizer='sgd', got optimizer='adam'"):
        FGGANConfig(paper_faithful=True, optimizer="adam")
    for k, ours in DEFAULT_SWITCHES.items():   # explicit, though equal to our default: it contradicts the flag
        with pytest.raises(ValueError, match=f"paper_faithful=True sets {k}={PAPER_SETTINGS[k]!r}, got {k}={ours!r}"):
            FGGANConfig(paper_faithful=True, **{k: ours})
    assert FGGANConfig(g_loss="saturating", n_rec=True).g_loss == "saturating"           # explicit values stay
    pf = FGGANConfig(paper_faithful=True).to_dict()
    assert FGGANConfig(**PAPER_SETTINGS).to_dict() == {**pf, "paper_faithful": False}  # flag = explicit values
    from fgr_core.run import load_run_config
    run = load_run_config(REPO / "configs" / "fggan_compcars.yaml")
    cfg = FGGANConfig.from_dict(run.method_args)
    assert run.method_args["paper_faithful"] is True and {k: getattr(cfg, k) for k in PAPER_SETTINGS} == PAPER_SETTINGS
    assert run.data.gallery_split == "train" and run.data.eval_split == "test"


def test_eq5_normalizer_term_and_saturating_generator_loss():
    torch.manual_seed(1)
    cfg = _tiny_config(paper_faithful=True, lam=1.0, rec_per_feature=False)
    m = FGGAN(3, canonical=torch.randn(3, 3, 16, 16), config=cfg).eval()
    x_r, y = torch.randn(5, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1]); x_c = m.canonical[y]
    with torch.no_grad(): x_z = m.generate(x_r)
    e = evaluator_objective(m, x_r, x_z, x_c, y)
    with torch.no_grad(): lp, fp = m.N(torch.cat([x_c, x_c], 1)); ln, fn = m.N(torch.cat([x_z, x_c], 1))
    pos = [-math.log(torch.sigmoid(v).item()) for v in lp]                          # -log N(x_c, x_c) - lambda * 0
    neg = [-math.log(1 - torch.sigmoid(v).item()) - 0.5 * float(((a - b) ** 2).sum()) for v, a, b in zip(ln, fn, fp)]
    assert math.isclose(e["n"].item(), float(np.mean(pos + neg)), rel_tol=1e-5)
    mo = FGGAN(3, m.canonical, _tiny_config(rec_per_feature=False)).eval()                     # our default: no -lambda l
    e_off = evaluator_objective(mo, x_r, x_z, x_c, y)
    with torch.no_grad(): lpo, _ = mo.N(torch.cat([x_c, x_c], 1)); lno, _ = mo.N(torch.cat([x_z, x_c], 1))
    bce = [-math.log(torch.sigmoid(v).item()) for v in lpo] + [-math.log(1 - torch.sigmoid(v).item()) for v in lno]
    assert math.isclose(e_off["n"].item(), float(np.mean(bce)), rel_tol=1e-5)                # the BCE alone
    g = generator_loss(m, x_r, x_c, y)
    xz = m.G(x_r)
    lz, fz = m.N(torch.cat([xz, x_c], 1))
    want = (torch.log(1 - torch.sigmoid(m.D(xz))).mean() + torch.log(1 - torch.sigmoid(lz)).mean()
            + 0.5 * ((fz - fp) ** 2).sum(1).mean() + 0.001 * F.cross_entropy(m.S(xz)["logits"], y))
    assert math.isclose(g["g"].item(), want.item(), rel_tol=1e-5)                             # -E for D and N (§3.5)


def test_s_is_trained_on_real_images_first():
    torch.manual_seed(0)
    items = [{"image": torch.randn(3, 16, 16), "label": i % 3, "index": i} for i in range(12)]
    m = FGGAN(3, canonical=torch.randn(3, 3, 16, 16), config=_tiny_config(paper_faithful=True))
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    Trainer(m, torch.utils.data.DataLoader(items, batch_size=4), TrainConfig(epochs=1, progress=False, device="cpu",
            schedule="constant", checkpoint_every_epochs=0), out_dir=tempfile.mkdtemp()).fit()
    moved = {n.split(".")[0] for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert moved == {"S"}                                    # epoch 0 of 1 is the stage that trains S alone


def test_canonical_views_are_a_build_input():
    "21 hands x_c to `create_method` through its training set (`canonical_images`), not by setting model.canonical"
    from fgr_core.repro import RelabeledSubset
    items = [{"image": torch.randn(3, 16, 16), "label": i % 2} for i in range(4)]
    class _Base(list): labels = torch.tensor([0, 1, 0, 1])
    fit = RelabeledSubset(_Base(items), [0, 1, 3], {0: 0, 1: 1})
    fit.canonical_images = torch.randn(2, 3, 16, 16) - 3                            # already normalised: kept as given
    m = create_method("fggan", fit, canonical_view="canonical", num_classes=2, image_backbone="small_cnn",
                      pretrained=False, embed_dim=8, g_width=4, g_depth=2, d_width=4, d_depth=2, n_width=4, n_depth=2,
                      feature_layer=2)
    assert torch.equal(m.canonical, fit.canonical_images)
    nb = (REPO / "nbs" / "21_fggan_repro.ipynb").read_text()
    assert "model.canonical =" not in nb and "fit_set.canonical_images = " in nb

