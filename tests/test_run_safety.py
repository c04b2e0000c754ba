"""A run never trusts what it did not check (issue 29): resume against a changed run is refused and more epochs
continue at a real learning rate; one run owns an out_dir at a time and never overwrites an earlier run's files
silently; list files are validated (paths inside the dataset folder, file and line named, nothing dropped) and
missing images are counted when a loader is built; OS errors, YAML syntax and bad values are one line."""
import errno, json, math, os, subprocess, sys, textwrap, time
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, Dataset

from fgr_core.benchmarks import DatasetFormatError
from fgr_core.core import load_checkpoint, save_checkpoint, user_error_message
from fgr_core.data import create_dataset, test_transform
from fgr_core.run import main
from fgr_core.method import LRFactor, Method
from fgr_core.train import TrainConfig, Trainer
from official_fixtures import (write_cars, write_compcars, write_cub, write_fashion200k, write_fashioniq, write_inshop,
                               write_shoes, write_sop, write_wikipedia)
from test_train_cli import CONFIG, STANDIN

REPO = Path(__file__).resolve().parents[1]
T8 = test_transform(8)


# --- a tiny Trainer run ----------------------------------------------------------------------------------------------

class Blobs(Dataset):   # 32 points of 4 classes
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.y = torch.arange(32) % 4
        self.x = torch.randn(4, 6, generator=g)[self.y] + torch.randn(32, 6, generator=g)
    def __len__(self): return 32
    def __getitem__(self, i): return {"image": self.x[i], "label": int(self.y[i])}


class Net(Method):
    def __init__(self):
        super().__init__(); self.body, self.head = nn.Linear(6, 5), nn.Linear(5, 4)
    def embed(self, b): return self.body(b["image"])
    def training_step(self, b): return {"loss": F.cross_entropy(self.head(torch.relu(self.embed(b))), b["label"])}


RUN = {"method": "net", "method_args": {"tau": 0.5}, "data": {"dataset": "blobs"}, "eval": {"ks": [1]}}


def _trainer(out, run=RUN, **train):
    cfg = TrainConfig(**{"epochs": 2, "lr": 0.05, "optimizer": "sgd", "log_every": 1, "progress": False,
                         "device": "cpu", "seed": 1, **train})
    torch.manual_seed(0)
    return Trainer(Net(), DataLoader(Blobs(), batch_size=8, shuffle=True), cfg, out_dir=out, run_config=run)


def _snapshot(out:Path)->dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_resume_with_a_changed_lr_or_method_argument_is_refused(tmp_path):
    _trainer(tmp_path).fit()
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"train\.lr: 0\.05 -> 0\.001") as e:
        _trainer(tmp_path, resume=True, lr=1e-3).fit()
    assert "nothing was changed" in str(e.value)
    changed = {**RUN, "method_args": {"tau": 0.3}}
    with pytest.raises(ValueError, match=r"method_args\.tau: 0\.5 -> 0\.3"):
        _trainer(tmp_path, changed, resume=True).fit()
    with pytest.raises(ValueError, match=r"method_args\.tau: 0\.5 -> 0\.3; train\.lr: 0\.05 -> 0\.001"):   # each named
        _trainer(tmp_path, changed, resume=True, lr=1e-3).fit()
    assert _snapshot(tmp_path) == before                        # config.yaml still describes what ran
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["method_args"] == {"tau": 0.5}
    # settings that change no number resume as before
    _trainer(tmp_path, resume=True, log_every=5, num_workers=0, progress=False).fit()


def test_resume_refuses_another_world_size(tmp_path):
    _trainer(tmp_path, epochs=1).fit()
    ck = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    ck["world_size"] = 2; ck["rng"] = ck["rng"] * 2                       # as if written by two DDP processes
    save_checkpoint(ck, tmp_path / "checkpoints" / "last.pt")
    with pytest.raises(ValueError, match=r"world size \(processes\): 2 -> 1"):
        _trainer(tmp_path, epochs=1, resume=True).fit()


