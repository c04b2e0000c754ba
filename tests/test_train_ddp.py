"""Two CPU processes (gloo, launched the way torchrun launches them: RANK/WORLD_SIZE/MASTER_* in the
environment) train the same model as one process with the same global batch; the results agree within
float tolerance. Also covers rank-0-only logging and checkpoints and all-gathered evaluation embeddings."""
import json, os, socket, subprocess, sys, textwrap
from pathlib import Path

import torch

from fgr_core.core import load_checkpoint

REPO = Path(__file__).resolve().parents[1]

COMMON = textwrap.dedent('''
    import torch, torch.nn as nn, torch.nn.functional as F
    from torch.utils.data import DataLoader, Dataset
    from fgr_core.core import seed_everything
    from fgr_core.train import Method, Trainer, TrainConfig, make_retrieval_eval, make_train_loader

    class Blobs(Dataset):
        def __init__(self, n=64):
            g = torch.Generator().manual_seed(0)
            self.y = torch.arange(n) % 4
            self.x = torch.randn(4, 8, generator=g)[self.y] * 2 + torch.randn(n, 8, generator=g)
        def __len__(self): return len(self.y)
        def __getitem__(self, i): return {"image": self.x[i], "label": int(self.y[i]), "index": i}

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
''')

WORKER = COMMON + textwrap.dedent('''
    import json, sys
    from fgr_core.train import init_distributed
    torch.set_num_threads(1)
    rank, world = init_distributed("cpu")
    assert world == 2
    m, hist = train(sys.argv[1])
    torch.save(m.state_dict(), f"{sys.argv[2]}/weights{rank}.pt")
    with open(f"{sys.argv[2]}/hist{rank}.json", "w") as f: json.dump(hist, f)
    torch.distributed.destroy_process_group()
''')


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    port, procs = _free_port(), []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
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
