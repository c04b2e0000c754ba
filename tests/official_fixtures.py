"""Writers of tiny benchmark folders in the official on-disk formats (8 x 8 images), for loader tests."""
import json
from pathlib import Path

import numpy as np
from PIL import Image


def _img(path: Path, colour=(200, 30, 30), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path, format=fmt)
    return path


def write_cub(root: Path, per_class: dict | None = None) -> Path:
    """CUB_200_2011/{images.txt, image_class_labels.txt, classes.txt, images/...}: `per_class` {class id: images},
    default 2 images in classes 1, 2, 101, 200."""
    base = root / "CUB_200_2011"
    rows = []
    for cls, n in (per_class or {1: 2, 2: 2, 101: 2, 200: 2}).items():
        for k in range(n):
            rel = f"{cls:03d}.Bird_{cls}/Bird_{cls}_{k:04d}_{cls}{k}.jpg"
            _img(base / "images" / rel, (cls, 10 * k, 0))
            rows.append((len(rows) + 1, rel, cls))
    (base / "images.txt").write_text("".join(f"{i} {rel}\n" for i, rel, _ in rows))
    (base / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, _, c in rows))
    (base / "classes.txt").write_text("".join(f"{c} {c:03d}.Bird_{c}\n" for c in range(1, 201)))
    (base / "train_test_split.txt").write_text("".join(f"{i} {i % 2}\n" for i, _, _ in rows))
    return base


def write_cars(root: Path) -> Path:
    """cars_annos.mat (struct array `annotations` with relative_im_path, bbox_*, class, test; cell `class_names`) + car_ims/."""
    from scipy.io import savemat
    base = root / "cars196"
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    classes = [1, 1, 98, 99, 150, 196]
    ann = np.zeros((1, len(classes)), dtype=[(f, "O") for f in fields])
    for i, c in enumerate(classes):
        rel = f"car_ims/{i + 1:06d}.jpg"
        _img(base / rel, (c, 0, 0))
        ann[0, i] = (rel, np.array([[1]], np.uint8), np.array([[1]], np.uint8), np.array([[7]], np.uint8),
                     np.array([[7]], np.uint8), np.array([[c]], np.uint8), np.array([[i % 2]], np.uint8))
    names = np.empty((1, 196), dtype=object)
    for c in range(196):
        names[0, c] = f"Make Model {c + 1} 2012"
    savemat(base / "cars_annos.mat", {"annotations": ann, "class_names": names})
    return base


def write_sop(root: Path) -> Path:
    """Stanford_Online_Products/{Ebay_train.txt, Ebay_test.txt} with header 'image_id class_id super_class_id path'."""
    base = root / "Stanford_Online_Products"
    train = [(1, 1, "bicycle_final/111_0.JPG"), (1, 1, "bicycle_final/111_1.JPG"), (2, 1, "bicycle_final/112_0.JPG"),
             (5, 2, "chair_final/115_0.JPG")]
    test = [(11319, 1, "bicycle_final/211_0.JPG"), (11319, 1, "bicycle_final/211_1.JPG"), (11320, 3, "lamp_final/212_0.JPG")]
    for name, rows, start in (("Ebay_train.txt", train, 1), ("Ebay_test.txt", test, 1)):
        lines = ["image_id class_id super_class_id path"]
        for i, (c, s, p) in enumerate(rows):
            _img(base / p, (c % 255, s, 0), fmt="JPEG")
            lines.append(f"{start + i} {c} {s} {p}")
        (base / name).write_text("\n".join(lines) + "\n")
    return base


def write_inshop(root: Path) -> Path:
    """In-shop: Eval/list_eval_partition.txt (count line, header line, rows) + img/WOMEN/.../id_xxx/NN_k_view.jpg."""
    base = root / "inshop"
    rows = [("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", "id_00000002", "train"),
            ("img/WOMEN/Dresses/id_00000002/02_2_side.jpg", "id_00000002", "train"),
            ("img/MEN/Denim/id_00000080/01_1_front.jpg", "id_00000080", "train"),
            ("img/WOMEN/Skirts/id_00000007/01_1_front.jpg", "id_00000007", "query"),
            ("img/WOMEN/Skirts/id_00000007/01_2_side.jpg", "id_00000007", "gallery"),
            ("img/MEN/Tees_Tanks/id_00000050/02_3_back.jpg", "id_00000050", "gallery"),
            ("img/MEN/Tees_Tanks/id_00000050/02_1_front.jpg", "id_00000050", "query")]
    for p, _, _ in rows:
        _img(base / p)
    (base / "Eval").mkdir(parents=True, exist_ok=True)
    text = f"{len(rows)}\nimage_name item_id evaluation_status\n" + "".join(f"{p}      {i}  {s}\n" for p, i, s in rows)
    (base / "Eval" / "list_eval_partition.txt").write_text(text)
    return base