def test_more_epochs_continue_at_a_real_learning_rate(tmp_path):
    first = _trainer(tmp_path, epochs=2, warmup_steps=2)
    first.fit()
    assert first.optimizers["main"].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)   # cosine ran out
    with pytest.warns(UserWarning, match=r"train\.epochs 2 -> 4: continuing at step 8 with the lr schedule rebuilt"):
        more = _trainer(tmp_path, epochs=4, warmup_steps=2, resume=True)
        hist = more.fit()
    spe, cfg = 4, more.config
    f = LRFactor(cfg, spe)
    log = [r.split(",") for r in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    lrs = {int(s): float(v) for s, _, n, v in log if n == "lr/main"}
    assert sorted(lrs) == list(range(1, 17))
    for s in range(9, 17):                                  # after step s the scheduler gives lr * f(s) (4 epochs long)
        assert lrs[s] == pytest.approx(0.05 * f(s), rel=1e-12), s
    assert min(lrs[s] for s in range(9, 13)) > 5e-3         # the first added epoch: a real learning rate, not 0
    assert hist["continued"] == [{"step": 8, "epoch": 2, "epochs": [2, 4], "schedule": "rebuilt for the new number of epochs"}]
    assert len(hist["train"]) == 4
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["epochs"] == 4      # what ran
    with pytest.raises(ValueError, match=r"train\.epochs: 4 -> 3 \(the checkpoint has already reached epoch 4\)"):
        _trainer(tmp_path, epochs=3, warmup_steps=2, resume=True).fit()


def test_fresh_run_into_a_used_folder_keeps_the_old_files(tmp_path):
    _trainer(tmp_path, epochs=1).fit()
    (tmp_path / "metrics.json").write_text("{}")
    before = _snapshot(tmp_path)
    with pytest.raises(ValueError, match=r"holds an earlier run's files \(config\.yaml, log\.csv, history\.json, "
                                         r"metrics\.json, checkpoints/last\.pt\); continue it with train\.resume=true"):
        _trainer(tmp_path, epochs=1, seed=2).fit()
    assert _snapshot(tmp_path) == before
    (tmp_path / "checkpoints" / "last.pt").unlink()               # a run that crashed before its first checkpoint
    with pytest.raises(ValueError, match="but no checkpoint to resume"):
        _trainer(tmp_path, epochs=1, resume=True).fit()
    assert (tmp_path / "log.csv").read_bytes() == before["log.csv"]
    with pytest.warns(UserWarning, match="overwrite: removed the earlier run's config.yaml, log.csv, history.json, metrics.json"):
        _trainer(tmp_path, epochs=1, seed=2, overwrite=True).fit()
    assert not (tmp_path / "metrics.json").exists()               # the earlier run's result is gone, on request
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["train"]["seed"] == 2


def test_stale_lock_and_temporary_checkpoints_are_cleaned(tmp_path):
    _trainer(tmp_path, epochs=1).fit()
    assert not (tmp_path / ".fgr-run.lock").exists()              # released at the end
    (tmp_path / ".fgr-run.lock").write_text("pid 999999 on elsewhere")   # left by a killed run: no process holds it
    tmp = tmp_path / "checkpoints" / ".last.pt.k1ll3d.tmp"; tmp.write_bytes(b"half a checkpoint")
    _trainer(tmp_path, epochs=2, resume=True).fit()
    assert not tmp.exists() and load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 2


BUSY = textwrap.dedent('''
    import sys, time, torch
    sys.path.insert(0, sys.argv[2])
    from test_run_safety import _trainer, Net
    class Slow(Net):
        def training_step(self, b): time.sleep(0.15); return super().training_step(b)
    import test_run_safety; test_run_safety.Net = Slow
    _trainer(sys.argv[1], epochs=3, checkpoint_every_steps=2).fit()
    print("DONE", flush=True)
''')


def test_a_second_run_into_a_busy_folder_is_refused_and_the_first_finishes(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    a = subprocess.Popen([sys.executable, "-c", BUSY, str(out), str(REPO / "tests")], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        t0 = time.time()
        while not (out / "log.csv").exists():
            assert a.poll() is None, a.stderr.read()[-3000:]
            assert time.time() - t0 < 120; time.sleep(0.05)
        for kw in ({"seed": 7}, {"resume": True}, {"overwrite": True}):
            with pytest.raises(ValueError, match=rf"out_dir '{out}' is in use by another run \(pid {a.pid} on "):
                _trainer(out, epochs=1, **kw).fit()
        assert a.poll() is None                                   # refused while the first was still running
        stdout, stderr = a.communicate(timeout=120)
    finally:
        if a.poll() is None: a.kill()
    assert a.returncode == 0 and "DONE" in stdout, stderr[-3000:]
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["train"]) == 3 and load_checkpoint(out / "checkpoints" / "last.pt")["global_step"] == 12
    steps = [int(r.split(",")[0]) for r in (out / "log.csv").read_text().splitlines()[1:] if ",train/loss," in r]
    assert steps == list(range(1, 13))                           # all of the first run's logged steps are there
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["seed"] == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_amp_auto_resume_is_bit_identical(tmp_path, monkeypatch):
    "amp='auto' times the first batch once; the choice is stored and a resume keeps it, whatever a new timing says"
    class Crash(Net):
        crash_at = None
        def training_step(self, b):
            if self.trainer.global_step == self.crash_at: raise KeyboardInterrupt("crash")
            return super().training_step(b)
    def run(out, timing_says, crash_at=None, resume=False):
        monkeypatch.setattr(Trainer, "_faster_amp", lambda self, batch: timing_says)   # what the timing picks
        cfg = TrainConfig(epochs=3, lr=0.05, optimizer="sgd", log_every=1, progress=False, device="cuda", amp="auto",
                          seed=1, checkpoint_every_steps=3, resume=resume)
        torch.manual_seed(0); m = Crash(); m.crash_at = crash_at
        tr = Trainer(m, DataLoader(Blobs(), batch_size=8, shuffle=True), cfg, out_dir=out)
        try: tr.fit()
        except KeyboardInterrupt: pass
        return tr
    ref = run(tmp_path / "ref", torch.bfloat16)
    run(tmp_path / "cut", torch.bfloat16, crash_at=7)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["amp"] == "bf16"
    res = run(tmp_path / "cut", None, resume=True)                 # this start's timing would pick full precision
    assert ref.amp_dtype == res.amp_dtype == torch.bfloat16 and res.global_step == ref.global_step == 12
    a, b = ref.method.state_dict(), res.method.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "ref" / "log.csv").read_text() == (tmp_path / "cut" / "log.csv").read_text()


# --- fgr-train: one line for what the user can fix -------------------------------------------------------------------

@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    "main(args) on the stand-in method and the digits config; returns (rc, stderr)"
    (tmp_path / "standin_methods.py").write_text(STANDIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tmp_path / "run.yaml"; cfg.write_text(yaml.safe_dump(CONFIG))
    def run(*args, config=cfg):
        rc = main(["--config", str(config), "--method-module", "standin_methods", *args])
        err = capsys.readouterr().err
        return rc, err
    return run


def test_disk_full_is_one_line_and_keeps_the_last_checkpoint(cli, tmp_path, monkeypatch):
    assert cli("--out-dir", str(tmp_path / "out"))[0] == 0
    out = tmp_path / "out" / "standin_linear_seed0"                 # the experiment's one run
    before = (out / "checkpoints" / "last.pt").read_bytes()
    real = os.fsync
    def full(fd):                                  # the disk fills up while the next checkpoint is written
        if ".last.pt." in os.readlink(f"/proc/self/fd/{fd}"): raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)
    monkeypatch.setattr(os, "fsync", full)
    rc, err = cli("--out-dir", str(tmp_path / "out"), "--set", "train.resume=true", "--set", "train.epochs=2")
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"fgr-train: error: no space left on the device: '{out / 'checkpoints' / 'last.pt'}'; "
                          "nothing was overwritten"), err
    assert (out / "checkpoints" / "last.pt").read_bytes() == before   # the previous checkpoint is intact
    assert not list((out / "checkpoints").glob(".*.tmp"))


