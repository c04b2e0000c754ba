"""Run the five reproduction notebooks at their defaults and keep their light results in `results/<paper>/`.

    python scripts/run_defaults.py                  # all five, from the repository root
    python scripts/run_defaults.py gapan dmcac      # some of them

Each notebook runs through papermill from the repository root with no parameter at all, exactly as
`papermill nbs/2X_*.ipynb out.ipynb` does, so it writes into its config's `runs/<paper>` (that scratch folder,
ignored by git, is emptied first). Then `results.json`, `runs.csv`, `table.csv` and `figures/*.png` are copied
into `results/<paper>/` (checkpoints and logs are not kept), the executed notebook replaces `nbs/2X_*.ipynb`
(cleaned with `nbdev_clean`, outputs kept: the docs show them), and `results/timings.csv` records each
notebook's wall time and CPU time (children included).
"""
from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = {"gapan": "20_gapan_repro.ipynb", "fggan": "21_fggan_repro.ipynb", "dmcac": "22_dmcac_repro.ipynb",
             "cir": "23_cir_repro.ipynb", "fgan": "24_fgan_repro.ipynb"}
KEEP = ("results.json", "runs.csv", "table.csv")


def _cpu_seconds() -> float:
    "User + system CPU seconds of this process's finished children (the papermill kernels)"
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_one(paper: str, scratch: Path) -> tuple[Path, float, float]:
    "Execute `paper`'s notebook at its defaults; return its out_dir, wall seconds and CPU seconds"
    import papermill as pm
    out_dir = REPO / "runs" / paper                       # the glyph config's train.out_dir, below the repository root
    if out_dir.exists(): print(f"  emptying the scratch folder {out_dir}"); shutil.rmtree(out_dir)
    cpu0, t0 = _cpu_seconds(), time.time()
    pm.execute_notebook(str(REPO / "nbs" / NOTEBOOKS[paper]), str(scratch / NOTEBOOKS[paper]), cwd=str(REPO),
                        kernel_name="python3", progress_bar=False)
    return out_dir, time.time() - t0, _cpu_seconds() - cpu0


def keep_notebook(paper: str, scratch: Path):
    "The executed notebook, cleaned, replaces the source notebook (its outputs are what the docs show)"
    import subprocess
    done = scratch / NOTEBOOKS[paper]
    subprocess.run(["nbdev_clean", "--fname", str(done)], check=True, cwd=REPO, capture_output=True)
    shutil.copy2(done, REPO / "nbs" / NOTEBOOKS[paper])


def keep(paper: str, out_dir: Path, dest_root: Path):
    "Copy the light results of one run into `dest_root/paper` (replacing what was there)"
    missing = [n for n in KEEP if not (out_dir / n).is_file()]
    if missing: raise FileNotFoundError(f"{paper}: the notebook did not write {missing} into {out_dir}")
    dest = dest_root / paper
    tmp = dest_root / f".{paper}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "figures").mkdir(parents=True)
    for n in KEEP: shutil.copy2(out_dir / n, tmp / n)
    for png in sorted((out_dir / "figures").glob("*.png")): shutil.copy2(png, tmp / "figures" / png.name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)   # whole folder or nothing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("papers", nargs="*", default=list(NOTEBOOKS), help=f"any of {list(NOTEBOOKS)}")
    p.add_argument("--results", default=str(REPO / "results"), help="folder that receives results/<paper>/")
    p.add_argument("--scratch", default=None, help="keep the executed notebooks here")
    p.add_argument("--no-notebooks", action="store_true", help="leave nbs/2X_*.ipynb as they are")
    a = p.parse_args(argv)
    unknown = [x for x in a.papers if x not in NOTEBOOKS]
    if unknown: p.error(f"unknown paper(s) {unknown}; choose from {list(NOTEBOOKS)}")
    os.environ.setdefault("MPLBACKEND", "Agg")
    scratch = Path(a.scratch or tempfile.mkdtemp(prefix="fgr_defaults_"))
    scratch.mkdir(parents=True, exist_ok=True)
    dest_root = Path(a.results)
    dest_root.mkdir(parents=True, exist_ok=True)
    rows = []
    for paper in a.papers:
        print(f"[{time.strftime('%H:%M:%S')}] {paper}: {NOTEBOOKS[paper]} ...", flush=True)
        out_dir, wall, cpu = run_one(paper, scratch)
        keep(paper, out_dir, dest_root)
        if not a.no_notebooks: keep_notebook(paper, scratch)
        rows.append({"paper": paper, "notebook": NOTEBOOKS[paper], "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                     "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")})
        print(f"  {paper}: {wall:.1f} s wall, {cpu:.1f} s CPU -> {dest_root / paper}", flush=True)
    timings = dest_root / "timings.csv"
    old = [r for r in csv.DictReader(timings.open())] if timings.is_file() else []
    merged = [r for r in old if r["paper"] not in a.papers] + rows
    merged.sort(key=lambda r: list(NOTEBOOKS).index(r["paper"]))
    tmp = timings.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader(); w.writerows(merged)
    tmp.replace(timings)
    print(f"executed notebooks and full run folders: {scratch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
