"""The fast training paths change nothing: whole in-memory batches (`epoch_feed` / `get_batch`) train to the same
bits as the per-item DataLoader; randomly augmented items loaded as uint8 and normalised per batch on the device
train to the same bits as items normalised one by one, with 0 or 2 persistent workers; losses read every
`log_every` steps still stop a NaN with its step and term; the CUDA paths (pinned batches converted on the
device, channels_last, deferred reads, compile) where CUDA exists."""
import subprocess, sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, default_collate

import fgr_core.gapan  # noqa: F401  (registers norm_softmax)
from fgr_core.core import load_checkpoint, seed_everything
from fgr_core.data import GlyphsDataset, MPerClassSampler, train_transform
from fgr_core.feed import epoch_loader
from fgr_core.method import create_method
from fgr_core.train import NonFiniteLossError, Trainer, TrainConfig

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def glyphs(tmp_path_factory):
    return GlyphsDataset("train", n_chars=4, n_typefaces=3, per_class=4, image_size=32,
                         cache_dir=tmp_path_factory.mktemp("g"))


def _per_item_collate(items): return default_collate(items)   # not `default_collate` itself: keeps the DataLoader path


def _train(ds, out, collate_fn=None, device="cpu", trainer_cls=Trainer, num_workers=0, **cfg):
    seed_everything(0)
    m = create_method("norm_softmax", num_classes=ds.num_classes, image_backbone="small_cnn", pretrained=False,
                      image_kwargs={"width": 8, "image_size": 32}, embed_dim=8)
    kw = {"collate_fn": collate_fn} if collate_fn else {}
    if num_workers: kw.update(num_workers=num_workers, prefetch_factor=2)
    loader = DataLoader(ds, batch_sampler=MPerClassSampler(ds.labels, 2, 6, torch.Generator().manual_seed(0)), **kw)
    cfg = {"seed": 1, "eval_every": 0, "checkpoint_every_epochs": 0, **cfg}
    tr = trainer_cls(m, loader, TrainConfig(epochs=2, lr=1e-2, log_every=3, progress=False, device=device, **cfg),
                     out_dir=out)
    return tr, tr.fit()


def test_whole_batches_train_bit_for_bit_like_the_dataloader(glyphs, tmp_path):
    fast, h_fast = _train(glyphs, tmp_path / "fast")
    slow, h_slow = _train(glyphs, tmp_path / "slow", collate_fn=_per_item_collate)
    assert h_fast == h_slow and h_fast["train"][0]["loss"] > 0
    a, b = fast.method.state_dict(), slow.method.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "fast" / "log.csv").read_text() == (tmp_path / "slow" / "log.csv").read_text()


def test_fgr_train_loader_of_a_method_without_own_collate_takes_whole_batches(glyphs, monkeypatch):
    "`make_train_loader(..., method=m)` gives the loader torch's `default_collate` itself: `epoch_feed` uses `get_batch`"
    from fgr_core.run import make_train_loader
    from fgr_core.feed import epoch_batches, epoch_feed
    m = create_method("norm_softmax", num_classes=glyphs.num_classes, image_backbone="small_cnn", pretrained=False,
                      image_kwargs={"width": 8, "image_size": 32}, embed_dim=8)
    loader = make_train_loader(glyphs, TrainConfig(batch_size=6, device="cpu"), method=m)
    assert loader.collate_fn is default_collate and loader.dataset is glyphs
    calls, get_batch = [], type(glyphs).get_batch
    monkeypatch.setattr(type(glyphs), "get_batch", lambda self, b, d: calls.append(len(b)) or get_batch(self, b, d))
    batches = list(epoch_feed(loader, epoch_batches(loader, 0, 0)[:2], 0, 0, "cpu"))
    assert calls == [6, 6] and batches[0]["image"].shape == (6, 3, 32, 32)


@pytest.fixture(scope="module")
def augmented(tmp_path_factory):   # random crop + flip: the DataLoader path with per-item seeds
    return GlyphsDataset("train", n_chars=4, n_typefaces=3, per_class=4, image_size=32,
                         cache_dir=tmp_path_factory.mktemp("a"), transform=train_transform(32, resize_ratio=1.25))


def _same_run(a, b, ha, hb, out_a, out_b):
    assert ha == hb and ha["train"][0]["loss"] > 0
    sa, sb = a.method.state_dict(), b.method.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert (out_a / "log.csv").read_text() == (out_b / "log.csv").read_text()


class _Workers(Trainer):
    "Records the loader's worker processes at every step"
    def _train_step(self, batch):
        it = epoch_loader(self.train_loader)._iterator
        self.pids.add(tuple(w.pid for w in it._workers) if it is not None and hasattr(it, "_workers") else ())
        return super()._train_step(batch)
    def setup(self): self.pids = set(); super().setup()


def test_uint8_device_normalisation_and_persistent_workers_change_nothing(augmented, tmp_path):
    per_item, h_item = _train(augmented, tmp_path / "item", collate_fn=_per_item_collate)   # float items, one by one
    uint8, h_uint8 = _train(augmented, tmp_path / "uint8")              # uint8 batches, ToDtype + Normalize per batch
    assert epoch_loader(uint8.train_loader).device_transform is not None             # the two paths really differ
    assert epoch_loader(per_item.train_loader).device_transform is None
    _same_run(per_item, uint8, h_item, h_uint8, tmp_path / "item", tmp_path / "uint8")
    two, h_two = _train(augmented, tmp_path / "two", trainer_cls=_Workers, num_workers=2)
    _same_run(uint8, two, h_uint8, h_two, tmp_path / "uint8", tmp_path / "two")
    assert len(two.pids) == 1 and len(next(iter(two.pids))) == 2     # the same 2 workers in both epochs
    _, h_other = _train(augmented, tmp_path / "other", seed=2)
    assert h_other != h_uint8                                         # the augmentation follows the run seed


