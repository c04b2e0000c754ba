"""Shared pytest fixtures: run a repository notebook through papermill with small parameters."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NBS = REPO / "nbs"


@pytest.fixture
def run_notebook(tmp_path):
    """Execute `nbs/<name>` with papermill and `parameters`; return the executed notebook's path.

    `out_dir` defaults to `tmp_path / "out"` unless the parameters name one. The kernel is the
    interpreter running pytest, so the notebook sees the same installed `fgr_core`.
    """
    import papermill as pm

    def _run(name: str, parameters: dict, timeout: int = 600) -> Path:
        src = NBS / name
        if not src.is_file():
            raise FileNotFoundError(f"no notebook {src}")
        params = {"out_dir": str(tmp_path / "out"), **parameters}
        out = tmp_path / f"executed_{name}"
        pm.execute_notebook(str(src), str(out), parameters=params, cwd=str(NBS), kernel_name="python3",
                            progress_bar=False, execution_timeout=timeout)
        return out

    return _run
