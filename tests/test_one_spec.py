"""One spec per experiment: every config resolves to the same experiment through the notebook route
(`fgr_core.repro.start_repro`) and the CLI route (`fgr-train --print-config`), the reproduction notebooks take
only `config`, `dataset`, `data_root` and `overrides`, and a bad override fails before anything trains."""
import json, subprocess, sys, time
from pathlib import Path

import pytest
import yaml

import fgr_core
from fgr_core.repro import start_repro
from fgr_core.run import load_experiment, main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
NOTEBOOKS = {"gapan": "20_gapan_repro.ipynb", "fggan": "21_fggan_repro.ipynb", "dmcac": "22_dmcac_repro.ipynb",
             "cir": "23_cir_repro.ipynb", "fgan": "24_fgan_repro.ipynb"}


@pytest.mark.parametrize("name", CONFIGS)
def test_both_routes_resolve_alike(name, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                        # start_repro creates out_dir below the working folder
    paper = name.split("_")[0]
    assert main(["--config", name, "--print-config"]) == 0
    cli = yaml.safe_load(capsys.readouterr().out)
    root = {"data_root": "/nonexistent"} if load_experiment(name).data.root is None and \
        load_experiment(name).data.dataset not in ("glyphs", "glyphs_triplets", "digits") else {}
    nb = start_repro(paper, config=name, show=False, **root).exp.to_dict()
    if root: cli["data"]["root"] = "/nonexistent"
    assert nb == cli


def test_every_paper_has_its_glyph_default():
    assert {f"{p}_glyphs" for p in NOTEBOOKS} <= set(CONFIGS)
    for p in NOTEBOOKS:
        exp = load_experiment(f"{p}_glyphs")
        assert exp.train.out_dir == f"runs/{p}", (p, exp.train.out_dir)    # what `papermill nbs/2X_*.ipynb` writes to
        assert len(exp.seeds) >= 3, (p, exp.seeds)


@pytest.mark.parametrize("paper", list(NOTEBOOKS))
def test_notebook_parameters_restate_no_config_field(paper):
    nb = json.loads((REPO / "nbs" / NOTEBOOKS[paper]).read_text())
    (cell,) = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    names = [l.split("=")[0].strip() for l in "".join(cell["source"]).splitlines() if "=" in l and not l.startswith((" ", "#"))]
    assert names == ["config", "dataset", "data_root", "overrides"], names


@pytest.mark.slow
@pytest.mark.parametrize("paper", list(NOTEBOOKS))
def test_bad_override_fails_before_training(paper, tmp_path):
    "A typo in a method argument fails within seconds (kernel start included), naming the key"
    exp = load_experiment(f"{paper}_glyphs")
    bad = {f"method_args.{exp.methods[-1]}.no_such_argument": 1}
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "nbs" / NOTEBOOKS[paper]), str(tmp_path / "o.ipynb"),
                        "-y", yaml.safe_dump({"overrides": {**bad, "train.out_dir": str(tmp_path / "out")}}),
                        "--no-progress-bar", "--cwd", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "no_such_argument" in r.stderr + r.stdout, r.stderr[-2000:]
    assert time.time() - t0 < 120
    assert not any((tmp_path / "out").glob("*/log.csv"))           # nothing trained


@pytest.mark.parametrize("name", [c for c in CONFIGS if c.startswith("gapan_")])
def test_gapan_ablations_change_only_what_they_ablate(name):
    "Notebook 20's ablations resolve to GAPan's own settings but for the ablated switch (a benchmark's flow width included)"
    import dataclasses
    from fgr_core.method import METHODS
    exp = load_experiment(name)
    full = lambda m: dataclasses.asdict(METHODS.get(m).config(**exp.run_config(m, exp.seeds[0]).method_args))
    g = full("gapan")
    for m, ablated in (("gapan_no_flow", {"flow_depth"}), ("gapan_no_sampling", {"sampling"})):
        a = full(m)
        assert {k for k in g if g[k] != a[k]} == ablated, (m, {k: (g[k], a[k]) for k in g if g[k] != a[k]})
