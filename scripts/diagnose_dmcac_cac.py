"""What keeps DMCAC's cross-attention term (L_cac, Eq. 16-19) at chance on the glyphs: the measurements quoted in
nbs/12_dmcac.ipynb ("The CAC term on the glyphs").

Starts from the former glyph default (the 1280-d EfficientNet-Lite0 feature as z, k = 12, the database re-embedded every
2 epochs, 4 epochs at lr 3e-4; everything else as `configs/dmcac_glyphs.yaml`) and changes one setting at a time, in
the order of the table, ending at today's default. Each step trains `dmcac` with one seed through the same
`fgr_core.run.train_run` as `fgr-train` and the notebook, and records L_cac's last-epoch mean over its chance level
(A ln c) and Recall@1 on the unseen classes.

    python scripts/diagnose_dmcac_cac.py              # the whole ladder, seed 0 (about 6 minutes, 2 cores)
    python scripts/diagnose_dmcac_cac.py --steps former embed_dim_128 --seed 1

Writes `results/diagnostics/dmcac_cac.json` (per step: the overrides, the per-epoch L_ce and L_cac, the ratio to
chance, R@1 in percent, seconds).
"""
import argparse, json, time
from pathlib import Path

from fgr_core.core import atomic_write
from fgr_core.repro import health_of
from fgr_core.run import load_experiment, train_run

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
    ap.add_argument("--steps", nargs="+", default=list(LADDER), choices=list(LADDER))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("results/diagnostics/dmcac_cac.json"))
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/fgr_dmcac_diagnostics"), help="run folders")
    a = ap.parse_args()
    out = {}
    for step in a.steps:
        out[step] = r = run_step(step, a.seed, a.scratch)
        print(f"{step:20s} L_cac/chance {r['cac_over_chance']:.2f}  R@1 {r['R@1']:.1f}  ({r['seconds']} s)", flush=True)
        with atomic_write(a.out, "w") as f: json.dump({"seed": a.seed, "steps": out}, f, indent=1)
