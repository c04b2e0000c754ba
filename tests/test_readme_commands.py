"""Every command the README shows runs, with tiny overrides: the main job (from another folder, so its default
`out_dir` lands below that folder), the real-data command on an official-format fixture tree, and `fgr-train` with a
config. The commands are read from README.md, so a renamed parameter there or in a notebook fails here."""
import json, re, shlex, subprocess, sys
from pathlib import Path

import pytest

from official_fixtures import write_cub

REPO = Path(__file__).resolve().parents[1]
TINY_GAPAN = {"model.image_backbone": "small_cnn", "model.pretrained": False, "model.embed_dim": 16,
              "data.image_size": 32, "data.n_chars": 4, "data.n_typefaces": 3, "data.per_class": 6, "data.m": 3,
              "train.epochs": 1, "train.batch_size": 12, "train.device": "cpu",
              "method_args.gapan.flow_depth": 2, "method_args.gapan.flow_hidden": 16, "seeds": [0],
              "params.ablations": False, "params.tsne_points": 12, "params.anchor_classes": 2, "params.gallery_queries": 1}


def readme_commands() -> list:
    """Each command of the README's bash blocks as an argv list (continuations joined, `&&` split, comments cut)."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    cmds = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                argv = shlex.split(part, comments=True)
                if argv: cmds.append(argv)
    return cmds


def the_command(prefix: list, contains: str = "") -> list:
    found = [c for c in readme_commands() if c[:len(prefix)] == prefix and contains in " ".join(c)]
    assert len(found) == 1, f"README: expected one command starting {prefix} containing {contains!r}, found {found}"
    return found[0]


def with_overrides(argv: list, over: dict) -> list:
    """`argv` (a papermill command) with `overrides` set to `over` (`-y`, as YAML: papermill's way to pass a mapping)."""
    import yaml
    assert "overrides" not in argv, argv
    return [*argv, "-y", yaml.safe_dump({"overrides": over})]


def papermill(argv: list, cwd: Path) -> subprocess.CompletedProcess:
    assert argv[0] == "papermill"
    nb = argv[1]
    argv = [sys.executable, "-m", "papermill", str(REPO / nb), *argv[2:], "--no-progress-bar"]
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_readme_parsing():
    main = the_command(["papermill", "nbs/20_gapan_repro.ipynb", "out.ipynb"], "")
    assert main == ["papermill", "nbs/20_gapan_repro.ipynb", "out.ipynb"]
    real = the_command(["papermill", "nbs/20_gapan_repro.ipynb"], "cub200")
    assert real[real.index("dataset") + 1] == "cub200" and "data_root" in real   # the benchmark selects its config


@pytest.mark.slow
def test_readme_main_job(tmp_path):
    """The main job, run from another folder: results land in <that folder>/runs/gapan (papermill's cwd)."""
    main = [c for c in readme_commands() if c == ["papermill", "nbs/20_gapan_repro.ipynb", "out.ipynb"]]
    assert main, "README lost its main job command"
    papermill(with_overrides(main[0], TINY_GAPAN), tmp_path)
    res = json.loads((tmp_path / "runs" / "gapan" / "results.json").read_text())
    assert res["paper"] == "gapan" and res["config"]["seeds"] == [0]
    assert res["config"]["methods"] == ["norm_softmax", "gapan"]
    assert (tmp_path / "out.ipynb").is_file() and (tmp_path / "runs" / "gapan" / "table.csv").is_file()


@pytest.mark.slow
def test_readme_real_data_command(tmp_path):
    """The real-data command on a CUB-200-2011 fixture tree: `dataset` selects configs/gapan_cub200.yaml."""
    root = write_cub(tmp_path / "data")
    cmd = the_command(["papermill", "nbs/20_gapan_repro.ipynb"], "cub200")
    cmd = [str(root) if a == cmd[cmd.index("data_root") + 1] else a for a in cmd]
    tiny = {**{k: v for k, v in TINY_GAPAN.items() if not k.startswith("data.") or k == "data.m"}, "data.m": 2,
            "train.batch_size": 4, "eval.ks": [1, 2], "eval.batch_size": 8, "train.amp": "off", "train.eval_every": 0,
            "data.train_transform.size": 32, "data.eval_transform.size": 32, "train.out_dir": str(tmp_path / "out")}
    papermill(with_overrides(cmd, tiny), tmp_path)
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["dataset"] == "cub200" and res["config"]["seeds"] == [0]
    assert res["config"]["data"]["train_transform"]["kind"] == "random_crop"         # the benchmark's training transform
    assert {r["method"] for r in res["runs"]} >= {"floor", "norm_softmax", "gapan"}


@pytest.mark.slow
def test_readme_fgr_train_command(tmp_path):
    """`fgr-train --config configs/gapan_cub200.yaml --set data.root=...` on the fixture tree, with tiny overrides."""
    root = write_cub(tmp_path / "data")
    cmd = the_command(["fgr-train", "--config"], "gapan_cub200")
    cmd = [c if not c.startswith("data.root=") else f"data.root={root}" for c in cmd]
    tiny = ["model.image_backbone=small_cnn", "model.pretrained=false", "model.embed_dim=16", "seeds=[0]",
            "method_args.gapan.flow_hidden=16", "method_args.gapan.flow_depth=2", "train.epochs=1", "train.batch_size=4",
            "data.m=2", "data.train_transform.size=32", "data.eval_transform.size=32",
            "train.device=cpu", "train.progress=false", "eval.batch_size=8", "eval.ks=[1, 2]"]
    exe = Path(sys.executable).parent / "fgr-train"
    prog = [str(exe)] if exe.is_file() else [sys.executable, "-m", "fgr_core.run"]
    argv = [*prog, *cmd[1:],
            *[x for t in tiny for x in ("--set", t)], "--out-dir", str(tmp_path / "run")]
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for m in ("norm_softmax", "gapan"):                                   # the experiment's runs, each in its folder
        assert (tmp_path / "run" / f"{m}_seed0" / "log.csv").is_file() and (tmp_path / "run" / f"{m}_seed0" / "metrics.json").is_file()
