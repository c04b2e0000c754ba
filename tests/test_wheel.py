"""The built wheel stands alone: installed outside the clone, it finds its packaged data and builds every method."""
from pathlib import Path
import os
import subprocess
import sys
import textwrap
import zipfile

import pytest

REPO = Path(__file__).resolve().parents[1]

# Run by the installed copy, from a folder outside the clone. Tiny settings: this checks that the wheel works, not
# that the methods learn. Names registered later (`list_methods()`) are built from their config defaults.
_CHECK = textwrap.dedent('''
    import sys, numpy as np
    from pathlib import Path
    import fgr_core
    from fgr_core.plots import load_paper_results, paper_results_dir
    from fgr_core.metrics import evaluate_retrieval
    import fgr_core.method as tr
    site = Path(sys.argv[1]).resolve()
    assert Path(fgr_core.__file__).resolve().is_relative_to(site), f"imported {fgr_core.__file__}, not {site}"
    assert paper_results_dir().resolve().is_relative_to(site), f"CSVs from {paper_results_dir()}, not the wheel"
    df = load_paper_results("dmcac")
    assert len(df) > 10 and set(df["paper"]) == {"dmcac"}, df.head()
    x = np.array([[1, 0], [.9, .1], [0, 1], [.1, .9]], dtype=np.float32)
    r = evaluate_retrieval(x, np.array([0, 0, 1, 1]), ks=(1,))
    assert r["R@1"] == 1.0 and r["mAP@R"] == 1.0, r
    small = dict(image_backbone="small_cnn", pretrained=False)
    img = dict(small, image_kwargs=dict(width=8, image_size=16), embed_dim=8)
    class Captions(list): num_classes = 3
    caps = Captions([{"text": "a red x"}, {"text": "a blue y"}])   # the gru's vocabulary comes from the training texts
    tiny = {"norm_softmax": dict(num_classes=3, **img), "proxy_anchor": dict(num_classes=3, **img),
            "gapan": dict(num_classes=3, flow_depth=1, flow_hidden=8, **img),
            "dmcac": dict(num_classes=3, A=3, k=4, **img),
            "fggan": dict(num_classes=3, g_width=4, d_width=4, n_width=4, n_depth=2, feature_layer=2, **img),
            "cir": dict(small, image_kwargs={"width": 16}, text_kwargs={"dim": 8}, embed_dim=16, compositor="tirg"),
            "fgan": dict(small, image_kwargs={"width": 8, "image_size": 32}, image_size=32, max_words=6, embed_dim=16,
                         text_kwargs={"dim": 8, "embed_dim": 4}, latent_dim=4, hidden_dim=16, n_samples=10)}
    names = tr.list_methods()
    for name in names:
        kw = next(v for k, v in tiny.items() if name.startswith(k))   # e.g. gapan_no_flow, dmcac_ce, cir_baseline
        m = tr.create_method(name, caps if name.startswith(("cir", "fgan")) else None, **kw)
        assert isinstance(m, tr.Method), (name, type(m))
    print("built", *names)
''')


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_clone(tmp_path):
    dist, site, away = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere"
    away.mkdir()
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)], check=True, capture_output=True)
    wheel, = dist.glob("fgr_core-*.whl")
    csvs = sorted(n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("fgr_core/paper_results/"))
    want = sorted(f"fgr_core/paper_results/{p.name}" for p in (REPO / "data" / "paper_results").glob("*.csv"))
    assert csvs == want, f"package data in the wheel: {csvs}; expected {want}"
    subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True)
    env = {**os.environ, "PYTHONPATH": str(site), "MPLBACKEND": "Agg"}
    env.pop("FGR_DATA", None)
    out = subprocess.run([sys.executable, "-c", _CHECK, str(site)], cwd=away, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "built" in out.stdout and "gapan" in out.stdout, out.stdout
