"""Official-format fixtures for every benchmark loader in fgr_core.data, written to tmp_path and loaded back."""
import json

import pytest
import torch

from fgr_core.benchmarks import DatasetFormatError
from fgr_core.data import create_dataset, list_datasets, test_transform
from official_fixtures import (write_cars, write_cub, write_fashion200k, write_fashioniq, write_inshop,
                               write_pascal_sentence, write_shoes, write_sop, write_wikipedia)

T8 = test_transform(8)


def _check_item(ds, i=0):
    it = ds[i]
    assert it["image"].shape == (3, 8, 8) and it["image"].dtype == torch.float32
    assert it["index"] == i and 0 <= it["label"] < ds.num_classes
    assert ds.labels.dtype == torch.long and len(ds.labels) == len(ds)
    return it


def test_registry_lists_every_dataset():
    names = ["cars196", "compcars", "cub200", "digits", "fashion200k", "fashioniq", "glyphs", "glyphs_triplets", "inshop",
             "pascal_sentence", "shoes", "sop", "wikipedia"]
    assert set(names) <= set(list_datasets())
    with pytest.raises(KeyError, match="did you mean 'cub200'"):
        create_dataset("cub2000")


def test_cub(tmp_path):
    write_cub(tmp_path)
    tr, te = create_dataset("cub200", "train", root=tmp_path, transform=T8), create_dataset("cub200", "test", root=tmp_path / "CUB_200_2011", transform=T8)
    assert (len(tr), len(te), tr.num_classes, te.num_classes) == (4, 4, 100, 100)
    assert tr.labels.tolist() == [0, 0, 1, 1] and te.labels.tolist() == [0, 0, 99, 99]
    assert te.class_names[0] == "101.Bird_101"
    _check_item(te, 3)
    assert len(create_dataset("cub200", "all", root=tmp_path, transform=T8)) == 8


def test_cub_errors_name_file_layout_and_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"CUB-200-2011: missing .*images.txt.*expected the official CUB-200-2011 layout"):
        create_dataset("cub200", root=tmp_path)
    base = write_cub(tmp_path)
    (base / "image_class_labels.txt").write_text("1 1\n2 x\n")
    with pytest.raises(ValueError, match=r"image_class_labels.txt"):
        create_dataset("cub200", root=tmp_path)
    with pytest.raises(ValueError, match="needs root="):
        create_dataset("cub200")


def test_cub_missing_image_names_file(tmp_path):
    "A missing image is found when the dataset is built (not at its first read), counted and named with its list file"
    base = write_cub(tmp_path)
    gone = sorted((base / "images").rglob("*.jpg"))[0]; gone.unlink()
    with pytest.raises(DatasetFormatError, match=rf"images.txt': 1 of the 4 images it lists are missing, e.g. \['{gone.parent.name}/{gone.name}'\]"):
        create_dataset("cub200", "train", root=tmp_path, transform=T8)
    assert len(create_dataset("cub200", "test", root=tmp_path, transform=T8)) == 4   # the other split is complete


def test_cars(tmp_path):
    base = write_cars(tmp_path)
    tr, te = create_dataset("cars196", "train", root=base, transform=T8), create_dataset("cars196", "test", root=tmp_path, transform=T8)
    assert (len(tr), len(te), tr.num_classes, te.num_classes) == (3, 3, 98, 98)
    assert tr.labels.tolist() == [0, 0, 97] and te.labels.tolist() == [0, 51, 97]
    assert tr.class_names[0] == "Make Model 1 2012" and te.class_names[-1] == "Make Model 196 2012"
    _check_item(te, 1)
    (base / "cars_annos.mat").write_bytes(b"not a mat file")
    with pytest.raises(DatasetFormatError, match="Stanford Cars .*cars_annos.mat"):
        create_dataset("cars196", root=base)


def test_sop(tmp_path):
    write_sop(tmp_path)
    tr, te = create_dataset("sop", "train", root=tmp_path, transform=T8), create_dataset("sop", "test", root=tmp_path, transform=T8)
    assert tr.labels.tolist() == [0, 0, 1, 2] and tr.class_names == ["1", "2", "5"]
    assert te.labels.tolist() == [0, 0, 1] and te.class_names == ["11319", "11320"]
    assert _check_item(tr, 3)["attributes"] == {"super_class": 2}
    (tmp_path / "Stanford_Online_Products" / "Ebay_test.txt").write_text("1 2 3 a.jpg\n")
    with pytest.raises(DatasetFormatError, match="Ebay_test.txt' line 1: expected the header"):
        create_dataset("sop", "test", root=tmp_path)


def test_inshop(tmp_path):
    base = write_inshop(tmp_path)
    tr = create_dataset("inshop", "train", root=base, transform=T8)
    q, g = create_dataset("inshop", "query", root=base, transform=T8), create_dataset("inshop", "gallery", root=base, transform=T8)
    assert (len(tr), len(q), len(g)) == (3, 2, 2)
    assert tr.labels.tolist() == [0, 0, 1]
    # query and gallery share one labelling: id_00000007 -> 0, id_00000050 -> 1
    assert q.labels.tolist() == [0, 1] and g.labels.tolist() == [0, 1] and q.class_names == g.class_names
    assert _check_item(q, 1)["view"] == "front" and g[1]["view"] == "back"
    assert len(create_dataset("inshop", "test", root=base, transform=T8)) == 4
    p = base / "Eval" / "list_eval_partition.txt"
    p.write_text(p.read_text().replace("gallery", "galery", 1))
    with pytest.raises(DatasetFormatError, match="train/query/gallery"):
        create_dataset("inshop", "query", root=base)


