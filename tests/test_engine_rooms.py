"The engine's rooms: no method module imports the Trainer, and `train.py` holds the Trainer room alone (issue 25, item 5)"
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "fgr_core"
METHOD_MODULES = ["gapan", "fggan", "dmcac", "cir", "fgan"]
# the Trainer room: its config, the AMP choice, the error it raises, the Trainer and the helpers of its @patch'ed methods
TRAINER_ROOM = {"RUN_FILES", "RESUME_NEUTRAL", "_holder_gone", "run_differences", "_flat", "_AMP_NAMES", "_LOCK_NAME", "_lock_out_dir", "_unlock", "_rebuilt_schedule",   # resume checks and the folder lock
                "TrainConfig", "resolve_amp", "fastest_autocast", "NonFiniteLossError", "Trainer",
                "_params_of", "_rng_state", "_set_rng_state"}
ENGINE_ROOMS = ["distributed", "feed", "method", "train"]


def _tree(name): return ast.parse((PKG / f"{name}.py").read_text(), filename=f"fgr_core/{name}.py")


def _imported_modules(tree, name):
    "Absolute names of the fgr_core modules that module `name` imports, at any depth (functions included)"
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import): out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:  # relative: from .train import X / from . import train
                base = "fgr_core" + ("." + base if base else "")
            out.add(base)
            if not n.module or n.module == "fgr_core": out |= {f"{base}.{a.name}" for a in n.names}
    return {m for m in out if m == "fgr_core" or m.startswith("fgr_core.")}


@pytest.mark.parametrize("name", METHOD_MODULES)
def test_method_modules_do_not_import_the_trainer(name):
    mods = _imported_modules(_tree(name), name)
    assert "fgr_core.train" not in mods, f"fgr_core/{name}.py imports fgr_core.train; import the contract from fgr_core.method"
    assert "fgr_core.method" in mods, f"fgr_core/{name}.py does not import fgr_core.method (the contract)"


def test_the_import_checker_sees_every_form():
    "The checker itself: each way of importing the Trainer module is caught"
    for src in ["from .train import Trainer", "from fgr_core.train import X", "import fgr_core.train as t",
                "from . import train", "from fgr_core import train", "def f():\n    from .train import Trainer"]:
        assert "fgr_core.train" in _imported_modules(ast.parse(src), "x"), src


def _top_level_names(tree):
    "Names that module-level statements define (functions, classes, assignments); @patch'ed functions included"
    names = {}
    for n in tree.body:
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            patched = any(isinstance(d, ast.Name) and d.id == "patch" or
                          isinstance(d, ast.Call) and getattr(d.func, "id", None) == "patch" for d in n.decorator_list)
            names[n.name] = n.args.args[0].annotation.id if patched and isinstance(n, ast.FunctionDef) else None
        elif isinstance(n, (ast.Assign, ast.AnnAssign)):
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target]):
                if isinstance(t, ast.Name) and t.id != "__all__": names[t.id] = None
    return names


def test_train_holds_the_trainer_room_alone():
    names = _top_level_names(_tree("train"))
    patched_on = {k: v for k, v in names.items() if v is not None}
    assert set(patched_on.values()) == {"Trainer"}, f"train.py patches methods onto {set(patched_on.values())}, not the Trainer only"
    plain = {k for k, v in names.items() if v is None}
    assert plain == TRAINER_ROOM, f"train.py defines more or less than the Trainer room: extra {plain - TRAINER_ROOM}, missing {TRAINER_ROOM - plain}"


def test_engine_rooms_import_downwards_only():
    "distributed < feed < method < train: each room imports only rooms below it, and the engine never fgr_core.data"
    for i, name in enumerate(ENGINE_ROOMS):
        mods = _imported_modules(_tree(name), name)
        above = {f"fgr_core.{m}" for m in ENGINE_ROOMS[i + 1:]} | {f"fgr_core.{m}" for m in METHOD_MODULES}
        assert not mods & above, f"fgr_core/{name}.py imports {mods & above}, a room above it"
        assert "fgr_core.data" not in mods, f"fgr_core/{name}.py imports fgr_core.data (use the dataset protocol)"
    for name in ENGINE_ROOMS:   # no import at function level reaches into data, backbones or metrics
        for fn in (n for n in ast.walk(_tree(name)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            inner = _imported_modules(ast.Module(body=fn.body, type_ignores=[]), name)
            bad = inner & {"fgr_core.data", "fgr_core.backbones", "fgr_core.metrics"}
            assert not bad, f"fgr_core/{name}.py: {fn.name} imports {bad} at function level"


def test_chance_levels_default():
    from fgr_core.method import Method
    assert Method().chance_levels() == {}
