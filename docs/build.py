"""Build the offline docs site: nbdev's processing (`nbs/` -> `_proc/`), then Sphinx (`_proc/` -> `_docs_site/`).

    python docs/build.py [--out DIR] [--force]

Quarto (which `nbdev_docs` needs) has no wheel, so the site is rendered by Sphinx + myst-nb (see `docs/conf.py`).
`nbdev_docs` keeps working for those who have Quarto.
"""
from pathlib import Path
import argparse
import subprocess
import sys
import time

from fastcore.xtras import working_directory
from nbdev.serve import proc_nbs   # not the `nbdev_proc_nbs` CLI: without Quarto, that one runs `pip install -e .[dev]`

REPO = Path(__file__).resolve().parents[1]


def build(out: Path = REPO / "_docs_site", force: bool = False) -> Path:
    "Process the notebooks and render the site into `out`; returns the home page"
    with working_directory(REPO): proc_nbs(force=force)   # nbdev finds settings.ini from the working folder
    subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-c", str(REPO / "docs"),
                    str(REPO / "_proc"), str(out)], check=True)
    home = out / "index.html"
    if not home.is_file(): raise FileNotFoundError(f"the Sphinx build wrote no {home}")
    return home


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "_docs_site", help="output folder (default: _docs_site/)")
    ap.add_argument("--force", action="store_true", help="re-process every notebook, ignoring _proc/'s cache")
    a = ap.parse_args()
    t0 = time.time()
    print(f"docs: {build(a.out, a.force)} in {time.time() - t0:.0f} s")