def write_compcars(root: Path) -> Path:
    """CompCars web-nature: image/<make>/<model>/<year>/<name>.jpg + label/.../<name>.txt (viewpoint, box count, box)
    + train_test_split/classification/{train,test}.txt. Five models of four makes (78 has two), years 2008-2014 around
    2010; every model has a front view in train; 81/5's only train image is from 2013, so its 2011 test query has no
    database image in the open set's 2011 step."""
    base = root / "CompCars"
    items = [("78", "1", "2014", "a1", 1, "train"), ("78", "1", "2014", "a2", 3, "test"),
             ("78", "1", "2013", "a3", 2, "train"), ("78", "12", "2012", "b1", 4, "test"),
             ("78", "12", "2012", "b2", 3, "train"), ("79", "3", "2010", "c1", 5, "train"),
             ("79", "3", "2010", "c2", -1, "test"), ("80", "9", "2011", "d1", 3, "test"),
             ("78", "1", "2008", "a4", 1, "train"), ("78", "1", "2008", "a5", 3, "test"),
             ("78", "1", "2013", "a6", 3, "test"), ("78", "1", "2008", "a7", 2, "train"),
             ("78", "12", "2009", "b3", 1, "train"), ("78", "12", "2009", "b4", 2, "test"),
             ("78", "12", "2012", "b5", 1, "train"), ("78", "12", "2009", "b6", 3, "train"),
             ("78", "12", "2012", "b7", 3, "test"), ("79", "3", "2010", "c3", 1, "train"),
             ("79", "3", "2011", "c4", 3, "test"), ("80", "9", "2011", "d2", 1, "train"),
             ("80", "9", "2008", "d3", 2, "train"), ("80", "9", "2008", "d4", 1, "test"),
             ("81", "5", "2013", "e1", 1, "train"), ("81", "5", "2011", "e2", 3, "test")]
    lists = {"train": [], "test": []}
    for k, (make, model, year, name, view, split) in enumerate(items):
        _img(base / "image" / make / model / year / f"{name}.jpg", (40 * int(model) % 256, 20 * k % 256, 90))
        lab = base / "label" / make / model / year / f"{name}.txt"
        lab.parent.mkdir(parents=True, exist_ok=True)
        lab.write_text(f"{view}\n1\n1 1 7 7\n")
        lists[split].append(f"{make}/{model}/{year}/{name}.jpg")
    (base / "train_test_split" / "classification").mkdir(parents=True, exist_ok=True)
    for split, rows in lists.items():
        (base / "train_test_split" / "classification" / f"{split}.txt").write_text("".join(f"{r}\n" for r in rows))
    return base


def write_fashioniq(root: Path) -> Path:
    """fashionIQ/{captions/cap.<cat>.<split>.json, image_splits/split.<cat>.<split>.json, images/<asin>.jpg}.

    Each of dress, shirt, toptee has its own 3-image gallery per split and 2 triplets: the first with short
    captions (coarse, every caption under 5 words), the second with a long one (fine)."""
    base = root / "fashionIQ"
    for cat in ("dress", "shirt", "toptee"):
        for split in ("train", "val"):
            asins = [f"B00{cat[:2].upper()}{split[0]}{k}" for k in range(3)]
            for a in asins:
                _img(base / "images" / f"{a}.jpg")
            (base / "image_splits").mkdir(parents=True, exist_ok=True)
            (base / "image_splits" / f"split.{cat}.{split}.json").write_text(json.dumps(asins))
            caps = [{"target": asins[1], "candidate": asins[0], "captions": ["is darker", " has long sleeves"]},   # coarse (< 5 words)
                    {"target": asins[2], "candidate": asins[1], "captions": ["is shorter with a floral print", "is red"]}]
            (base / "captions").mkdir(parents=True, exist_ok=True)
            (base / "captions" / f"cap.{cat}.{split}.json").write_text(json.dumps(caps))
        (base / "captions" / f"cap.{cat}.test.json").write_text(json.dumps([{"candidate": "x", "captions": ["a", "b"]}]))
    return base


def write_shoes(root: Path) -> Path:
    """shoes/{relative_captions_shoes.json, train_im_names.txt, eval_im_names.txt, attributedata/womens_*/0/<name>.jpg}."""
    base = root / "shoes"
    train = ["img_womens_clogs_1.jpg", "img_womens_clogs_2.jpg", "img_womens_pumps_3.jpg"]
    test = ["img_womens_boots_4.jpg", "img_womens_boots_5.jpg"]
    for n in train + test:
        _img(base / "attributedata" / f"womens_{n.split('_')[2]}" / "0" / n)
    (base / "train_im_names.txt").write_text("\n".join(train) + "\n")
    (base / "eval_im_names.txt").write_text("\n".join(test) + "\n")
    caps = [{"ImageName": train[1], "ReferenceImageName": train[0], "RelativeCaption": "is darker "},
            {"ImageName": train[2], "ReferenceImageName": train[1], "RelativeCaption": "has a high heel"},
            {"ImageName": test[1], "ReferenceImageName": test[0], "RelativeCaption": "is taller"}]
    (base / "relative_captions_shoes.json").write_text(json.dumps(caps))
    return base


