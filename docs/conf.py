"""Sphinx configuration of the offline docs site: renders nbdev's processed notebooks (`_proc/`) with myst-nb.

Built by `python docs/build.py`; nothing is executed (the stored outputs are shown) and MathJax is served from the
site itself (`sphinx-mathjax-offline`), so the site needs no network, neither to build nor to read.
"""
from configparser import ConfigParser
from pathlib import Path
import json
import re

import yaml

_cfg = ConfigParser(delimiters=["="])
_cfg.read(Path(__file__).resolve().parents[1] / "settings.ini", encoding="utf-8")
_cfg = _cfg["DEFAULT"]

project = _cfg["title"]
author = _cfg["author"]
copyright = _cfg["copyright"]
release = _cfg["version"]

extensions = ["myst_nb", "sphinx-mathjax-offline"]  # the latter copies MathJax 3 into _static/mathjax
nb_execution_mode = "off"                            # render the committed outputs, never execute
nb_render_markdown_format = "myst"                   # show_doc tables and code blocks in text/markdown outputs
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "*.yml"]
suppress_warnings = ["myst.header", "myst.xref_missing", "mystnb.unknown_mime_type", "misc.highlighting_failure"]

html_theme = "sphinx_book_theme"
html_title = project
html_theme_options = {"use_repository_button": False, "use_download_button": False,
                      "show_toc_level": 2}
html_last_updated_fmt = None
html_favicon = "favicon.png"                  # else the browser asks for /favicon.ico (a 404)
html_static_path = ["static"]
html_css_files = ["fgr.css"]                  # tables wrap inside the page's column
html_copy_source = False                      # no `_sources/` copies of the notebooks (the site shows them)
html_context = {"default_mode": "light"}      # else the theme logs "invalid theme mode" as a console error

_FRONT = re.compile(r"^---\s*\n(.*?)\n---", re.S)
_QUARTO_ATTRS = re.compile(r"\{target=\"_blank\"[^}]*\}")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_MD_LINK = re.compile(r"\[`?([^\]`]+)`?\]\([^)\s]+\)")
_NUMBER = re.compile(r"^(\d+)([a-z]?)_")
# The sidebar's groups, by a notebook's number: each group runs from its number to the next group's
GROUPS = [(0, "Foundations"), (10, "Methods"), (15, "Tools"), (20, "Reproductions"), (30, "Results")]


def _cell_lines(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _front_matter(text: str) -> dict:
    "nbdev's YAML front matter (title, description, ...) of a processed notebook's first raw cell"
    return yaml.safe_load(_FRONT.match(text).group(1)) or {}


def page_title(docname: str, title: str) -> str:
    "A page's title as the sidebar and the page show it: `10 · GAPan: ...` (the notebook's number, then its title)"
    m = _NUMBER.match(docname)
    return f"{m.group(1)}{m.group(2)} · {title}" if m else title


def nav_groups(docnames) -> dict:
    "Notebooks by sidebar group (`GROUPS`), each group in notebook order; pages without a number are left out"
    groups = {}
    for d in sorted(docnames):
        m = _NUMBER.match(d)
        if m: groups.setdefault([g for n, g in GROUPS if n <= int(m.group(1))][-1], []).append(d)
    return {g: groups[g] for _, g in GROUPS if g in groups}


def _md_cell(cell_id: str, text: str) -> dict:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": text}


def _to_sphinx(app, docname, source):
    "Turn what nbdev's processing leaves for Quarto into what myst-nb renders"
    if not str(app.env.doc2path(docname)).endswith(".ipynb"): return
    nb = json.loads(source[0])
    cells = nb["cells"]
    if cells and cells[0]["cell_type"] == "raw" and _FRONT.match(_cell_lines(cells[0])):
        fm = _front_matter(_cell_lines(cells[0]))
        text = f"# {page_title(docname, fm.get('title', docname))}\n" + (
            f"\n> {fm['description']}\n" if fm.get("description") else "")
        cells[0] = _md_cell("fgr-front-matter", text)
    for i, c in enumerate(cells):
        c.setdefault("id", f"fgr-proc-{i}")   # nbdev's processing adds cells without ids (nbformat would warn)
        if c["cell_type"] != "code": continue
        lines = _cell_lines(c).splitlines()
        dirs = {l.split(":", 1)[0][3:].strip(): l.split(":", 1)[-1].strip() for l in lines if l.startswith("#|")}
        tags = c.setdefault("metadata", {}).setdefault("tags", [])
        if dirs.get("echo") == "false": tags.append("remove-input")
        if dirs.get("output") == "false": tags.append("remove-output")
        if dirs.get("include") == "false": tags.append("remove-cell")
        c["source"] = "\n".join(l for l in lines if not l.startswith("#|"))
        for o in c.get("outputs", []):
            md = o.get("data", {}).get("text/markdown")
            if md is not None:
                md = _QUARTO_ATTRS.sub("", "".join(md) if isinstance(md, list) else md)
                md = _FENCE.sub(lambda f: _MD_LINK.sub(r"\1", f.group(0)), md)   # signatures show names, not links
                o["data"]["text/markdown"] = re.sub(r"^---\s*\n", "", md)   # show_doc's leading rule
    if docname == "index":   # README.md's links to `nbs/<notebook>.ipynb` become links to the notebook's page
        for c in cells:
            if c["cell_type"] == "markdown": c["source"] = _cell_lines(c).replace("](nbs/", "](")
        groups = nav_groups(p.stem for p in Path(app.srcdir).glob("*.ipynb"))
        cells += [_md_cell(f"fgr-toc-{i}", f"```{{toctree}}\n:maxdepth: 1\n:caption: {g}\n\n" + "\n".join(d) + "\n```\n")
                  for i, (g, d) in enumerate(groups.items())]
    source[0] = json.dumps(nb)


def setup(app):
    app.connect("source-read", _to_sphinx)
