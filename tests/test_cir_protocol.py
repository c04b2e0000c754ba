"""CIR-UR as the authors ran it (issue 16): the feature scale, the loss, the source ablation, per-rank noise,
the FashionIQ protocol (joint training, one gallery per category, the coarse subset) and bad FashionIQ input.
Issue 27: the `reference` switch (paper vs authors' code on identical inputs), the per-module learning rate,
layer-4 stride, the benchmark configs, and both galleries on the fixture trees."""
import json
import math
import warnings

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from fgr_core import feed as fgr_feed   # step_generator reads the rank from here
from fgr_core import method as fgr_method
from fgr_core import train as fgr_train
from fgr_core.cir import CIRConfig, collate_triplets, evaluate_composed
from fgr_core.data import create_dataset, test_transform
from fgr_core.method import create_method
from fgr_core.uncertainty import info_nce
from fgr_core.benchmarks import DatasetFormatError

from official_fixtures import write_fashion200k, write_fashioniq

TEXTS = ["make it bold", "same letter but serif", "a different style", "make it red"]
KW = dict(image_backbone="small_cnn", pretrained=False, image_kwargs={"width": 8}, text_kwargs={"dim": 8}, embed_dim=16,
          compositor="tirg")


class _Texts(torch.utils.data.Dataset):   # just the training texts, for the gru's vocabulary
    def __len__(self): return len(TEXTS)
    def __getitem__(self, i): return {"text": TEXTS[i]}


def _method(name="cir_uncertainty", **over):
    torch.manual_seed(0)
    return create_method(name, _Texts(), **{**KW, **over})


def _batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"reference": torch.randn(n, 3, 16, 16, generator=g), "target": torch.randn(n, 3, 16, 16, generator=g),
            "text": TEXTS[:n]}


def _jitter_cos(m, images, head_scale):
    "cos(f̂_t, f_t) per target after multiplying the head's output by `head_scale`, with a fixed noise seed"
    with torch.no_grad():
        w, b = m.model.head.weight.clone(), m.model.head.bias.clone()
        m.model.head.weight.mul_(head_scale); m.model.head.bias.mul_(head_scale)
        f_t = m.model.encode_image(images)
        f_hat = m.augmenter(f_t, torch.Generator().manual_seed(7))
        m.model.head.weight.copy_(w); m.model.head.bias.copy_(b)
    return F.cosine_similarity(f_hat, f_t, dim=1)


def test_jitter_does_not_depend_on_head_norm():
    "Point 1: with norm_scale (default 4) the augmenter jitters f_t the same whatever the head's output norm"
    images = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    m = _method().eval()
    cos = {s: _jitter_cos(m, images, s) for s in (0.1, 1.0, 10.0)}
    assert torch.allclose(cos[0.1], cos[10.0], atol=1e-5) and torch.allclose(cos[1.0], cos[10.0], atol=1e-5)
    assert torch.allclose(m.model.encode_image(images).norm(dim=1), torch.full((16,), 4.0), atol=1e-4)
    raw = _method(norm_scale=0).eval()                                      # the old behaviour: norm-dependent jitter
    c_raw = {s: float(_jitter_cos(raw, images, s).mean()) for s in (0.1, 10.0)}
    assert c_raw[0.1] - c_raw[10.0] > 0.1, c_raw


def test_default_loss_is_the_authors_dot_product():
    "Point 1: InfoNCE is a cross-entropy over raw f_s·f_tᵀ by default; cosine/temperature is the named option"
    assert (CIRConfig().similarity, CIRConfig().temperature, CIRConfig().norm_scale) == ("dot", 1.0, 4.0)
    b = _batch()
    for sim, tau in (("dot", 1.0), ("cosine", 0.1)):
        m = _method("cir_baseline", similarity=sim, temperature=tau).train()
        torch.manual_seed(3); loss = m.training_step(b)["loss"]
        torch.manual_seed(3)
        ref_map = m.model.image_map(b["reference"])
        f_s, f_t = m.model.compose_map(ref_map, b["text"]), m.model.encode_image(b["target"])
        if sim == "cosine": f_s, f_t = F.normalize(f_s, dim=1), F.normalize(f_t, dim=1)
        ref = F.cross_entropy(f_s @ f_t.T / tau, torch.arange(4))           # by hand
        assert torch.allclose(loss, ref, atol=1e-5), (sim, float(loss), float(ref))
    assert torch.allclose(info_nce(torch.eye(2), 3*torch.eye(2)), torch.tensor(math.log(1 + math.exp(-3))), atol=1e-6)