def test_imports_need_the_flag(cli, tmp_path):
    (tmp_path / "payload.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    cfg = tmp_path / "imports.yaml"; cfg.write_text(yaml.safe_dump({**CONFIG, "imports": ["payload"]}))
    rc, err = cli("--out-dir", str(tmp_path / "out"), config=cfg)
    assert rc == 2 and "has imports: ['payload']; importing a module runs its code" in err and "--allow-imports" in err
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out").exists()
    rc, err = cli("--out-dir", str(tmp_path / "out"), "--allow-imports", config=cfg)
    assert rc == 0 and (tmp_path / "ran").exists(), err


def test_settings_and_paths_are_one_line(cli, tmp_path):
    bad = tmp_path / "bad.yaml"; bad.write_text("methods: [standin_linear]\ntrain:\n  lr: [1e-3\n  epochs: 2\n")
    rc, err = cli(config=bad)
    assert rc == 2 and f"config file '{bad}' line 4" in err and "invalid YAML" in err and "<unicode string>" not in err
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "run"):
        rc, err = cli("--out-dir", str(out))
        assert rc == 2 and err.startswith("fgr-train: error: a file stands where a folder is needed: ") and str(out) in err, err
    for setting, msg in (("train.lr=.nan", "lr: expected a number, got nan"),
                         ("train.lr=.inf", "lr: expected a finite number, got inf"),
                         ("methods=[gapann]", "'gapann' is not a registered method (did you mean 'gapan'")):
        rc, err = cli("--out-dir", str(tmp_path / "o"), "--set", setting)
        assert rc == 2 and msg in err and "method_args" not in err and err.count("\n") == 1, err
    assert user_error_message(OSError(errno.EROFS, "Read-only file system", "/r/log.csv")) == \
        "the file system is read-only: '/r/log.csv'; nothing was overwritten (fgr replaces files atomically; earlier files are intact)"


