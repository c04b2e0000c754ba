"""Build the offline docs site: nbdev's processing (`nbs/` -> `_proc/`), then Sphinx (`_proc/` -> `_docs_site/`).

    python docs/build.py [--out DIR] [--force] [--index-only]

Quarto (which `nbdev_docs` needs) has no wheel, so the site is rendered by Sphinx + myst-nb (see `docs/conf.py`).
`nbdev_docs` keeps working for those who have Quarto.
"""
from configparser import ConfigParser
from html import escape
from pathlib import Path
from urllib.parse import unquote
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
SOURCES = "_modules"   # the site's copy of the library, one highlighted page per module: `_modules/<module>.py.html`


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


def _settings() -> dict:
    cfg = ConfigParser(delimiters=["="]); cfg.read(REPO / "settings.ini", encoding="utf-8")
    return dict(cfg["DEFAULT"])


def page_of_module(nbs: Path = REPO / "nbs") -> dict:
    "nbdev's page name of each notebook (`flows.html`, number prefix dropped) -> this site's page (`04_flows.html`)"
    return {re.sub(r"^\d+[a-z]?_", "", p.stem) + ".html": p.stem + ".html" for p in sorted(nbs.glob("*.ipynb"))
            if p.stem != "index"}


def ship_sources(out: Path, lib: Path) -> list:
    "Write each module of `lib` as `out/_modules/<module>.py.html`, highlighted, each line an anchor `#L<n>`"
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer
    dest = out / SOURCES; dest.mkdir(parents=True, exist_ok=True)
    fmt = HtmlFormatter(linenos="inline", lineanchors="L", anchorlinenos=True, wrapcode=True)
    style = "body{font:13px/1.45 monospace;margin:1em} a{color:inherit;text-decoration:none}" + fmt.get_style_defs(".highlight")
    pages = []
    for py in sorted(lib.glob("*.py")):
        body = highlight(py.read_text(encoding="utf-8"), PythonLexer(), fmt).replace('id="L-', 'id="L').replace('href="#L-', 'href="#L')
        title = f"{lib.name}/{py.name}"
        (dest / f"{py.name}.html").write_text(
            f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{style}</style></head><body><p><a href=\"../index.html\">{escape(_settings()['title'])}</a> · "
            f"<b>{escape(title)}</b></p>\n{body}</body></html>\n", encoding="utf-8")
        pages.append(dest / f"{py.name}.html")
    return pages


_HREF = re.compile(r'(href|src)="([^"]*)"')


def localise_links(out: Path) -> int:
    """Point every link nbdev wrote for its own host into this site; the number of links changed.

    nbdev links names to `<doc_host><doc_baseurl>/<page>.html#<name>` and "source" to `<git_url>/blob/<branch>/...`,
    hosts that do not serve this offline site. Names go to this site's page (`flows.html` -> `04_flows.html`; the
    fragment kept where the page has that anchor), sources to `_modules/<module>.py.html#L<line>`."""
    s = _settings()
    docs = s["doc_host"].rstrip("/") + "/" + s["doc_baseurl"].strip("/") + "/"
    code = f"{s['git_url'].rstrip('/')}/blob/{s['branch']}/{s['lib_path']}/"
    pages, ids, n = page_of_module(), {}, 0

    def anchors(page: str) -> set:
        if page not in ids:
            f = out / page
            ids[page] = set(re.findall(r'\bid="([^"]*)"', f.read_text(encoding="utf-8"))) if f.is_file() else set()
        return ids[page]

    def local(m) -> str:
        nonlocal n
        attr, url = m.groups()
        if url.startswith(docs):
            page, _, frag = url[len(docs):].partition("#")
            page = pages.get(page, page)
            url = page + (f"#{frag}" if frag and unquote(frag) in anchors(page) else "")
        elif url.startswith(code):
            mod, _, line = url[len(code):].partition("#")
            url = f"{SOURCES}/{mod}.html" + (f"#{line}" if line else "")
        else: return m.group(0)
        n += 1
        return f'{attr}="{url}"'

    for f in sorted(out.glob("*.html")):
        text = f.read_text(encoding="utf-8")
        new = _HREF.sub(local, text)
        if new != text: f.write_text(new, encoding="utf-8")
    return n


def build(out: Path = REPO / "_docs_site", force: bool = False) -> Path:
    "Refresh `nbs/index.ipynb` from README.md, process the notebooks and render the site into `out`; the home page"
    if readme_to_index(): print("docs: nbs/index.ipynb refreshed from README.md")
    with working_directory(REPO): proc_nbs(force=force)   # nbdev finds settings.ini from the working folder
    subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-c", str(REPO / "docs"),
                    str(REPO / "_proc"), str(out)], check=True)
    ship_sources(out, REPO / _settings()["lib_path"])
    localise_links(out)
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
