"""DMCAC's protocol (issue 15, points 6-8) outside the notebooks: the benchmark configs say what the paper did, and
`fgr-train` with the CUB-200 config on a tiny official tree trains on RandAugment views of random crops (point 7),
with full retrieval's gradient through the database (point 6) and the paper's database shares (point 8)."""
from pathlib import Path

import pytest
import torch

from fgr_core.dmcac import QueryViews, paper_database_fraction
from fgr_core.run import load_run_config, run_training
from fgr_core.train import Trainer
from official_fixtures import write_cub

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("dmcac_*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_configs_follow_the_paper(path):
    run = load_run_config(path)
    a, ds = run.method_args, run.data.dataset
    if ds == "glyphs":
        assert a["views"] == "affine"                       # stated in the config: RandAugment alters typeface cues
        return
    assert a["views"] == "randaugment" and a["crop_size"] == 224   # §4.2: resize 256, random crop 224, RandAugment
    assert a["database_fraction"] == paper_database_fraction(ds, a["retrieval"])   # 0.2; FR: CUB 0.1, Cars 0.05
    assert path.stem.endswith("_full") == (a["retrieval"] == "full")


def test_full_retrieval_configs_exist_for_table4():
    assert {p.stem for p in CONFIGS} >= {"dmcac_cub200_full", "dmcac_cars196_full"}


@pytest.mark.parametrize("retrieval", ["approximate", "full"])
def test_fgr_train_cub_config_on_official_tree(tmp_path, retrieval):
    root = write_cub(tmp_path / "data", {1: 10, 2: 10, 101: 5, 102: 5})
    name = "dmcac_cub200.yaml" if retrieval == "approximate" else "dmcac_cub200_full.yaml"
    sets = [f"data.root={root}", "method_args.image_backbone=small_cnn", "method_args.pretrained=false",
            "method_args.A=3", "method_args.k=2", "method_args.chunk_size=2",
            "train.epochs=1", "train.batch_size=6", "train.device=cpu", "train.progress=false",
            "train.checkpoint_every_epochs=0", f"train.out_dir={tmp_path / 'run'}", "eval.batch_size=16",
            "eval.ks=[1, 2]"]
    seen = {}

    class Spy(Trainer):
        "Keeps the method and the loader's transform, and the shape of every training batch"
        def __init__(self, method, loader, *args, **kw):
            seen.update(method=method, transform=loader.dataset.transform, train=loader.dataset.dataset, shapes=[], ids=[])
            super().__init__(method, loader, *args, **kw)

        def _train_step(self, batch):
            seen["shapes"].append(tuple(batch["image"].shape)); seen["ids"] += batch["source_index"].tolist()
            return super()._train_step(batch)

    res = run_training(load_run_config(REPO / "configs" / name, sets), trainer_cls=Spy)
    m, db = seen["method"], seen["method"].database_loader.dataset
    assert isinstance(seen["transform"], QueryViews)                         # the loader's items are query views
    assert seen["shapes"] and all(s[1:] == (3, 3, 224, 224) for s in seen["shapes"]), seen["shapes"]   # (B, A, 3, 224, 224)
    assert db[0]["image"].shape == (3, 224, 224)                             # the database: the evaluation transform
    assert m.query_crop == 224 and not set(seen["ids"]) & set(db.ids.tolist())   # queries only, never database items
    assert not isinstance(seen["train"].transform, QueryViews) and seen["train"][0]["image"].shape == (3, 224, 224)
    assert len(db) == {"approximate": 4, "full": 2}[retrieval]               # 20% / 10% (Table 4) of 10 per class
    assert m.retrieval == retrieval and 0 <= res["metrics"]["R@1"] <= 1


def test_crop_size_must_match_the_database_images(tmp_path):
    "The query views are compared with the database embeddings: a crop side other than the database images' is an error"
    root = write_cub(tmp_path / "data", {1: 4, 2: 4, 101: 2, 102: 2})
    run = load_run_config(REPO / "configs" / "dmcac_cub200.yaml", [
        f"data.root={root}", "method_args.image_backbone=small_cnn", "method_args.pretrained=false",
        "method_args.crop_size=32", "train.device=cpu", f"train.out_dir={tmp_path / 'run'}"])
    with pytest.raises(ValueError, match="crop_size: 32 differs from the database images' side 224"):
        run_training(run)
