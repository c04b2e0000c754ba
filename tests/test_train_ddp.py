"""Two CPU processes (gloo, launched the way torchrun launches them: RANK/WORLD_SIZE/MASTER_* in the
environment) train the same model as one process with the same global batch; the results agree within
float tolerance. Also covers rank-0-only logging and checkpoints and all-gathered evaluation embeddings; the
distributed m-per-class order; every method's glyph config and the README's multi-GPU lines under torchrun; and
GAPan with sync_bn on 2 processes against 1 process."""
import json, math, os, re, shlex, socket, subprocess, sys, textwrap
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from fgr_core.core import load_checkpoint
from fgr_core.data import DistributedMPerClassSampler, MPerClassSampler
from fgr_core.run import load_experiment
from fgr_core.train import epoch_batches

REPO = Path(__file__).resolve().parents[1]

COMMON = textwrap.dedent('''
    import torch, torch.nn as nn, torch.nn.functional as F
    from torch.utils.data import DataLoader, Dataset
    from fgr_core.core import seed_everything
    from fgr_core.run import make_train_loader
    from fgr_core.train import Method, Trainer, TrainConfig, make_retrieval_eval

    class Blobs(Dataset):
        def __init__(self, n=64):
            g = torch.Generator().manual_seed(0)
            self.y = torch.arange(n) % 4
            self.x = torch.randn(4, 8, generator=g)[self.y] * 2 + torch.randn(n, 8, generator=g)
        def __len__(self): return len(self.y)
        def __getitem__(self, i): return {"image": self.x[i], "label": int(self.y[i]), "index": i}
        @property
        def labels(self): return self.y

    class Net(Method):
        def __init__(self):
            super().__init__(); self.body, self.head = nn.Linear(8, 6), nn.Linear(6, 4)
        def embed(self, b): return self.body(b["image"])
        def training_step(self, b):
            ce = F.cross_entropy(self.head(torch.tanh(self.embed(b))), b["label"])   # a per-sample mean
            return {"loss": ce}

    def train(out_dir):
        seed_everything(0)
        ds, cfg = Blobs(), TrainConfig(epochs=2, batch_size=16, lr=0.2, optimizer="sgd", momentum=0.9, grad_clip=0.5,
                                       warmup_steps=2, checkpoint_every_steps=3, log_every=1, progress=False, device="cpu", seed=3)
        ev = make_retrieval_eval(DataLoader(ds, batch_size=10), ks=(1, 2))
        m = Net()
        return m, Trainer(m, make_train_loader(ds, cfg), cfg, eval_fn=ev, out_dir=out_dir).fit()

    class Crasher(Net):
        crash_at = None
        def training_step(self, b):
            if self.trainer.global_step == self.crash_at: raise KeyboardInterrupt   # on every process at once
            return super().training_step(b)

    def train_m_per_class(out_dir, crash_at=None, resume=False):   # 2 epochs x 4 steps of 4 classes x m = 4
        seed_everything(0)
        ds, cfg = Blobs(), TrainConfig(epochs=2, batch_size=16, lr=0.2, optimizer="sgd", checkpoint_every_steps=2,
                                       progress=False, device="cpu", seed=3, resume=resume)
        m = Crasher(); m.crash_at = crash_at
        Trainer(m, make_train_loader(ds, cfg, "m_per_class", m=4), cfg, out_dir=out_dir).fit()
        return m
''')