def test_source_augmentation_jitters_the_reference_feature():
    "Point 3: augment='source' jitters the reference map f_s^I before composition, not the composed feature"
    m = _method(augment="source").train()
    seen = []
    m.augmenter.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].detach().clone(), out.detach().clone())))
    b = _batch()
    out = m.training_step(b)
    assert torch.isfinite(out["loss"]) and float(out["gamma"]) == 1.0
    assert len(seen) == 1
    with torch.no_grad(): ref_map = m.model.image_map(b["reference"])
    assert seen[0][0].shape == (4, ref_map[0].numel())                       # the flattened (C, h, w) map
    assert torch.allclose(seen[0][0], ref_map.flatten(1), atol=1e-5)
    out["loss"].backward()                                                   # gradients reach the compositor
    assert all(p.grad is not None for p in m.model.compositor.parameters())


def test_noise_differs_per_ddp_rank(monkeypatch):
    "Known defect: the augmenter's noise comes from the per-step, per-rank generator, not one shared generator"
    b = _batch()
    losses = {}
    for rank in (0, 1):
        monkeypatch.setattr(fgr_feed, "dist_info", lambda r=rank: (r, 2))
        m = _method().train()
        losses[rank] = float(m.training_step(b)["loss"].detach())
    monkeypatch.setattr(fgr_feed, "dist_info", lambda: (0, 2))
    assert float(_method().train().training_step(b)["loss"].detach()) == losses[0]    # same rank and step: same noise
    assert losses[0] != losses[1]
    assert not hasattr(_method(), "generator")


def test_frozen_map_memo_is_a_config_input():
    "Known defect: nb 23 shares the frozen backbone's memo through the config, not by setting it afterwards"
    memo = {}
    m = _method(freeze_image=True, image_kwargs={"width": 8, "memo": memo})
    assert m.model.map_cache is memo
    with torch.no_grad(): m.model.encode_image(_batch()["target"])
    assert len(memo) == 4


T8 = test_transform(8)


def test_fashioniq_categories_coarse_and_bad_input(tmp_path):
    "Point 4 and 'Both': one gallery per category, the paper's coarse subset, missing images and empty galleries"
    base = write_fashioniq(tmp_path)
    tr = create_dataset("fashioniq", "train", root=tmp_path, transform=T8)
    assert len(tr) == 6 and tr.coarse == [True, False] * 3                  # all categories, jointly
    for cat in ("dress", "shirt", "toptee"):
        te = create_dataset("fashioniq", "val", root=tmp_path, transform=T8, categories=[cat])
        assert len(te) == 2 and len(te.gallery) == 3                         # its own gallery only
        assert {a["category"] for a in te.gallery.attributes} == {cat}
        assert te.coarse == [True, False] and te.excluded == {"triplets": 0, "gallery_images": 0}
    assert not any(create_dataset("fashioniq", "val", root=tmp_path, transform=T8, coarse_words=0).coarse)
    assert all(create_dataset("fashioniq", "val", root=tmp_path, transform=T8, coarse_words=10).coarse)
    (base / "images" / "B00SHv2.jpg").unlink()                               # a caption names a missing image
    with pytest.warns(UserWarning, match=r"1 images .* missing .*excluded 1 triplets and 1 gallery images"):
        te = create_dataset("fashioniq", "val", root=tmp_path, transform=T8, categories=["shirt"])
    assert len(te) == 1 and len(te.gallery) == 2 and te.excluded == {"triplets": 1, "gallery_images": 1}
    with pytest.raises(FileNotFoundError, match="names image 'B00SHv2'.*missing='skip'"):
        create_dataset("fashioniq", "val", root=tmp_path, transform=T8, categories=["shirt"], missing="error")
    (base / "image_splits" / "split.toptee.val.json").write_text("[]")      # a category without a gallery
    with pytest.raises(DatasetFormatError, match="category 'toptee' has no gallery"):
        create_dataset("fashioniq", "val", root=tmp_path, transform=T8, categories=["toptee"], gallery="split")
    for a in ("B00TOv0", "B00TOv1", "B00TOv2"): (base / "images" / f"{a}.jpg").unlink()
    with pytest.raises(DatasetFormatError, match="category 'toptee' has no gallery: .*cap.toptee.val.json"):
        create_dataset("fashioniq", "val", root=tmp_path, transform=T8, categories=["toptee"])
    with pytest.raises(ValueError, match="coarse_words"):
        create_dataset("fashioniq", "val", root=tmp_path, coarse_words=-1)


