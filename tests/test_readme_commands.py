"""Every command the README shows runs, with tiny overrides: the main job (from another folder, so its default
`out_dir` lands below that folder), the real-data command on an official-format fixture tree, and `fgr-train` with a
config. The commands are read from README.md, so a renamed parameter there or in a notebook fails here."""
import json, re, shlex, subprocess, sys
from pathlib import Path

import pytest

from official_fixtures import write_cub

REPO = Path(__file__).resolve().parents[1]
TINY_GAPAN = {"image_backbone": "small_cnn", "pretrained": "False", "image_size": "32", "embed_dim": "16",
              "epochs": "1", "batch_size": "12", "m_per_class": "3",
              "data_kwargs": '{"n_chars": 4, "n_typefaces": 3, "per_class": 6}',
              "methods": '["norm_softmax", "gapan"]', "method_args": '{"gapan": {"flow_depth": 2, "flow_hidden": 16}}',
              "seeds": "[0]", "tsne_points": "12", "anchor_classes": "2", "gallery_queries": "1", "device": "cpu"}


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


def set_params(argv: list, over: dict) -> list:
    """`argv` with the values of `-p NAME VALUE` replaced by `over[NAME]`; names not in `argv` are appended."""
    out, i, done = [], 0, set()
    while i < len(argv):
        if argv[i] == "-p" and argv[i + 1] in over:
            out += ["-p", argv[i + 1], over[argv[i + 1]]]; done.add(argv[i + 1]); i += 3
        else: out.append(argv[i]); i += 1
    return out + [x for k, v in over.items() if k not in done for x in ("-p", k, v)]


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
    assert real[real.index("seeds") + 1] == "[0]"                              # a string: the notebook parses it
    assert set_params(["x", "-p", "a", "1"], {"a": "2", "b": "3"}) == ["x", "-p", "a", "2", "-p", "b", "3"]


@pytest.mark.slow
def test_readme_main_job(tmp_path):
    """The main job, run from another folder: results land in <that folder>/runs/gapan (papermill's cwd)."""
    main = [c for c in readme_commands() if c == ["papermill", "nbs/20_gapan_repro.ipynb", "out.ipynb"]]
    assert main, "README lost its main job command"
    papermill(set_params(main[0], TINY_GAPAN), tmp_path)
    res = json.loads((tmp_path / "runs" / "gapan" / "results.json").read_text())
    assert res["paper"] == "gapan" and res["params"]["seeds"] == [0]
    assert res["params"]["methods"] == ["norm_softmax", "gapan"]
    assert (tmp_path / "out.ipynb").is_file() and (tmp_path / "runs" / "gapan" / "table.csv").is_file()


@pytest.mark.slow
def test_readme_real_data_command(tmp_path):
    """The real-data command on a CUB-200-2011 fixture tree (`-p seeds "[0]"`, `-p image_kwargs "{}"` as strings)."""
    root = write_cub(tmp_path / "data")
    cmd = the_command(["papermill", "nbs/20_gapan_repro.ipynb"], "cub200")
    tiny = {**TINY_GAPAN, "data_root": str(root), "batch_size": "4", "m_per_class": "2", "ks": "[1, 2]",
            "out_dir": str(tmp_path / "out")}
    for k in ("seeds", "image_kwargs", "dataset"): tiny.pop(k, None)   # keep the README's own values
    papermill(set_params(cmd, tiny), tmp_path)
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["dataset"] == "cub200" and res["params"]["seeds"] == [0] and res["params"]["image_kwargs"] == {}
    assert {r["method"] for r in res["runs"]} == {"imagenet_features", "norm_softmax", "gapan"}


@pytest.mark.slow
def test_readme_fgr_train_command(tmp_path):
    """`fgr-train --config configs/gapan_cub200.yaml --set data.root=...` on the fixture tree, with tiny overrides."""
    root = write_cub(tmp_path / "data")
    cmd = the_command(["fgr-train", "--config"], "gapan_cub200")
    cmd = [c if not c.startswith("data.root=") else f"data.root={root}" for c in cmd]
    tiny = ["method_args.image_backbone=small_cnn", "method_args.pretrained=false", "method_args.embed_dim=16",
            "method_args.flow_hidden=16", "method_args.flow_depth=2", "train.epochs=1", "train.batch_size=4",
            "data.m=2",
            "train.device=cpu", "train.progress=false", "eval.batch_size=8", "eval.ks=[1, 2]"]
    exe = Path(sys.executable).parent / "fgr-train"
    prog = [str(exe)] if exe.is_file() else [sys.executable, "-m", "fgr_core.run"]
    argv = [*prog, *cmd[1:],
            *[x for t in tiny for x in ("--set", t)], "--out-dir", str(tmp_path / "run")]
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (tmp_path / "run" / "log.csv").is_file() and list((tmp_path / "run").glob("*.json"))
