"""Packaging invariants: conda and pip agree, and fgr_core/ is exactly what nbdev_export makes of nbs/."""
from configparser import ConfigParser
from pathlib import Path
import filecmp
import shlex
import shutil
import subprocess
import sys

import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def _settings():
    cfg = ConfigParser(delimiters=["="])
    cfg.read(REPO / "settings.ini", encoding="utf-8")
    return cfg["DEFAULT"]


def _norm(req: str) -> tuple[str, str]:
    r = Requirement(req)
    return r.name.lower().replace("_", "-"), str(r.specifier)


def test_environment_yml_matches_package_metadata():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["name"] == "fgr"
    deps = env["dependencies"]
    assert "pip" in deps and any(str(d).startswith("python") for d in deps)
    pip_list = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-e ." in pip_list, "environment.yml must install the package itself (-e .)"
    conda_side = sorted(_norm(r) for r in pip_list if r != "-e .")
    s = _settings()
    meta_side = sorted(_norm(r) for r in shlex.split(s["requirements"]) + shlex.split(s["dev_requirements"]))
    assert conda_side == meta_side, f"environment.yml and settings.ini differ: {set(conda_side) ^ set(meta_side)}"


def test_dev_extra_pins_the_working_nbdev_toolchain():
    s = _settings()
    dev = dict(_norm(r) for r in shlex.split(s["dev_requirements"]))
    run = dict(_norm(r) for r in shlex.split(s["requirements"]))  # fastcore is used at run time (`patch`)
    assert dev["nbdev"] == "==2.4.14" and dev["execnb"] == "==0.1.14"
    assert set(run["fastcore"].split(",")) == {">=1.12.3", "<2"}


def test_fgr_core_is_in_sync_with_notebooks(tmp_path):
    shutil.copy(REPO / "settings.ini", tmp_path)
    shutil.copytree(REPO / "nbs", tmp_path / "nbs")
    exe = Path(sys.executable).with_name("nbdev_export")
    subprocess.run([str(exe)], cwd=tmp_path, check=True, capture_output=True)
    made = sorted(p.relative_to(tmp_path / "fgr_core") for p in (tmp_path / "fgr_core").rglob("*.py"))
    have = sorted(p.relative_to(REPO / "fgr_core") for p in (REPO / "fgr_core").rglob("*.py"))
    assert made == have, f"modules differ: {set(map(str, made)) ^ set(map(str, have))}"
    stale = [str(p) for p in made if not filecmp.cmp(tmp_path / "fgr_core" / p, REPO / "fgr_core" / p, shallow=False)]
    assert not stale, f"fgr_core/ is out of sync with nbs/ (run nbdev_export): {stale}"
