"""Build the offline docs site: nbdev's processing (`nbs/` -> `_proc/`), then Sphinx (`_proc/` -> `_docs_site/`).

    python docs/build.py [--out DIR] [--force] [--index-only]

Quarto (which `nbdev_docs` needs) has no wheel, so the site is rendered by Sphinx + myst-nb (see `docs/conf.py`).
`nbdev_docs` keeps working for those who have Quarto.
"""
from pathlib import Path
import argparse
import json
import re
import subprocess
import sys
import time

from fastcore.xtras import working_directory
from nbdev.serve import proc_nbs   # not the `nbdev_proc_nbs` CLI: without Quarto, that one runs `pip install -e .[dev]`

from fgr_core.core import atomic_write

REPO = Path(__file__).resolve().parents[1]


def readme_to_index(readme: Path = REPO / "README.md", dest: Path = REPO / "nbs" / "index.ipynb") -> bool:
    "Write nbdev's home page `nbs/index.ipynb` from README.md (one markdown cell per section); True if it changed"
    sections = re.split(r"\n(?=## )", readme.read_text(encoding="utf-8").strip("\n"))
    title, intro = sections[0].split("\n", 1)   # the `# title` cell becomes nbdev's front matter
    lines = lambda t: [l + "\n" for l in t.split("\n")[:-1]] + [t.split("\n")[-1]]
    cells = [{"cell_type": "markdown", "id": f"1de{i:05x}", "metadata": {}, "source": lines(t.strip("\n"))}
             for i, t in enumerate([title, intro, *sections[1:]])]
    kernel = {"display_name": "python3", "language": "python", "name": "python3"}
    nb = {"cells": cells, "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}
    text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if dest.is_file() and dest.read_text(encoding="utf-8") == text: return False
    with atomic_write(dest, "w") as f: f.write(text)
    return True


def build(out: Path = REPO / "_docs_site", force: bool = False) -> Path:
    "Refresh `nbs/index.ipynb` from README.md, process the notebooks and render the site into `out`; the home page"
    if readme_to_index(): print("docs: nbs/index.ipynb refreshed from README.md")
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
    ap.add_argument("--index-only", action="store_true", help="only refresh nbs/index.ipynb from README.md")
    a = ap.parse_args()
    if a.index_only: sys.exit(print(f"docs: nbs/index.ipynb {'refreshed' if readme_to_index() else 'up to date'}"))
    t0 = time.time()
    print(f"docs: {build(a.out, a.force)} in {time.time() - t0:.0f} s")
