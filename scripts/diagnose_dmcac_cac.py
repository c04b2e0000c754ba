"""What keeps DMCAC's cross-attention term (L_cac, Eq. 16-19) at chance on the glyphs: the measurements quoted in
nbs/12_dmcac.ipynb ("The CAC term on the glyphs").

Starts from the former glyph default (the 1280-d EfficientNet-Lite0 feature as z, k = 12, the database re-embedded every
2 epochs, 4 epochs at lr 3e-4; everything else as `configs/dmcac_glyphs.yaml`) and changes one setting at a time, in
the order of the table, ending at today's default. Each step trains `dmcac` with one seed through the same
`fgr_core.run.train_run` as `fgr-train` and the notebook, and records L_cac's last-epoch mean over its chance level
(A ln c) and Recall@1 on the unseen classes.

    python scripts/diagnose_dmcac_cac.py              # the whole ladder, seed 0 (about 6 minutes, 2 cores)
    python scripts/diagnose_dmcac_cac.py --steps former embed_dim_128 --seed 1
    python scripts/diagnose_dmcac_cac.py --steps      # only the head probe (below), under a minute

Before the ladder, a head probe: the CAC head of Eq. 16-18 and a plain linear classifier trained alone (200 Adam
steps, batches of 32 training queries with their 6 views, the whole database as the CAC's keys) on the frozen
EfficientNet-Lite0 features of the glyph default; their cross-entropy per view over ln c, last 20 steps.

Writes `results/diagnostics/dmcac_cac.json` (the head probe's ratios; per step: the overrides, the per-epoch L_ce
and L_cac, the ratio to chance, R@1 in percent, seconds).
"""
import argparse, json, math, time
from pathlib import Path

import torch
import torch.nn.functional as F

from fgr_core.backbones import create_image_backbone
from fgr_core.core import atomic_write
from fgr_core.data import make_views
from fgr_core.dmcac import CrossAttentionClassifier, stratified_split, view_ce_loss
from fgr_core.repro import health_of
from fgr_core.run import build_datasets, load_experiment, train_run

FORMER = {"model.embed_dim": 0, "model.k": 12, "model.refresh_every": 2, "train.epochs": 4, "train.lr": 3e-4}
LADDER = {   # step -> overrides on top of FORMER (cumulative from embed_dim_128 on, as the table reads)
    "former": {},
    "new_lr_mult_30": {"model.new_lr_mult": 30.0},
    "full_retrieval": {"model.retrieval": "full"},
    "k_3": {"model.k": 3},
    "embed_dim_128": {"model.embed_dim": 128},
    "+refresh_every_1": {"model.embed_dim": 128, "model.refresh_every": 1},
    "+epochs_6": {"model.embed_dim": 128, "model.refresh_every": 1, "train.epochs": 6},
    "+k_3": {"model.embed_dim": 128, "model.refresh_every": 1, "train.epochs": 6, "model.k": 3},
    "+lr_6e-4 (default)": {},   # today's configs/dmcac_glyphs.yaml, FORMER not applied
}


def head_probe(steps:int=200, lrs:tuple=(3e-4, 3e-3), seed:int=0)->dict:
    "Cross-entropy per view over ln c of the CAC head and of a linear classifier, each trained alone on frozen features"
    exp = load_experiment("dmcac_glyphs")
    ds = build_datasets(exp.data)[0]
    y = torch.unique(torch.as_tensor(ds.labels), return_inverse=True)[1]; c = int(y.max()) + 1
    net = create_image_backbone(exp.model["image_backbone"], pretrained=True).eval()
    with torch.no_grad():
        x = torch.stack([ds[i]["image"] for i in range(len(ds))])
        views = make_views(x, exp.model["A"], generator=torch.Generator().manual_seed(seed))        # (N, A, 3, H, W)
        z = torch.cat([net(v)[0] for v in views.flatten(0, 1).split(256)]).view(len(x), exp.model["A"], -1)   # raw z
    q, db = stratified_split(y, exp.model["database_fraction"], torch.Generator().manual_seed(seed))
    out = {}
    for lr in lrs:
        for name in ("cac", "linear"):
            torch.manual_seed(seed)
            head = CrossAttentionClassifier(z.shape[-1], c) if name == "cac" else torch.nn.Linear(z.shape[-1], c, bias=False)
            opt, g, hist = torch.optim.Adam(head.parameters(), lr), torch.Generator().manual_seed(seed), []
            for _ in range(steps):
                b = q[torch.randint(len(q), (32,), generator=g)]
                logits = head(z[b], z[db, 0])[0] if name == "cac" else head(z[b])
                loss = view_ce_loss(logits, y[b]) / z.shape[1]                       # per view
                opt.zero_grad(); loss.backward(); opt.step(); hist.append(loss.item())
            out[f"{name}_lr{lr:g}"] = round(sum(hist[-20:]) / 20 / math.log(c), 3)
    return out


def run_step(step:str, seed:int, scratch:Path)->dict:
    "Train `dmcac` for one ladder step and one seed; L_cac against chance and R@1"
    over = LADDER[step] if step.endswith("(default)") else {**FORMER, **LADDER[step]}
    exp = load_experiment("dmcac_glyphs", {**over, "methods": ["dmcac"], "seeds": [seed], "train.overwrite": True,
                                           "train.out_dir": str(scratch / step.replace(" ", "_"))})
    t0 = time.time()
    res = train_run(exp.run_config("dmcac", seed))
    health = health_of(res["history"], res["model"].chance_levels())
    return {"overrides": over, "ce": [round(e["ce"], 3) for e in res["history"]["train"]],
            "cac": [round(e["cac"], 3) for e in res["history"]["train"]],
            "cac_over_chance": round(health["cac"]["last"] / health["cac"]["chance"], 3),
            "R@1": round(100 * res["metrics"]["R@1"], 2), "seconds": round(time.time() - t0)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", nargs="*", default=list(LADDER), choices=list(LADDER))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("results/diagnostics/dmcac_cac.json"))
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/fgr_dmcac_diagnostics"), help="run folders")
    a = ap.parse_args()
    probe = head_probe(seed=a.seed)
    print("head probe (CE per view / ln c, frozen features):", probe, flush=True)
    out = {}
    with atomic_write(a.out, "w") as f: json.dump({"seed": a.seed, "head_probe": probe, "steps": out}, f, indent=1)
    for step in a.steps:
        out[step] = r = run_step(step, a.seed, a.scratch)
        print(f"{step:20s} L_cac/chance {r['cac_over_chance']:.2f}  R@1 {r['R@1']:.1f}  ({r['seconds']} s)", flush=True)
        with atomic_write(a.out, "w") as f: json.dump({"seed": a.seed, "head_probe": probe, "steps": out}, f, indent=1)
