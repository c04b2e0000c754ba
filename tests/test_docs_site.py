"""The offline docs site (`docs/build.py`) builds and its pages work in a real browser (headless Chromium).

Chromium is driven over the Chrome DevTools protocol (`websocket-client`); the site is served from 127.0.0.1.
Set `FGR_DOCS_SCREENSHOTS=<folder>` to keep a PNG of every page checked.
"""
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse
import base64
import functools
import http.server
import importlib.util
import itertools
import json
import re
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

REPO = Path(__file__).resolve().parents[1]
ALL_PAGES = sorted(p.stem for p in (REPO / "nbs").glob("*.ipynb"))   # every notebook is a page of the site
# Links that may leave the site: citations of published work and the tools it builds on (they serve their own
# pages). Anything else must resolve inside `_docs_site/`: no placeholder hosts (fgr.github.io, github.com/fgr).
CITATION_PREFIXES = ("https://arxiv.org/abs/", "https://doi.org/", "https://nbdev.fast.ai",
                     "https://github.com/bayesiains/", "https://github.com/ShipingGe/FGAN",   # cited code: nflows, the authors'
                     "https://github.com/Monoxide-Chen/uncertainty_retrieval")
MATH_PAGES = {"04_flows", "07_topk", "10_gapan", "13_cir"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class _CDP:
    "Minimal Chrome DevTools protocol client: one websocket to the browser, flat sessions for pages"
    def __init__(self, ws_url: str):
        import websocket
        self.ws, self.ids, self.events = websocket.create_connection(ws_url, timeout=60, suppress_origin=True), itertools.count(1), []

    def send(self, method: str, session: str | None = None, **params) -> dict:
        i = next(self.ids)
        msg = {"id": i, "method": method, "params": params}
        self.ws.send(json.dumps({**msg, "sessionId": session} if session else msg))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == i:
                if "error" in msg: raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            self.events.append(msg)

    def wait_for(self, method: str, session: str, timeout: float = 60):
        end = time.time() + timeout
        while time.time() < end:
            if any(e.get("method") == method and e.get("sessionId") == session for e in self.events): return
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(f"no {method} within {timeout} s")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("docs_build", REPO / "docs" / "build.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    t0 = time.time()
    home = mod.build(tmp_path_factory.mktemp("docs") / "site")
    print(f"docs build: {time.time() - t0:.0f} s")
    return home.parent


@pytest.fixture(scope="module")
def server(site):
    quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    handler = functools.partial(quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None: pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run does, as root)")
    pytest.importorskip("websocket", reason="websocket-client (a dev requirement) drives Chromium")
    prof = tempfile.mkdtemp()
    proc = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--remote-debugging-port=0", f"--user-data-dir={prof}", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             "--disable-default-apps", "--window-size=1280,900", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file, end = Path(prof) / "DevToolsActivePort", time.time() + 60
    while not (port_file.is_file() and len(port_file.read_text().split()) == 2):
        if time.time() > end or proc.poll() is not None:
            raise RuntimeError(f"{CHROMIUM} did not start (exit code {proc.poll()})")
        time.sleep(0.2)
    port, path = port_file.read_text().split()
    cdp = _CDP(f"ws://127.0.0.1:{port}{path}")
    yield cdp
    cdp.ws.close(); proc.terminate(); proc.wait(30); shutil.rmtree(prof, ignore_errors=True)


_CHECK_JS = """(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  await Promise.all(Array.from(document.images).map(
    i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  return JSON.stringify({math: document.querySelectorAll('mjx-container').length,
    math_errors: document.querySelectorAll('mjx-merror').length,
    broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    images: document.images.length, title: document.title,
    wide_math: Array.from(document.querySelectorAll('mjx-container[display="true"]')).map((m, i) => [i, m])
      .filter(([i, m]) => m.scrollWidth > m.clientWidth + 2)
      .map(([i, m]) => `display formula ${i} in section #${(m.closest('section') || {}).id}`),
    wide_tables: Array.from(document.querySelectorAll('article table')).filter(
      t => t.getBoundingClientRect().right > t.closest('article').getBoundingClientRect().right + 2)
      .map(t => t.textContent.trim().slice(0, 60))});
})()"""


def _visit(cdp: _CDP, url: str, shot: Path | None) -> dict:
    "Load `url` in a fresh tab; the page's facts, console errors and every URL it requested"
    target = cdp.send("Target.createTarget", url="about:blank")["targetId"]
    s = cdp.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"): cdp.send(f"{domain}.enable", s)
    start = len(cdp.events)
    cdp.send("Page.navigate", s, url=url)
    cdp.wait_for("Page.loadEventFired", s)
    res = cdp.send("Runtime.evaluate", s, expression=_CHECK_JS, awaitPromise=True, returnByValue=True)
    facts = json.loads(res["result"]["value"])
    if shot is not None:
        shot.write_bytes(base64.b64decode(cdp.send("Page.captureScreenshot", s, format="png")["data"]))
    ev = [e for e in cdp.events[start:] if e.get("sessionId") == s]
    facts["errors"] = ([e["params"]["entry"]["text"] + " " + e["params"]["entry"].get("url", "") for e in ev
                        if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]
                       + [str(e["params"]["args"]) for e in ev if e["method"] == "Runtime.consoleAPICalled"
                          and e["params"]["type"] in ("error", "assert")]
                       + [e["params"]["exceptionDetails"]["text"] for e in ev
                          if e["method"] == "Runtime.exceptionThrown"])
    facts["requests"] = [e["params"]["request"]["url"] for e in ev if e["method"] == "Network.requestWillBeSent"]
    cdp.send("Target.closeTarget", targetId=target)
    return facts


def test_home_page_is_the_readme():
    "nbs/index.ipynb (nbdev's readme_nb, the site's home page) says what README.md says, CI marker included"
    cells = json.loads((REPO / "nbs" / "index.ipynb").read_text(encoding="utf-8"))["cells"]
    words = lambda t: " ".join(t.split())
    home = words(" ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown"))
    readme = words((REPO / "README.md").read_text(encoding="utf-8"))
    assert home == readme, "nbs/index.ipynb and README.md differ: run `python docs/build.py --index-only`"
    assert "<!-- test-command -->" in home


@pytest.mark.slow
@pytest.mark.parametrize("page", ALL_PAGES)
def test_page_works_offline(page, site, server, browser):
    if not (site / f"{page}.html").is_file():
        pytest.fail(f"the docs build wrote no {page}.html; pages: {sorted(p.name for p in site.glob('*.html'))}")
    shots = os.environ.get("FGR_DOCS_SCREENSHOTS")
    if shots: Path(shots).mkdir(parents=True, exist_ok=True)
    f = _visit(browser, f"{server}/{page}.html", Path(shots) / f"{page}.png" if shots else None)
    host = urlparse(server).netloc
    outside = [u for u in f["requests"]
               if urlparse(u).scheme not in ("data", "blob", "file") and urlparse(u).netloc != host]
    assert not outside, f"{page}: requests leaving the machine: {outside}"
    assert len(f["requests"]) > 1, f"{page}: the page requested nothing besides itself: {f['requests']}"
    assert not f["errors"], f"{page}: console errors: {f['errors']}"
    assert not f["broken"], f"{page}: images that did not load: {f['broken']}"
    assert f["math_errors"] == 0, f"{page}: {f['math_errors']} formulas MathJax could not typeset (red in the page)"
    assert not f["wide_math"], f"{page}: displayed formulas wider than the page's column (break them): {f['wide_math']}"
    assert not f["wide_tables"], f"{page}: tables running off the page's column: {f['wide_tables']}"
    if page in MATH_PAGES:
        assert f["math"] > 10, f"{page}: only {f['math']} typeset formulas (mjx-container)"
        assert any("/_static/mathjax/" in u for u in f["requests"]), f"{page}: MathJax not loaded from the site itself"


class _Page(HTMLParser):
    """One built page, parsed: its visible prose (text outside code, maths and scripts), every `href`/`src`, and
    every anchor target (`id`, `name`)."""
    HIDDEN = {"script", "style", "pre", "code", "kbd", "samp", "textarea", "mjx-container", "head", "svg"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.stack, self.prose, self.links, self.ids = [], [], [], set()
        self.feed(html); self.close()

    def _hidden(self, tag, attrs) -> bool:
        classes = (dict(attrs).get("class") or "").split()
        return tag in self.HIDDEN or "math" in classes or "highlight" in classes

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [a[k] for k in ("href", "src") if a.get(k) is not None]
        self.ids |= {a[k] for k in ("id", "name") if a.get(k)}
        if tag not in self.VOID: self.stack.append(self._hidden(tag, attrs))

    def handle_startendtag(self, tag, attrs):
        a = dict(attrs)
        self.links += [a[k] for k in ("href", "src") if a.get(k) is not None]
        self.ids |= {a[k] for k in ("id", "name") if a.get(k)}

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack: self.stack.pop()

    def handle_data(self, data):
        if not any(self.stack): self.prose.append(data)


# A `$`, or a LaTeX command / sub- or superscript group, in prose: maths MyST did not parse (e.g. `$$...$$` glued to
# the text above it), shown to the reader as source.
_RAW_MATH = re.compile(r"\$|\\(?:[a-zA-Z]{2,}|[{}|,;!])|[_^]\{")


def raw_math(html: str) -> list[str]:
    "Snippets of visible prose (outside code, maths and scripts) of a page that still hold `$` or raw LaTeX"
    text = " ".join(" ".join(_Page(html).prose).split())
    return [text[max(0, m.start() - 40):m.end() + 40] for m in _RAW_MATH.finditer(text)]


def bad_links(page: Path, site: Path, _ids: dict = {}) -> list[str]:
    """`href`s and `src`s of `page` that do not resolve: a file missing from `site`, a fragment with no such `id` in
    its target, or a link leaving the site that is not a citation (`CITATION_PREFIXES`)."""
    def ids(p: Path) -> set:
        if p not in _ids: _ids[p] = _Page(p.read_text(encoding="utf-8", errors="replace")).ids
        return _ids[p]
    bad = []
    for link in _Page(page.read_text(encoding="utf-8")).links:
        u = urlparse(link)
        if u.scheme in ("data", "blob"): continue
        if u.scheme or u.netloc:
            if not link.startswith(CITATION_PREFIXES): bad.append(f"{link} (leaves the site)")
            continue
        target = (page.parent / unquote(u.path)).resolve() if u.path else page.resolve()
        if not target.is_relative_to(site.resolve()): bad.append(f"{link} (outside {site.name})")
        elif not target.is_file(): bad.append(f"{link} (no such file)")
        elif u.fragment and target.suffix == ".html" and unquote(u.fragment) not in ids(target):
            bad.append(f"{link} (no id {u.fragment!r} in {target.name})")
    return bad


@pytest.fixture(scope="module")
def built(site):
    "The built site's pages by name"
    return {p.stem: p for p in site.glob("*.html")}


@pytest.mark.slow
@pytest.mark.parametrize("page", ALL_PAGES)
def test_page_has_no_raw_math(page, built):
    "Every formula was parsed as maths: no `$` or LaTeX source left in the page's prose"
    assert page in built, f"the docs build wrote no {page}.html"
    left = raw_math(built[page].read_text(encoding="utf-8"))
    assert not left, f"{page}.html shows maths as source (fix the $$ display's blank lines in nbs/{page}.ipynb): {left}"


@pytest.mark.slow
@pytest.mark.parametrize("page", ALL_PAGES + ["genindex", "search"])
def test_page_links_resolve(page, built, site):
    "Every href and src of every page resolves inside the site (file and fragment), or cites published work"
    assert page in built, f"the docs build wrote no {page}.html"
    bad = bad_links(built[page], site)
    assert not bad, f"{page}.html: {len(bad)} links that do not resolve, e.g. {bad[:8]}"


def low_dpi_figures(root: Path = REPO, min_dpi: float = 150) -> list[str]:
    """Figures under `min_dpi`: every PNG in `root/results/*/figures/` and every PNG a notebook of `root/nbs/` embeds
    in its outputs, named with the resolution it declares (none counts as too low)."""
    from fgr_core.plots import png_dpi
    say = lambda dpi: "no dpi" if dpi is None else f"{dpi:.0f} dpi"
    low = []
    for png in sorted(root.glob("results/*/figures/*.png")):
        dpi = png_dpi(png)
        if dpi is None or dpi < min_dpi - 0.5: low.append(f"{png.relative_to(root)} ({say(dpi)})")
    for nb in sorted(root.glob("nbs/*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        for i, c in enumerate(cells):
            for o in c.get("outputs", []):
                data = o.get("data", {}).get("image/png")
                if data is None: continue
                dpi = png_dpi(base64.b64decode("".join(data) if isinstance(data, list) else data))
                if dpi is None or dpi < min_dpi - 0.5: low.append(f"{nb.relative_to(root)} cell {i} ({say(dpi)})")
    return low


def test_every_figure_is_150_dpi():
    "Every figure in results/ and in the notebooks' outputs is written at 150 dpi or more (15_plots' house style)"
    low = low_dpi_figures()
    assert not low, f"{len(low)} figures under 150 dpi (save them with fgr_core.plots.save_figure): {low[:10]}"


def test_low_dpi_figures_finds_them(tmp_path):
    "The check above names a low-resolution PNG in results/ and one embedded in a notebook, and passes the rest"
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(2, 1.5)); ax.plot([0, 1])
    figs = tmp_path / "results" / "toy" / "figures"; figs.mkdir(parents=True)
    fig.savefig(figs / "low.png", dpi=80); fig.savefig(figs / "ok.png", dpi=150)
    (tmp_path / "nbs").mkdir()
    png = lambda dpi: (fig.savefig(tmp_path / "x.png", dpi=dpi), base64.b64encode((tmp_path / "x.png").read_bytes()).decode())[1]
    outputs = [{"output_type": "display_data", "data": {"image/png": png(d)}, "metadata": {}} for d in (72, 200)]
    nb = {"cells": [{"cell_type": "code", "id": "a", "source": "", "outputs": outputs, "metadata": {}, "execution_count": 1}]}
    (tmp_path / "nbs" / "toy.ipynb").write_text(json.dumps(nb))
    plt.close(fig)
    assert low_dpi_figures(tmp_path) == ["results/toy/figures/low.png (80 dpi)", "nbs/toy.ipynb cell 0 (72 dpi)"]


def test_house_style_figures(tmp_path):
    "Figures of 15_plots' functions, saved with `save_figure`, declare 150 dpi or more and show no text under 8 pt"
    import warnings
    import numpy as np
    import pandas as pd
    import torch
    from fgr_core import plots
    log = pd.DataFrame({"step": range(10), "train/loss": np.linspace(2, 1, 10), "train/ce": np.linspace(3, 2, 10)})
    emb, lab = torch.randn(40, 6), torch.arange(4).repeat(10)
    figs = {"curves": plots.plot_training_curves({"a": log, "b": log}, chance={"train/ce": np.log(20)}),
            "panels": plots.plot_embedding_panels({m: (emb, lab) for m in ("RE", "LD", "JR")}, method="pca"),
            "saliency": plots.plot_saliency(torch.rand(3, 16, 16), torch.rand(4), (2, 2), normalized=False).figure}
    for name, fig in figs.items():
        assert plots.small_text(fig) == [], (name, plots.small_text(fig))
        with warnings.catch_warnings():
            warnings.simplefilter("error")                                   # save_figure warns about small text
            path = plots.save_figure(fig, tmp_path / f"{name}.png", close=True)
        assert plots.png_dpi(path) >= plots.HOUSE_DPI >= 150, (name, plots.png_dpi(path))


def test_navigation_groups_by_number():
    "The sidebar groups notebooks by their number (new 08x/09x notebooks join the foundations) and titles carry it"
    spec = importlib.util.spec_from_file_location("docs_conf", REPO / "docs" / "conf.py")
    conf = importlib.util.module_from_spec(spec); spec.loader.exec_module(conf)
    got = conf.nav_groups(["index", "30_results", "08c_new", "00_core", "09b_run", "10_gapan", "14_fgan", "15_plots",
                           "17_methods", "20_gapan_repro", "24_fgan_repro"])
    assert got == {"Foundations": ["00_core", "08c_new", "09b_run"], "Methods": ["10_gapan", "14_fgan"],
                   "Tools": ["15_plots", "17_methods"], "Reproductions": ["20_gapan_repro", "24_fgan_repro"],
                   "Results": ["30_results"]}
    assert conf.page_title("09b_run", "Run CLI") == "09b · Run CLI" and conf.page_title("index", "fgr") == "fgr"
    assert set(conf.nav_groups(ALL_PAGES)) == {g for _, g in conf.GROUPS}   # every group has a notebook today