WORKER = COMMON + textwrap.dedent('''
    import json, sys
    from fgr_core.train import init_distributed
    torch.set_num_threads(1)
    rank, world = init_distributed("cpu")
    assert world == 2
    m, hist = train(sys.argv[1])
    torch.save(m.state_dict(), f"{sys.argv[2]}/weights{rank}.pt")
    # exact resume under DDP with the distributed m-per-class order: killed mid-epoch 0 after the step-2 checkpoint
    full = train_m_per_class(f"{sys.argv[2]}/mpc_full")
    try: train_m_per_class(f"{sys.argv[2]}/mpc_cut", crash_at=3)
    except KeyboardInterrupt: pass
    resumed = train_m_per_class(f"{sys.argv[2]}/mpc_cut", resume=True)
    torch.save([full.state_dict(), resumed.state_dict()], f"{sys.argv[2]}/mpc{rank}.pt")
    with open(f"{sys.argv[2]}/hist{rank}.json", "w") as f: json.dump(hist, f)
    torch.distributed.destroy_process_group()
''')


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def _rank_env(rank:int, port:int, world:int=2)->dict:
    "The environment torchrun gives process `rank` of `world` on this machine"
    return dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_two_processes_match_one(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    port, procs = _free_port(), []
    for rank in range(2):
        env = _rank_env(rank, port)
        procs.append(subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(tmp_path / "ddp"), str(tmp_path)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    # the single-process reference (global batch 16 = 2 x 8) runs here meanwhile
    ns = {}; exec(COMMON, ns)
    ref, h_ref = ns["train"](tmp_path / "single")
    for p in procs:
        out, err = p.communicate(timeout=150)
        assert p.returncode == 0, err[-3000:]

    w0, w1 = (torch.load(tmp_path / f"weights{r}.pt") for r in range(2))
    for k, v in ref.state_dict().items():
        assert torch.equal(w0[k], w1[k]), k                                   # ranks stay in sync
        torch.testing.assert_close(w0[k], v, rtol=1e-5, atol=1e-6)            # DDP == one process
    h0 = json.loads((tmp_path / "hist0.json").read_text())
    assert len(h0["train"]) == 2 and len(h0["eval"]) == 2
    for a, b in zip(h0["train"] + h0["eval"], h_ref["train"] + h_ref["eval"]):
        assert a.keys() == b.keys()
        for k in a: assert abs(a[k] - b[k]) < 1e-5, (k, a[k], b[k])          # losses and R@k agree
    # rank 0 alone wrote the log, the history and the checkpoint (with both ranks' RNG states)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["checkpoints", "history.json", "log.csv"]
    ck = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert ck["world_size"] == 2 and len(ck["rng"]) == 2 and ck["global_step"] == 8
    # m_per_class under DDP: a run killed after the step-2 checkpoint and resumed ends exactly as the uninterrupted one
    for r in range(2):
        full, resumed = torch.load(tmp_path / f"mpc{r}.pt")
        for k, v in full.items(): assert torch.equal(resumed[k], v), (r, k)
    assert load_checkpoint(tmp_path / "mpc_cut" / "checkpoints" / "last.pt")["data_order"]["batches_per_epoch"] == 4


# ---------------------------------------------------------------------------------------------------------------
# The distributed m-per-class order, every method's config under torchrun, and the README's multi-GPU lines
# ---------------------------------------------------------------------------------------------------------------
CONFIGS = REPO / "configs"
# every run shrunk to seconds: few small images and classes, one epoch, small global batch (2 x 8, m = 4)
TINY = {"data.n_chars": 4, "data.n_typefaces": 4, "data.per_class": 10, "data.image_size": 64, "data.n_triplets": 32,
        "train.epochs": 1, "train.batch_size": 16, "train.device": "cpu", "train.progress": False,
        "train.num_workers": 0, "train.checkpoint_every_epochs": 1, "eval.batch_size": 64}


@pytest.mark.parametrize("world,batch_size,m", [(2, 16, 4), (4, 16, 2), (2, 12, 4), (3, 12, 2)])
def test_distributed_m_per_class_union_is_the_single_process_batch(world, batch_size, m):
    labels = torch.arange(11).repeat_interleave(torch.tensor([5, 7, 3, 9, 4, 6, 8, 2, 5, 5, 6]))
    ds = list(range(len(labels)))
    single = DataLoader(ds, batch_sampler=MPerClassSampler(labels, m, batch_size))
    ranks = [DataLoader(ds, batch_sampler=DistributedMPerClassSampler(labels, m, batch_size, world, r))
             for r in range(world)]
    for epoch in range(3):                                  # the Trainer's per-epoch re-seeding, the same on every rank
        ref = epoch_batches(single, 7, epoch)
        per = [epoch_batches(dl, 7, epoch) for dl in ranks]
        assert all(len(p) == len(ref) for p in per)
        for t, b in enumerate(ref):
            assert sum((p[t] for p in per), []) == b       # union at step t = the single-process batch, disjoint slices
            for p in per:
                c = labels[p[t]]
                assert len(p[t]) == batch_size // world
                if (batch_size // world) % m == 0:          # whole class groups when the per-rank batch allows
                    assert torch.bincount(c)[torch.unique(c)].tolist() == [m] * (batch_size // world // m)
        # exact resume: the position in the epoch is all a process needs; the rest of its batches is a pure function
        assert all(epoch_batches(dl, 7, epoch)[2:] == p[2:] for dl, p in zip(ranks, per))
    assert epoch_batches(ranks[0], 7, 0) != epoch_batches(ranks[0], 7, 1)


def _run_configs()->dict:
    "One `configs/*_glyphs*.yaml` fgr-train run config per method module (papermill parameter files are skipped)"
    from fgr_core.train import METHODS                       # `import fgr_core` registered every method
    out = {}
    for path in sorted(CONFIGS.glob("*_glyphs*.yaml")):
        method = load_experiment(path).methods[-1]           # the paper's method (baseline first)
        out.setdefault(METHODS.get(method).__module__, path)
    return out


def _readme_torchrun_lines()->list[str]:
    text = (REPO / "README.md").read_text().replace("\\\n", " ")   # continued lines joined
    return [re.sub(r"\s+#.*$", "", l).strip() for l in text.splitlines() if l.strip().startswith("torchrun ")]


def _tiny_overrides(config:Path)->list[str]:
    exp = load_experiment(config); m = exp.methods[-1]
    sets = {k: v for k, v in TINY.items() if k != "data.n_triplets" or exp.data.dataset == "glyphs_triplets"}
    sets.update({"methods": [m], "seeds": [0]})
    if "image_size" in {**exp.model, **exp.method_args.get(m, {})}: sets[f"method_args.{m}.image_size"] = TINY["data.image_size"]
    return [a for k, v in sets.items() for a in ("--set", f"{k}={json.dumps(v)}")]


def _start(args:list[str], out_dir:Path, nproc:int=2)->subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
           "--master_port", str(_free_port()), *args, "--out-dir", str(out_dir)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def _finish(p:subprocess.Popen, out_dir:Path, timeout:int=240)->dict:
    try: _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired: p.kill(); raise
    assert p.returncode == 0, err[-4000:]
    (run,) = out_dir.iterdir()                                  # the one (method, seed) run of the experiment
    return json.loads((run / "metrics.json").read_text())


def _command_for(config:Path)->list[str]:
    "The README's torchrun line for `config` when it has one (its process count set to 2), else the plain command"
    for line in _readme_torchrun_lines():
        args = shlex.split(line)
        if args[args.index("--config") + 1] == f"configs/{config.name}": return args[args.index("-m"):]
    return ["-m", "fgr_core.run", "--config", f"configs/{config.name}"]


def test_readme_multi_gpu_lines():
    lines = _readme_torchrun_lines()
    configs = {shlex.split(l)[shlex.split(l).index("--config") + 1] for l in lines}
    assert {"configs/gapan_glyphs.yaml", "configs/fgan_glyphs.yaml"} <= configs, lines   # the tested glyph commands
    for line in lines:                                      # every line parses and its config (with its --set) loads
        args = shlex.split(line)
        assert args[:3] == ["torchrun", "--nproc_per_node", args[2]] and args[3:5] == ["-m", "fgr_core.run"], line
        sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
        load_experiment(REPO / args[args.index("--config") + 1], sets)


@pytest.mark.slow
@pytest.mark.parametrize("config", list(_run_configs().values()), ids=lambda p: p.stem)
def test_method_runs_under_torchrun(config, tmp_path):
    res = _finish(_start(_command_for(config) + _tiny_overrides(config), tmp_path / "run"), tmp_path / "run")
    assert res["world_size"] == 2 and len(res["history"]["train"]) == 1
    assert all(math.isfinite(v) for v in res["history"]["train"][0].values())
    (run,) = (tmp_path / "run").iterdir()
    written = sorted(p.name for p in run.iterdir())                      # rank 0 wrote everything, once
    assert written == ["checkpoints", "config.yaml", "history.json", "log.csv", "metrics.json"]


@pytest.mark.slow
def test_gapan_sync_bn_two_processes_match_one(tmp_path):
    """GAPan with sync_bn: 2 processes x 8 images against 1 process x 16 images, the same seeds and batches.
    The forward passes agree up to float32 summation order (BatchNorm statistics, all-reduced gradients): the
    first step's losses agree to ~1e-7 relative. AdamW makes every step about lr * sign(gradient) for parameters
    whose gradient is ~0 (e.g. biases before a BatchNorm), so rounding can flip such steps: after 5 steps the
    epoch-mean losses agree to ~2e-5 relative, the weights on average to ~1e-6, but single weights by up to a few
    steps of lr (measured 8e-3 with lr 3e-3 on the new parameters). Tolerances: 1e-3 relative on the losses;
    mean weight difference < 1e-5 and every weight within 2 * lr * steps = 0.03 (a wrong gradient, ActNorm
    initialisation or BatchNorm statistic moves far more weights, by far more); 0.02 on R@k and mAP@R, where a
    near tie between two gallery items may flip for one of the 80 queries."""
    args = ["-m", "fgr_core.run", "--config", "configs/gapan_glyphs.yaml",
            *_tiny_overrides(CONFIGS / "gapan_glyphs.yaml"), "--set", "train.sync_bn=true",
            "--set", "data.image_size=32"]
    procs = {n: _start(args, tmp_path / f"p{n}", nproc=n) for n in (2, 1)}   # both at once
    two, one = (_finish(procs[n], tmp_path / f"p{n}") for n in (2, 1))
    assert (two["world_size"], one["world_size"]) == (2, 1)
    print("2 processes:", two["history"], "\n1 process:  ", one["history"])
    for a, b in zip(two["history"]["train"], one["history"]["train"], strict=True):
        for k in a: assert a[k] == pytest.approx(b[k], rel=1e-3), (k, a[k], b[k])
    for k, v in one["metrics"].items(): assert two["metrics"][k] == pytest.approx(v, abs=0.02), k
    w2, w1 = (load_checkpoint(tmp_path / f"p{n}" / "gapan_seed0" / "checkpoints" / "last.pt")["method"] for n in (2, 1))
    diff = torch.cat([(w2[k] - v).abs().flatten() for k, v in w1.items() if v.is_floating_point()])
    print("weight difference: mean", diff.mean().item(), "max", diff.max().item())
    assert diff.mean() < 1e-5 and diff.max() < 2 * 3e-4 * 10 * 5       # lr 3e-4 x new_lr_mult 10, 5 steps


FLOW_BN = textwrap.dedent('''
    import sys, torch
    from fgr_core.flows import flow_transform
    from fgr_core.train import SyncFlowBatchNorm, convert_sync_batchnorm, init_distributed
    rank, world = init_distributed("cpu") if len(sys.argv) > 2 else (0, 1)
    torch.manual_seed(0)
    flow = convert_sync_batchnorm(flow_transform(6, depth=2, hidden=8, norm="batchnorm"))
    assert sum(isinstance(m, SyncFlowBatchNorm) for m in flow.modules()) == 2      # nflows' BatchNorm converted
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1)) * 3 + 1
    calls, reduce = [], torch.distributed.all_reduce
    torch.distributed.all_reduce = lambda *a, **k: calls.append(1) or reduce(*a, **k)   # counts the forward's
    z, logdet = flow(x[rank::world])                                               # this process's share
    torch.distributed.all_reduce = reduce
    assert len(calls) == (2 * 2 if world > 1 else 0), calls                        # two per BatchNorm layer
    (z.pow(2).sum() - logdet.sum()).backward()                                     # gradients: summed over processes
    grads = torch.cat([p.grad.flatten() for p in flow.parameters()])
    if world > 1: torch.distributed.all_reduce(grads)
    torch.save({"z": z.detach(), "logdet": logdet.detach(), "grads": grads, "buffers": dict(flow.named_buffers())},
               f"{sys.argv[1]}/flow{rank}of{world}.pt")
''')


def test_flow_batchnorm_synchronised_two_processes_match_one(tmp_path):
    "`sync_bn` covers nflows' BatchNorm flow layers: 2 processes x 8 rows give 1 process x 16 rows' numbers"
    (tmp_path / "flow.py").write_text(FLOW_BN)
    port, procs = _free_port(), []
    for rank in range(2):
        env = _rank_env(rank, port)
        procs.append(subprocess.Popen([sys.executable, str(tmp_path / "flow.py"), str(tmp_path), "ddp"],
                                      stderr=subprocess.PIPE, text=True, env=env))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    one = subprocess.run([sys.executable, str(tmp_path / "flow.py"), str(tmp_path)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert one.returncode == 0, one.stderr[-3000:]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
    ref, parts = torch.load(tmp_path / "flow0of1.pt"), [torch.load(tmp_path / f"flow{r}of2.pt") for r in range(2)]
    for r, part in enumerate(parts):
        torch.testing.assert_close(part["z"], ref["z"][r::2], rtol=1e-5, atol=1e-5)       # global batch statistics
        torch.testing.assert_close(part["logdet"], ref["logdet"][r::2], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(part["grads"], ref["grads"], rtol=1e-4, atol=1e-5)
        for k, v in ref["buffers"].items(): torch.testing.assert_close(part["buffers"][k], v, rtol=1e-5, atol=1e-6)