def test_a_missing_test_image_fails_before_the_first_step(cli, tmp_path, monkeypatch):
    base = write_cub(tmp_path / "data")
    (base / "images" / "101.Bird_101" / "Bird_101_0001_1011.jpg").unlink()
    started = []
    monkeypatch.setattr(Trainer, "setup", lambda self: started.append(1))
    cfg = {**CONFIG, "data": {"dataset": "cub200", "root": str(tmp_path / "data"), "eval_split": "test"}}
    (tmp_path / "cub.yaml").write_text(yaml.safe_dump(cfg))
    rc, err = cli("--out-dir", str(tmp_path / "out"), config=tmp_path / "cub.yaml")
    assert rc == 2 and "1 of the 4 images it lists are missing, e.g. ['101.Bird_101/Bird_101_0001_1011.jpg']" in err, err
    assert "images.txt" in err and started == [] and not (tmp_path / "out").exists()


# --- loaders: images counted at construction -------------------------------------------------------------------------

def _drop_cub(r): base = write_cub(r); (base / "images/101.Bird_101/Bird_101_0000_1010.jpg").unlink(); return "cub200", "test", base, "images.txt"
def _drop_cars(r): base = write_cars(r); (base / "car_ims/000004.jpg").unlink(); return "cars196", "test", base, "cars_annos.mat"
def _drop_sop(r): base = write_sop(r); (base / "lamp_final/212_0.JPG").unlink(); return "sop", "test", r, "Ebay_test.txt"
def _drop_inshop(r): base = write_inshop(r); (base / "img/MEN/Tees_Tanks/id_00000050/02_3_back.jpg").unlink(); return "inshop", "gallery", base, "list_eval_partition.txt"
def _drop_f200k(r): base = write_fashion200k(r); (base / "women/skirts/mini/700/700_0.jpeg").unlink(); return "fashion200k", "test", r, "skirt_test_detect_all.txt"
def _drop_shoes(r): base = write_shoes(r); next(base.rglob("img_womens_boots_5.jpg")).unlink(); return "shoes", "test", r, "eval_im_names.txt"


@pytest.mark.parametrize("drop", [_drop_cub, _drop_cars, _drop_sop, _drop_inshop, _drop_f200k, _drop_shoes])
def test_missing_images_are_counted_when_the_loader_is_built(tmp_path, drop):
    name, split, root, listing = drop(tmp_path)
    with pytest.raises(DatasetFormatError, match=rf"{listing}'.*: 1 of the \d+ images it lists are (missing|not under)"):
        create_dataset(name, split, root=root, transform=T8)


# --- list files: paths stay inside the dataset folder; each malformed line is named ----------------------------------

def _edit(path:Path, old:str, new:str):
    text = path.read_text(); assert old in text, (path, old); path.write_text(text.replace(old, new, 1))


def _escape_cases():
    def cub(r, p): base = write_cub(r); _edit(base / "images.txt", "1 001.Bird_1/", f"1 {p}#"); return "cub200", "train", r, "images.txt", 1
    def sop(r, p): base = write_sop(r); _edit(base / "Ebay_train.txt", "chair_final/115_0.JPG", p); return "sop", "train", r, "Ebay_train.txt", 5
    def inshop(r, p):
        base = write_inshop(r); _edit(base / "Eval" / "list_eval_partition.txt", "img/MEN/Denim/id_00000080/01_1_front.jpg", p)
        return "inshop", "train", base, "list_eval_partition.txt", 5
    def f200k(r, p):
        base = write_fashion200k(r); _edit(base / "labels" / "skirt_test_detect_all.txt", "women/skirts/mini/700/700_0.jpeg", p)
        return "fashion200k", "test", r, "skirt_test_detect_all.txt", 1
    def compcars(r, p):
        base = write_compcars(r); _edit(base / "train_test_split/classification/test.txt", "78/1/2014/a2.jpg", p)
        return "compcars", "test", base, "test.txt", 1
    def wiki(r, p):
        base = write_wikipedia(r); _edit(base / "trainset_txt_img_cat.list", "010img", p)
        return "wikipedia", "train", r, "trainset_txt_img_cat.list", 1
    return [cub, sop, inshop, f200k, compcars, wiki]


