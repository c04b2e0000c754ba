"""End-to-end CLI run on tiny CPU data: `python -m fgr_core.run --config ... --method-module ... --set ...`
with a stand-in method defined here; checks every file the run writes, and the config errors."""
import json, math, os, subprocess, sys, textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fgr_core.core import load_checkpoint
from fgr_core.run import load_experiment, main

REPO = Path(__file__).resolve().parents[1]

STANDIN = textwrap.dedent('''
    import dataclasses, torch, torch.nn as nn, torch.nn.functional as F
    from fgr_core.method import Method, MethodConfig, num_classes_of, register_method

    @dataclasses.dataclass
    class StandinConfig(MethodConfig):
        num_classes:int=0; image_size:int=16; embed_dim:int=16

    class StandinLinear(Method):
        "Linear embedding of the flattened image with a normalised softmax head"
        def __init__(self, num_classes, image_size=16, dim=16):
            super().__init__()
            self.body, self.head = nn.Linear(3 * image_size * image_size, dim), nn.Linear(dim, num_classes)
        def embed(self, b): return self.body(b["image"].flatten(1))
        def training_step(self, b):
            ce = F.cross_entropy(self.head(F.normalize(self.embed(b), dim=1)) * 10, b["label"])
            return {"loss": ce, "ce": ce.detach()}

    @register_method("standin_linear", StandinConfig)
    def build_standin(config, train_dataset=None):
        return StandinLinear(num_classes_of(config.num_classes, train_dataset), config.image_size, config.embed_dim)
''')

CONFIG = {"methods": ["standin_linear"], "seeds": [0], "model": {"image_size": 16},
          "data": {"dataset": "digits", "train_split": "train", "eval_split": "test", "image_size": 16},
          "train": {"epochs": 1, "lr": 1e-2, "batch_size": 64, "device": "cpu", "log_every": 2, "progress": False},
          "eval": {"ks": [1, 4], "metrics": ["recall", "map_at_r"], "batch_size": 256}}