def _check_composed(ds):
    it = ds[0]
    assert it["reference"].shape == (3, 8, 8) and it["target"].shape == (3, 8, 8)
    assert it["target_index"] in ds.valid_targets[0] and isinstance(it["text"], str)
    assert len(ds.valid_targets) == len(ds)
    return it


def test_fashioniq(tmp_path):
    write_fashioniq(tmp_path)
    ds = create_dataset("fashioniq", "val", root=tmp_path, transform=T8)
    assert len(ds) == 6 and len(ds.gallery) == 9
    it = _check_composed(ds)
    assert it["text"] == "is darker and has long sleeves"
    assert ds.gallery.class_names[it["reference_index"]] == "B00DRv0" and ds.gallery.class_names[it["target_index"]] == "B00DRv1"
    assert ds.gallery.attributes[ds[5]["target_index"]] == {"category": "toptee"}
    assert len(create_dataset("fashioniq", "train", root=tmp_path, transform=T8, categories=["shirt"])) == 2
    with pytest.raises(ValueError, match="split: expected one of"):
        create_dataset("fashioniq", "test", root=tmp_path)
    (tmp_path / "fashionIQ" / "captions" / "cap.dress.val.json").write_text("[{\"target\": 1}]")
    with pytest.raises(DatasetFormatError, match="FashionIQ: malformed .*cap.dress.val.json.*candidate, target, captions"):
        create_dataset("fashioniq", "val", root=tmp_path)
    (tmp_path / "fashionIQ" / "image_splits" / "split.dress.val.json").unlink()
    with pytest.raises(FileNotFoundError, match="split.dress.val.json"):
        create_dataset("fashioniq", "val", root=tmp_path)


def test_shoes(tmp_path):
    write_shoes(tmp_path)
    tr, te = create_dataset("shoes", "train", root=tmp_path, transform=T8), create_dataset("shoes", "test", root=tmp_path, transform=T8)
    assert (len(tr), len(te), len(tr.gallery), len(te.gallery)) == (2, 1, 3, 2)
    it = _check_composed(tr)
    assert (it["reference_index"], it["target_index"], it["text"]) == (0, 1, "is darker")
    assert te.gallery.class_names == ["img_womens_boots_4.jpg", "img_womens_boots_5.jpg"]


def test_fashion200k(tmp_path):
    write_fashion200k(tmp_path)
    g = create_dataset("fashion200k", "test", root=tmp_path, transform=T8)
    assert g.class_names == ["blue cocktail dress", "green cocktail dress", "pleated mini skirt"]
    assert _check_item(g, 1)["text"] == "blue cocktail dress" and g.labels.tolist() == [0, 0, 1, 2]
    q = create_dataset("fashion200k_triplets", "test", root=tmp_path, transform=T8)
    assert len(q) == 2 and q.texts == ["replace blue with green", "replace green with blue"]
    assert q.valid_targets == [{2}, {0, 1}]
    _check_composed(q)
    tr = create_dataset("fashion200k_triplets", "train", root=tmp_path, transform=T8, n_triplets=6, seed=1)
    assert len(tr) == 6 and set(tr.texts) <= {"replace black with red", "replace red with black", "replace black with brown", "replace brown with black"}
    assert tr.texts == create_dataset("fashion200k_triplets", "train", root=tmp_path, transform=T8, n_triplets=6, seed=1).texts


def test_pascal_sentence(tmp_path):
    write_pascal_sentence(tmp_path)
    tr, te = create_dataset("pascal_sentence", "train", root=tmp_path, transform=T8), create_dataset("pascal_sentence", "test", root=tmp_path, transform=T8)
    assert tr.class_names == ["aeroplane", "bicycle"] and te.class_names == ["bird", "boat"]
    assert len(tr) == 4 and tr.labels.tolist() == [0, 0, 1, 1]
    it = _check_item(te, 2)
    assert it["text"].startswith("A boat picture, sentence 0.") and it["text"].count("sentence") == 5


def test_wikipedia(tmp_path):
    write_wikipedia(tmp_path)
    tr, te = create_dataset("wikipedia", "train", root=tmp_path, transform=T8), create_dataset("wikipedia", "test", root=tmp_path, transform=T8)
    assert tr.class_names == ["art", "biology", "geography", "history", "literature"] and te.class_names[0] == "media"
    assert len(tr) == len(te) == 10 and sorted(set(tr.labels.tolist())) == [0, 1, 2, 3, 4]
    it = _check_item(tr)
    assert it["text"] == "About art & more, part 0."
    std = create_dataset("wikipedia", "train", root=tmp_path, transform=T8, protocol="standard")
    assert len(std) == 10 and std.num_classes == 10
    (tmp_path / "wikipedia_dataset" / "testset_txt_img_cat.list").write_text("a\tb\tx\n")
    with pytest.raises(DatasetFormatError, match="Wikipedia .*testset_txt_img_cat.list.*expected an integer"):
        create_dataset("wikipedia", "test", root=tmp_path)


def test_default_transform_is_224(tmp_path):
    write_cub(tmp_path)
    assert create_dataset("cub200", root=tmp_path)[0]["image"].shape == (3, 224, 224)


def test_loader_batches_collate(tmp_path):
    write_wikipedia(tmp_path)
    ds = create_dataset("wikipedia", "train", root=tmp_path, transform=T8)
    b = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert b["image"].shape == (4, 3, 8, 8) and len(b["text"]) == 4 and b["label"].shape == (4,)