@pytest.mark.parametrize("case", _escape_cases(), ids=lambda c: c.__name__)
@pytest.mark.parametrize("path", ["/etc/passwd", "../../../etc/passwd"])
def test_paths_outside_the_dataset_folder_are_refused(tmp_path, case, path):
    name, split, root, listing, line = case(tmp_path, path)
    with pytest.raises(DatasetFormatError, match=rf"{listing}' line {line}: .*found '{path}"):
        create_dataset(name, split, root=root, transform=T8)


def test_cars196_path_outside_the_folder_is_refused(tmp_path):
    from scipy.io import loadmat, savemat
    base = write_cars(tmp_path)
    mat = loadmat(base / "cars_annos.mat")
    mat["annotations"][0, 1]["relative_im_path"] = "../../etc/passwd"
    savemat(base / "cars_annos.mat", {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(DatasetFormatError, match=r"cars_annos.mat'.*expected a path inside the dataset folder, found '../../etc/passwd'"):
        create_dataset("cars196", "train", root=base, transform=T8)


def _malformed_cases():
    def compcars_make(r):
        base = write_compcars(r); _edit(base / "train_test_split/classification/train.txt", "78/1/2013/a3.jpg", "audi/1/2013/a3.jpg")
        return "compcars", "train", base, r"train.txt' line 2: expected '<make>/<model>/<year>/<name>.jpg' with numeric"
    def cub_class_id(r):
        base = write_cub(r); _edit(base / "classes.txt", "3 003.Bird_3", "x 003.Bird_3")
        return "cub200", "train", r, r"classes.txt' line 3: expected an integer, found 'x'"
    def cub_label_999(r):
        base = write_cub(r); _edit(base / "image_class_labels.txt", "3 2\n", "3 999\n")
        return "cub200", "train", r, r"image_class_labels.txt' line 3: expected an integer in \[1, 200\], found 999"
    def wiki_label_99(r):
        base = write_wikipedia(r); _edit(base / "testset_txt_img_cat.list", "\t1\n", "\t99\n")
        return "wikipedia", "test", r, r"testset_txt_img_cat.list' line 1: expected an integer in \[1, 10\], found 99"
    def shoes_null_caption(r):
        base = write_shoes(r); _edit(base / "relative_captions_shoes.json", '"is darker "', "null")
        return "shoes", "train", r, r"relative_captions_shoes.json': entry 0 needs string values"
    def fashioniq_string_captions(r):
        base = write_fashioniq(r); p = base / "captions" / "cap.dress.val.json"
        caps = json.loads(p.read_text()); caps[1]["captions"] = "is red"; p.write_text(json.dumps(caps))
        return "fashioniq", "val", r, r"cap.dress.val.json': entry 1: captions must be a non-empty list of strings, found 'is red'"
    return [compcars_make, cub_class_id, cub_label_999, wiki_label_99, shoes_null_caption, fashioniq_string_captions]


@pytest.mark.parametrize("case", _malformed_cases(), ids=lambda c: c.__name__)
def test_each_malformed_line_is_named(tmp_path, case):
    name, split, root, msg = case(tmp_path)
    with pytest.raises(DatasetFormatError, match=msg):
        create_dataset(name, split, root=root, transform=T8)


def test_a_method_check_batch_runs_before_anything_is_written(tmp_path):
    "Settings that must agree (FGAN: the data's image size and the method's region grid) fail at start, not at step 1"
    class Picky(Net):
        def check_batch(self, b):
            if b["image"].shape[1:] != (5,): raise ValueError(f"expected (B, 5) images, got {tuple(b['image'].shape)}")
    calls = []
    tr = _trainer(tmp_path / "out"); tr.method = Picky()
    tr.method.training_step = lambda b: calls.append(1)
    state = torch.get_rng_state()
    with pytest.raises(ValueError, match=r"expected \(B, 5\) images, got \(1, 6\)"): tr.fit()
    assert calls == [] and list((tmp_path / "out").iterdir()) == [] and torch.equal(torch.get_rng_state(), state)


def test_a_lock_held_by_orphaned_workers_of_a_killed_run_is_stale(tmp_path):
    "DataLoader workers fork with the lock's fd: after SIGKILL of the run they may hold the flock a while; the pid decides"
    import socket, subprocess
    from fgr_core.train import _LOCK_NAME, _lock_out_dir, _unlock
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    lock = tmp_path / _LOCK_NAME
    lock.write_text(f"pid {dead} on {socket.gethostname()}, since 2026-01-01 00:00:00")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", str(lock)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"            # an orphan holds the flock; its run is dead
        got = _lock_out_dir(tmp_path)
        assert got is not None and str(os.getpid()) in lock.read_text()
        _unlock(got)
    finally:
        holder.kill(); holder.wait()