def write_fashion200k(root: Path, with_queries: bool = True) -> Path:
    """fashion200k/{labels/<cat>_<split>_detect_all.txt ('path<TAB>score<TAB>description'), women/..., test_queries.txt}."""
    base = root / "fashion200k"
    data = {"train": [("women/dresses/casual_and_day_dresses/51727804/51727804_0.jpeg", "black dress"),
                      ("women/dresses/casual_and_day_dresses/51727805/51727805_0.jpeg", "red dress"),
                      ("women/jackets/leather/4100/4100_0.jpeg", "black leather jacket"),
                      ("women/jackets/leather/4101/4101_1.jpeg", "brown leather jacket")],
            "test": [("women/dresses/cocktail/600/600_0.jpeg", "blue cocktail dress"),
                     ("women/dresses/cocktail/600/600_1.jpeg", "blue cocktail dress"),
                     ("women/dresses/cocktail/601/601_0.jpeg", "green cocktail dress"),
                     ("women/skirts/mini/700/700_0.jpeg", "pleated mini skirt")]}
    (base / "labels").mkdir(parents=True, exist_ok=True)
    for split, rows in data.items():
        by_cat = {}
        for p, d in rows:
            _img(base / p, fmt="JPEG")
            cat = {"dresses": "dress", "jackets": "jacket", "skirts": "skirt"}[p.split("/")[1]]
            by_cat.setdefault(cat, []).append(f"{p}\t0.87\t{d}\n")
        for cat, lines in by_cat.items():
            (base / "labels" / f"{cat}_{split}_detect_all.txt").write_text("".join(lines))
    if with_queries:
        q = data["test"]
        (base / "test_queries.txt").write_text(f"{q[0][0]} {q[2][0]}\n{q[2][0]} {q[1][0]}\n")
    return base


def write_pascal_sentence(root: Path, per_class: int = 2,
                          categories: tuple = ("aeroplane", "bicycle", "bird", "boat")) -> Path:
    """pascal_sentence/{dataset/<category>/<name>.jpg, sentence/<category>/<name>.txt}; `per_class` images a category.

    The colour of an image follows its category (and shifts with the image); sentence 1 names a colour that varies
    within a category, so captions of a class differ."""
    base = root / "pascal_sentence"
    for ci, c in enumerate(categories):
        for k in range(per_class):
            name = f"2008_00{k}{len(c)}"
            _img(base / "dataset" / c / f"{name}.jpg", (60 * ci % 256, 120 + 4 * k, 255 - 50 * ci % 256))
            (base / "sentence" / c).mkdir(parents=True, exist_ok=True)
            tone = ("red", "green", "blue")[k % 3]
            (base / "sentence" / c / f"{name}.txt").write_text(
                "".join(f" A {c} picture, sentence {s}{f' in {tone}' if s == 1 else ''}.\n" for s in range(5)))
    return base


def write_wikipedia(root: Path, per_class: int = 2) -> Path:
    """wikipedia_dataset/{categories.list, trainset_/testset_txt_img_cat.list, images/<cat>/<id>.jpg, texts/<id>.xml}.

    `per_class` pairs a category: the last one in testset_txt_img_cat.list, the others in trainset_txt_img_cat.list."""
    base = root / "wikipedia_dataset"
    cats = ["art", "biology", "geography", "history", "literature", "media", "music", "royalty", "sport", "warfare"]
    (base / "texts").mkdir(parents=True, exist_ok=True)
    (base / "categories.list").write_text("\n".join(cats) + "\n")
    rows = {"trainset_txt_img_cat.list": [], "testset_txt_img_cat.list": []}
    for c in range(1, 11):
        for k in range(per_class):
            tid, iid = f"{c:02d}{k}txt{'a' * c}", f"{c:02d}{k}img"
            _img(base / "images" / cats[c - 1] / f"{iid}.jpg")
            (base / "texts" / f"{tid}.xml").write_text(
                f'<?xml version="1.0" encoding="UTF-8"?>\n<document>\n<title>T{c}</title>\n<text>\nAbout {cats[c - 1]} & more, part {k}.\n</text>\n</document>\n')
            lst = "trainset_txt_img_cat.list" if k < per_class - 1 else "testset_txt_img_cat.list"
            rows[lst].append(f"{tid}\t{iid}\t{c}\n")
    for f, lines in rows.items():
        (base / f).write_text("".join(lines))
    return base