T16 = test_transform(16)


def test_coarse_average_covers_every_category(tmp_path):
    "Like R@K's, the coarse_R@K average is over all FashionIQ categories: left out when one has no coarse query"
    cap = write_fashioniq(tmp_path) / "captions" / "cap.shirt.val.json"
    cats, orig = ("dress", "shirt", "toptee"), cap.read_text()
    m = _method("cir_baseline").eval()
    def scores():
        sets = {c: create_dataset("fashioniq", "val", root=tmp_path, transform=T16, categories=[c]) for c in cats}
        return [sum(s.coarse) for s in sets.values()], m.make_eval_fn(sets, ks=[1, 2])(m)
    n, out = scores()
    assert n == [1, 1, 1]
    for k in (1, 2):                                                           # every category has coarse queries
        assert abs(out[f"coarse_R@{k}"] - sum(out[f"{c}/coarse_R@{k}"] for c in cats) / 3) < 1e-9
    caps = json.loads(orig); caps[0]["captions"] = ["is a lot darker than this one", "has long sleeves and a collar"]
    cap.write_text(json.dumps(caps))                                           # shirt: no coarse triplet left
    n, out = scores()
    assert n == [1, 0, 1] and "dress/coarse_R@1" in out and "shirt/coarse_R@1" not in out
    assert not any(k.startswith("coarse_R@") for k in out)                     # no average over 2 of 3 categories
    assert abs(out["R@2"] - sum(out[f"{c}/R@2"] for c in cats) / 3) < 1e-9


