"""The offline docs site (`docs/build.py`) builds and its pages work in a real browser (headless Chromium).

Chromium is driven over the Chrome DevTools protocol (`websocket-client`); the site is served from 127.0.0.1.
Set `FGR_DOCS_SCREENSHOTS=<folder>` to keep a PNG of every page checked.
"""
from pathlib import Path
from urllib.parse import urlparse
import base64
import functools
import http.server
import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = ["index", "04_flows", "10_gapan", "30_results"]   # 30_results only once it exists
MATH_PAGES = {"04_flows", "10_gapan"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class _CDP:
    "Minimal Chrome DevTools protocol client: one websocket to the browser, flat sessions for pages"
    def __init__(self, ws_url: str):
        import websocket
        self.ws, self.ids, self.events = websocket.create_connection(ws_url, timeout=60), itertools.count(1), []

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
    broken: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    images: document.images.length, title: document.title});
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
@pytest.mark.parametrize("page", PAGES)
def test_page_works_offline(page, site, server, browser):
    if not (site / f"{page}.html").is_file():
        if page == "30_results": pytest.skip("nbs/30_results.ipynb does not exist yet")
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
    if page in MATH_PAGES:
        assert f["math"] > 10, f"{page}: only {f['math']} typeset formulas (mjx-container)"
        assert any("/_static/mathjax/" in u for u in f["requests"]), f"{page}: MathJax not loaded from the site itself"
