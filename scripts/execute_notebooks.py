"""Re-execute the library notebooks (00-17) and the results notebook (30) in order and store their outputs in place.

    python scripts/execute_notebooks.py              # every notebook that is committed executed
    python scripts/execute_notebooks.py 10 13        # only these (by number prefix)

Outputs (text, tables, PNG figures) are what readers see in JupyterLab, on GitHub and on the docs site. Each
notebook runs in a fresh kernel with `nbs/` as its working folder, cells marked slow included; the executed copy
replaces the notebook only if every cell ran (written atomically), then `nbdev_clean` tidies its metadata and keeps
the outputs (settings.ini: clear_all = False). The reproduction notebooks 20-24 are not executed here: their
results come from `scripts/run_defaults.py` into `results/`.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NBS = REPO / "nbs"
EXECUTED = re.compile(r"^(0\d|1\d|30)[a-z]?_.*\.ipynb$")   # 00-19 (library) and 30 (results); not 20-24


def executed_notebooks(prefixes: list[str] | None = None) -> list[Path]:
    "The notebooks committed with outputs, in reading order, optionally only those whose name starts with a prefix"
    nbs = sorted(p for p in NBS.glob("*.ipynb") if EXECUTED.match(p.name))
    if prefixes:
        nbs = [p for p in nbs if any(p.name.startswith(x) for x in prefixes)]
        if not nbs:
            known = sorted(p.name for p in NBS.glob("*.ipynb"))
            raise SystemExit(f"no executed notebook matches {prefixes}; known: {known}")
    return nbs


NOISE = re.compile(r"TqdmWarning|it/s\]|s/it\]|\[transformers\]")   # import warnings, progress bars, hub chatter


def drop_noise(nb) -> None:
    "Remove stderr outputs that are progress bars or library chatter (they carry machine paths, not content)"
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.get("outputs", []) if not (
                o.get("output_type") == "stream" and o.get("name") == "stderr"
                and (NOISE.search(o.get("text", "")) or not o.get("text", "").strip()))]


def execute(path: Path, timeout: int = 900) -> float:
    "Run `path` in a fresh kernel (cwd nbs/) and replace it atomically with the executed copy; return seconds"
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(path, as_version=4)
    t0 = time.time()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NBS)}}).execute()
    drop_noise(nb)
    tmp = path.with_name(f".{path.name}.tmp")
    nbformat.write(nb, tmp)
    tmp.replace(path)
    return time.time() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("prefixes", nargs="*", help="number prefixes such as 04 or 10 (default: all)")
    a = p.parse_args(argv)
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"   # PNG outputs; Agg would store none
    paths = executed_notebooks(a.prefixes)
    total = 0.0
    for path in paths:
        print(f"{path.name} ...", end=" ", flush=True)
        s = execute(path)
        total += s
        print(f"{s:.1f} s", flush=True)
    exe = Path(sys.executable).with_name("nbdev_clean")
    for path in paths:
        subprocess.run([str(exe) if exe.exists() else "nbdev_clean", "--fname", str(path)], cwd=REPO, check=True)
    size = sum(f.stat().st_size for f in NBS.rglob("*") if f.is_file()) / 2**20
    print(f"{len(paths)} notebooks in {total:.0f} s; nbs/ is {size:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