def test_reference_switch_on_identical_inputs():
    "Issue 27: paper and code references give the same model; their losses differ exactly by the documented pieces"
    b = _batch()
    code, paper = _method(w1=2.0, w2=3.0).train(), _method(reference="paper", w1=2.0, w2=3.0).train()
    paper.load_state_dict(code.state_dict())
    assert (code.config.similarity, code.config.uncertainty_form, code.config.noise_scale) == ("dot", "logvar", "code")
    assert (paper.config.similarity, paper.config.uncertainty_form, paper.config.noise_scale) == ("cosine", "eq3", "eq6")
    f = torch.randn(5, 16, generator=torch.Generator().manual_seed(2))
    mu, f_bar = f.mean(1, keepdim=True), (f - f.mean(1, keepdim=True)) / (f.var(1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    d = code.augmenter(f, torch.Generator().manual_seed(7)) - paper.augmenter(f, torch.Generator().manual_seed(7))
    assert torch.allclose(d, (2.0 - 1) * f_bar + (3.0 - 1) * mu, atol=1e-5)   # code also scales α's 1 and β's mean
    outs = {}
    for name, m in (("code", code), ("paper", paper)):
        m.__dict__.pop("_step_calls", None)                                   # step 0: the same noise for both
        outs[name] = m.training_step(b)
        with torch.no_grad():                                                 # by hand, from the same features and noise
            ref_map = m.model.image_map(b["reference"])
            f_s, f_t = m.model.compose_map(ref_map, b["text"]), m.model.encode_image(b["target"])
            m.__dict__.pop("_step_calls", None)
            f_hat = m.augmenter(f_t, m.noise_generator(m.config.seed))
            if name == "paper": f_s_, f_t_, f_h_ = F.normalize(f_s, dim=1), F.normalize(f_t, dim=1), F.normalize(f_hat, dim=1)
            else: f_s_, f_t_, f_h_ = f_s, f_t, f_hat
            y = torch.arange(4)
            l_hat, l_info, s = F.cross_entropy(f_s_ @ f_h_.T, y), F.cross_entropy(f_s_ @ f_t_.T, y), f_hat.std()
            l_u = 0.5 * (torch.exp(-s) * l_hat + s) if name == "code" else l_hat / (2 * s**2) + torch.log(s)
        assert torch.allclose(outs[name]["L_info"], l_info, atol=1e-5), name
        assert torch.allclose(outs[name]["L_u"], l_u, atol=1e-5), name
        assert torch.allclose(outs[name]["loss"], l_u, atol=1e-5), name      # γ = 1 at epoch 0
    assert not torch.allclose(outs["code"]["loss"], outs["paper"]["loss"])
    same = _method(w1=1.0, w2=1.0).augmenter, _method(reference="paper").augmenter   # w = 1: Eq. 6 and code agree
    assert torch.equal(same[0](f, torch.Generator().manual_seed(7)), same[1](f, torch.Generator().manual_seed(7)))


class _Trainer:   # what configure_optimizers reads of the running Trainer
    def __init__(self, **kw): self.config = fgr_train.TrainConfig(device="cpu", **kw)


def test_text_encoder_learning_rate_per_reference():
    "Issue 27: RoBERTa-like (pretrained) text encoders train at 0.01 x lr under the code, at lr under the paper"
    assert CIRConfig(text_encoder="all_minilm_l6_v2").text_lr_mult == 0.01
    assert CIRConfig(text_encoder="all_minilm_l6_v2", reference="paper").text_lr_mult == 1.0
    assert CIRConfig(text_encoder="gru").text_lr_mult == 1.0                 # their LSTM trains at the full lr
    t = _Trainer(optimizer="sgd", lr=2e-2, momentum=0.9, weight_decay=5e-5, warmup_epochs=5, schedule="step",
                 milestones=(35, 42), epochs=60)
    m = _method(text_lr_mult=0.01); m.trainer = t
    opt = m.configure_optimizers()["main"]
    assert [g["lr"] for g in opt.param_groups] == [2e-2, 2e-4]
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 5e-5 for g in opt.param_groups)
    sched = fgr_method.make_scheduler(opt, t.config, steps_per_epoch=1)
    lrs = []
    for _ in range(60): lrs.append([g["lr"] for g in opt.param_groups]); opt.step(); sched.step()
    assert lrs[2] == pytest.approx([2e-2 * 3 / 5, 2e-4 * 3 / 5])               # warm-up scales both groups
    assert lrs[34] == pytest.approx([2e-2, 2e-4]) and lrs[35] == pytest.approx([2e-3, 2e-5])
    assert lrs[42] == pytest.approx([2e-4, 2e-6]) and lrs[59] == pytest.approx([2e-4, 2e-6])


def test_layer4_stride_doubles_the_map():
    "Issue 27: layer4_stride=1 (authors' FashionIQ/Shoes ResNet-50) keeps layer 4 at layer 3's resolution"
    kw = dict(image_backbone="resnet18", pretrained=False, image_kwargs={}, compositor="tirg")
    x = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        assert _method(**kw).model.image_map(x).shape[-2:] == (2, 2)
        assert _method(**kw, layer4_stride=1).model.image_map(x).shape[-2:] == (4, 4)
    with pytest.raises(ValueError, match="ResNet-style"):
        _method(layer4_stride=1)                                              # small_cnn has no strided shortcut


@pytest.mark.parametrize("name,lr,stride,data", [
    ("fashioniq", 2e-2, 1, {"gallery": "captions"}), ("shoes", 4e-2, 1, {}),
    ("fashion200k", 2e-3, 2, {"exclude": "caption"})])
def test_benchmark_configs_follow_the_code(name, lr, stride, data):
    "Issue 27: the benchmark configs use the authors' code: its schedule, lr, stride, text lr and gallery"
    from fgr_core.run import load_experiment
    exp = load_experiment(f"cir_{name}")
    assert exp.methods == ["cir_baseline", "cir_uncertainty"] and len(exp.seeds) >= 3
    for m in exp.methods:
        c = fgr_method.METHODS.get(m).config(**exp.run_config(m, 0).method_args)
        assert (c.reference, c.similarity, c.uncertainty_form, c.noise_scale) == ("code", "dot", "logvar", "code")
        assert (c.text_lr_mult, c.layer4_stride, c.embed_dim, c.norm_scale) == (0.01, stride, 512, 4.0)
    t = exp.train
    assert (t.epochs, t.lr, t.optimizer, t.batch_size, t.warmup_epochs, t.schedule, tuple(t.milestones)) == \
        (60, lr, "sgd", 32, 5.0, "step", (35, 42))
    assert {k: v for k, v in exp.data.args.items() if k in data} == data
    assert exp.eval.args.get("per_category", False) == (name == "fashioniq")


def test_fashioniq_gallery_captions_vs_split(tmp_path):
    "Issue 27: the authors' FashionIQ gallery holds only the images the captions name; 'split' the whole list"
    base = write_fashioniq(tmp_path)
    split = base / "image_splits" / "split.dress.val.json"
    split.write_text(json.dumps(json.loads(split.read_text()) + ["B00DRvX"]))   # listed, named by no caption
    from PIL import Image
    Image.new("RGB", (8, 8)).save(base / "images" / "B00DRvX.jpg")
    code = create_dataset("fashioniq", "val", root=tmp_path, transform=T8, categories=["dress"])
    paper = create_dataset("fashioniq", "val", root=tmp_path, transform=T8, categories=["dress"], gallery="split")
    assert code.gallery.class_names == ["B00DRv0", "B00DRv1", "B00DRv2"]      # references and targets only
    assert paper.gallery.class_names == ["B00DRv0", "B00DRv1", "B00DRv2", "B00DRvX"]
    assert code.texts == paper.texts and code.exclude == [{0}, {1}] and len(code) == 2
    with pytest.raises(ValueError, match="gallery: expected one of"):
        create_dataset("fashioniq", "val", root=tmp_path, gallery="all")


def test_fashion200k_excludes_same_caption(tmp_path):
    "Issue 27: the authors' evaluator drops every gallery image described as the reference; 'reference' only it"
    write_fashion200k(tmp_path)                                               # 600_0 and 600_1: 'blue cocktail dress'
    code = create_dataset("fashion200k_triplets", "test", root=tmp_path, transform=T16)
    ref_only = create_dataset("fashion200k_triplets", "test", root=tmp_path, transform=T16, exclude="reference")
    names = [str(p).split("fashion200k/")[-1] for p in code.gallery.images]
    i0, i1, g = (names.index(f"women/dresses/cocktail/{n}.jpeg") for n in ("600/600_0", "600/600_1", "601/601_0"))
    assert code.references == [i0, g] and code.exclude == [{i0, i1}, {g}]     # query 0's reference has a twin
    assert ref_only.exclude == [{i0}, {g}]
    m = _method("cir_baseline").eval()
    for ds in (code, ref_only):
        rk = evaluate_composed(m, ds, ks=[1, 2], return_ranking=True)["ranking"]
        for row, ex in zip(rk.tolist(), ds.exclude): assert not set(row) & ex
    assert evaluate_composed(m, code, ks=[1, 2, 3])["R@3"] == 1.0             # K is capped at gallery - excluded = 2
    with pytest.raises(ValueError, match="exclude: expected one of"):
        create_dataset("fashion200k_triplets", "test", root=tmp_path, exclude="all")


def test_chance_levels_is_ln_batch():
    "Issue 26: InfoNCE over a batch of B is a B-way choice; the baseline's total is that term"
    m = _method("cir_baseline").train()
    assert m.chance_levels() == {}
    m.training_step(_batch(4))
    assert m.chance_levels() == {"L_info": math.log(4), "loss": math.log(4)}
    t = _Trainer(batch_size=32)                                               # held: the method keeps a weak reference
    ours = _method(); ours.trainer = t
    assert ours.chance_levels() == {"L_info": math.log(32)}
    only_u = _method(gamma_mode="constant", gamma=1.0); only_u.trainer = t   # Table 3a's "only L_u": L_info is not trained
    assert only_u.chance_levels() == {}
    half = _method(gamma_mode="constant", gamma=0.5); half.trainer = t
    assert half.chance_levels() == {"L_info": math.log(32)}


def test_per_category_eval_equals_separate_galleries(tmp_path):
    "eval.per_category on the joint FashionIQ set (fgr-train's route) scores as one load per category does"
    write_fashioniq(tmp_path)
    m = _method("cir_baseline").eval()
    joint = create_dataset("fashioniq", "val", root=tmp_path, transform=T16)
    sep = {c: create_dataset("fashioniq", "val", root=tmp_path, transform=T16, categories=[c]) for c in ("dress", "shirt", "toptee")}
    got, want = m.make_eval_fn(joint, ks=[1, 2], per_category=True)(m), m.make_eval_fn(sep, ks=[1, 2])(m)
    assert got == want and "shirt/R@2" in got and "coarse_R@1" in got


def test_shared_frozen_maps_across_runs():
    "memo: shared gives every frozen model of the process one memo per backbone and stride, so runs reuse maps"
    a = _method(freeze_image=True, image_kwargs={"width": 8, "memo": "shared"})
    b = _method(freeze_image=True, image_kwargs={"width": 8, "memo": "shared"})
    assert a.model.map_cache is b.model.map_cache
    x = _batch()["target"]
    with torch.no_grad(): fa = a.model.backbone_map(x)
    n = len(a.model.map_cache)
    with torch.no_grad(): fb = b.model.backbone_map(x)                       # read from the memo a filled
    assert n > 0 and len(b.model.map_cache) == n and torch.equal(fa, fb)