def test_channels_last_option_on_cpu(glyphs, tmp_path):
    tr, h = _train(glyphs, tmp_path / "cl", channels_last=True)
    convs = [p for p in tr.method.parameters() if p.ndim == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    _, h_ref = _train(glyphs, tmp_path / "ref")             # "auto": off on a CPU, numbers as before
    assert h["train"][-1]["loss"] == pytest.approx(h_ref["train"][-1]["loss"], rel=1e-3)


def _nan_at_step(method, step):
    inner = method.training_step
    def training_step(batch):
        out = inner(batch)
        if method.trainer.global_step == step:
            out["bad"] = out["loss"] * float("nan"); out["loss"] = out["loss"] + out["bad"]
        return out
    method.training_step = training_step
    return method


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda)])
def test_nan_names_step_and_term(glyphs, tmp_path, device):
    seed_everything(0)
    m = _nan_at_step(create_method("norm_softmax", num_classes=glyphs.num_classes, image_backbone="small_cnn",
                                   pretrained=False, image_kwargs={"width": 8, "image_size": 32},
                                   embed_dim=8), 4)
    loader = DataLoader(glyphs, batch_size=6, shuffle=True)   # 24 images: 4 steps per epoch, step 4 opens epoch 1
    cfg = TrainConfig(epochs=3, log_every=5, checkpoint_every_steps=3, progress=False, device=device, amp="off")
    tr = Trainer(m, loader, cfg, out_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 4 \(epoch 1\): term 'loss'"): tr.fit()
    ck = load_checkpoint(tr.checkpoint_path)
    assert ck["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in ck["method"].values() if v.is_floating_point())


@cuda
def test_get_batch_on_cuda_matches_cpu(glyphs):
    idx = [0, 5, 3]
    g, c = glyphs.get_batch(idx, "cuda"), glyphs.get_batch(idx)
    assert g["image"].is_cuda and g["label"].is_cuda and g["text"] == c["text"]
    torch.testing.assert_close(g["image"].cpu(), c["image"], atol=1e-6, rtol=0)
    assert torch.equal(g["label"].cpu(), c["label"])


@cuda
def test_cuda_uint8_batches_normalised_on_the_device(augmented, tmp_path):
    _, h = _train(augmented, tmp_path / "gpu", device="cuda", amp="off", channels_last=False, num_workers=2)
    _, h_cpu = _train(augmented, tmp_path / "cpu")
    assert h["train"][0]["loss"] == pytest.approx(h_cpu["train"][0]["loss"], rel=1e-3)


@cuda
def test_memo_keys_of_a_cuda_batch_match_the_cpu_ones():   # one copy of the batch to the host, the same keys
    from fgr_core.backbones import row_keys
    x = torch.randn(4, 3, 8, 8)
    assert row_keys(x.cuda(), "p|") == row_keys(x, "p|")


@cuda
def test_cuda_trainer_channels_last_deferred_reads(glyphs, tmp_path):
    tr, h = _train(glyphs, tmp_path / "gpu", device="cuda", amp="off")   # channels_last "auto" is on for CUDA
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in tr.method.parameters() if p.ndim == 4)
    assert tr._pending == [] and all(torch.isfinite(torch.tensor(list(r.values()))).all() for r in h["train"])
    _, h_cpu = _train(glyphs, tmp_path / "cpu")
    assert h["train"][0]["loss"] == pytest.approx(h_cpu["train"][0]["loss"], rel=1e-2)


@cuda
@pytest.mark.slow
def test_cuda_compile(glyphs, tmp_path):
    _, h = _train(glyphs, tmp_path / "compiled", device="cuda", compile=True, amp="off")
    _, h_eager = _train(glyphs, tmp_path / "eager", device="cuda", amp="off")
    assert h["train"][0]["loss"] == pytest.approx(h_eager["train"][0]["loss"], rel=1e-2)


@pytest.mark.slow
def test_benchmark_runs_and_reports_the_ratio():
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_train_throughput.py"),
                        "--backbone", "small_cnn", "--size", "32", "--batch", "8", "--chars", "4", "--typefaces", "2",
                        "--per-class", "4", "--steps", "3", "--warmup", "1", "--no-compile",
                        "--devices", "cpu", "--threads", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("trainer/raw throughput ratio: ") and float(last.split(": ")[1]) > 0


@cuda
def test_cuda_amp_auto_keeps_bf16_only_if_faster(glyphs, tmp_path):
    tr, h = _train(glyphs, tmp_path / "amp", device="cuda", amp="auto")
    assert tr.amp_dtype in (None, torch.bfloat16) and not tr._probe_amp
    assert all(torch.isfinite(torch.tensor(list(r.values()))).all() for r in h["train"])


class _Probed(Trainer):
    "Forces the amp probe on a CPU (bf16 candidate), records its pick, then trains in fp32"
    def setup(self):
        super().setup(); self._probe_amp, self.amp_dtype = True, torch.bfloat16
    def _faster_amp(self, batch):
        self.picked = super()._faster_amp(batch)
        return None


def test_amp_probe_leaves_the_run_untouched(glyphs, tmp_path):
    _, h_ref = _train(glyphs, tmp_path / "ref")
    tr, h = _train(glyphs, tmp_path / "probe", trainer_cls=_Probed)
    assert tr.picked in (None, torch.bfloat16) and h == h_ref