def test_cli_end_to_end(tmp_path):
    (tmp_path / "standin_methods.py").write_text(STANDIN)
    cfg = tmp_path / "run.yaml"; cfg.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "fgr_core.run", "--config", str(cfg), "--method-module", "standin_methods",
                        "--set", "train.epochs=2", "--set", "train.lr=5e-3", "--out-dir", str(out)],
                       capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["standin_linear_seed0"]
    out = out / "standin_linear_seed0"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "config.yaml", "history.json", "log.csv", "metrics.json"]
    res = json.loads((out / "metrics.json").read_text())
    assert set(res["metrics"]) == {"R@1", "R@4", "mAP@R"} and json.loads(r.stdout.strip().splitlines()[-1])["metrics"] == res["metrics"]
    assert all(0 <= v <= 1 and math.isfinite(v) for v in res["metrics"].values())
    assert res["metrics"]["R@1"] > 0.3                                  # better than chance (0.2) on 5 unseen digits
    assert len(res["history"]["train"]) == len(res["history"]["eval"]) == 2
    resolved = yaml.safe_load((out / "config.yaml").read_text())          # the resolved run
    assert (resolved["seed"], resolved["train"]["epochs"], resolved["train"]["lr"], resolved["train"]["out_dir"]) == (0, 2, 5e-3, str(out))
    assert resolved["data"]["image_size"] == 16 and resolved["method_args"] == {"image_size": 16}
    log = pd.read_csv(out / "log.csv")
    assert {"train/loss", "train/ce", "lr/main", "eval/R@1"} <= set(log.name) and log.value.notna().all()
    ck = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ck["epoch"] == 2 and ck["global_step"] == 2 * (901 // 64)


def test_cli_errors_name_the_key(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"; cfg.write_text(yaml.safe_dump({**CONFIG, "methods": ["norm_softmax"], "model": {}}))
    assert main(["--config", str(cfg), "--set", "train.optimizer=rmsprop"]) == 2
    assert "optimizer: expected one of ['adamw', 'sgd', 'adam'], got 'rmsprop'" in capsys.readouterr().err
    assert main(["--config", str(cfg), "--set", "train.lerning_rate=1"]) == 2
    assert "unknown key 'lerning_rate'" in capsys.readouterr().err
    assert main(["--config", str(cfg), "--set", "methods=[no_such_method]", "--set", "train.out_dir=" + str(tmp_path / "o")]) == 2
    assert "'no_such_method' is not a registered method" in capsys.readouterr().err
    assert main(["--config", str(cfg), "--set", "methods=[gapan]", "--set", "model={backbone: resnet50}"]) == 2
    assert "method 'gapan': unknown key 'backbone' for GAPanConfig" in capsys.readouterr().err
    assert main(["--config", str(cfg), "--set", "train.seed=3"]) == 2
    assert "the seeds are `seeds:`" in capsys.readouterr().err
    assert main(["--config", str(cfg), "--set", "data.n_charz=3"]) == 2
    assert "dataset 'digits' has no option 'n_charz'" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("setting, message", [
    ("eval.ks=abc", "eval.ks: expected a list of cut-offs K >= 1 such as [1, 10, 50], got 'abc'"),
    ("eval.ks=[1, 0]", "eval.ks: expected a list of cut-offs K >= 1"),
    ("data.image_size=abc", "data.image_size: dataset 'glyphs' expects int, got 'abc'"),
    ("data.per_class=2.5", "data.per_class: dataset 'glyphs' expects int, got 2.5"),
    ("train.amp=yes", "amp: expected one of"),            # YAML 1.2: `yes` is the string 'yes', not True
])
def test_cli_bad_values_fail_before_training(setting, message, capsys):
    assert main(["--config", "dmcac_glyphs", "--set", setting, "--print-config"]) == 2
    assert message in capsys.readouterr().err


def test_cli_off_is_a_string(capsys):
    "`--set train.amp=off` is the setting 'off' (YAML 1.1 would read False and fail as a type error)"
    assert main(["--config", "dmcac_glyphs", "--set", "train.amp=off", "--print-config"]) == 0
    assert "amp: 'off'" in capsys.readouterr().out
    with pytest.raises(SystemExit): main(["--help"])
    assert "--method-module" in capsys.readouterr().out


def test_console_script_declared():
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "fgr-train"]
    assert ep.value == "fgr_core.run:main" and ep.load() is main


# Every CPU-sized config of the five papers through fgr-train, shrunk to a few images and one epoch: the config keys
# are the methods' config fields and each method's own evaluation runs (make_eval_fn).
TINY_DATA = ["data.n_chars=4", "data.n_typefaces=4", "data.per_class=4", "data.image_size=64"]
TINY = {"gapan": ["method_args.{m}.flow_hidden=16"], "dmcac": ["method_args.{m}.k=2", "method_args.{m}.A=2"],   # {m}: the method run
        "cir": ["data.n_triplets=24", "method_args.{m}.map_dim=16", "eval.ks=[1, 5]"],
        "fgan": ["method_args.{m}.image_size=64", "method_args.{m}.pseudo_size=32", "method_args.{m}.n_samples=5", "eval.prec_k=10"],
        "fggan": ["method_args.{m}.embed_dim=16", "method_args.{m}.g_width=4", "method_args.{m}.d_width=4", "method_args.{m}.n_width=4",
                  "eval.ks=[1, 5]"]}
EXPECTED = {"gapan": "R@1", "dmcac": "R@1", "cir": "R@1", "fgan": "JR/Avg/mAP@all", "fggan": "mAP@5"}
GLYPH_CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*_glyphs*.yaml"))


def test_every_paper_has_a_glyphs_config():
    assert {n.split("_")[0] for n in GLYPH_CONFIGS} == set(TINY)


@pytest.mark.slow
@pytest.mark.parametrize("name", GLYPH_CONFIGS)
def test_glyph_configs_run(name, tmp_path, capsys):
    paper = name.split("_")[0]
    method = load_experiment(REPO / "configs" / name).methods[-1]    # the paper's method (baseline first)
    sets = [f"methods=[{method}]", "seeds=[0]", "train.epochs=1", "train.batch_size=8", "train.device=cpu", "train.progress=false",
            "train.checkpoint_every_epochs=0", "eval.batch_size=16", *TINY_DATA, *(t.format(m=method) for t in TINY[paper])]
    overrides = [a for s in sets for a in ("--set", s)]
    rc = main(["--config", str(REPO / "configs" / name), "--out-dir", str(tmp_path), *overrides])
    assert rc == 0, capsys.readouterr().err[-3000:]
    res = json.loads((tmp_path / f"{method}_seed0" / "metrics.json").read_text())
    assert res["method"] == method
    m = res["metrics"]
    assert EXPECTED[paper] in m and all(0 <= v <= 1 for k, v in m.items() if math.isfinite(v) and not k.startswith("xc_dist/")), m   # xc_dist: ratios


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_config_is_valid(name):
    "Each config resolves (every method's arguments validated) and every run of it resolves too"
    from fgr_core.method import METHODS
    exp = load_experiment(REPO / "configs" / name)
    for m in exp.methods:
        run = exp.run_config(m, exp.seeds[0])
        config = METHODS.get(m).config(**run.method_args)
        assert config.pretrained is True and isinstance(config.image_backbone, str)
