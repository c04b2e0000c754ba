"""Shared pytest fixtures: run a repository notebook through papermill with small parameters."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NBS = REPO / "nbs"


@pytest.fixture
def run_notebook(tmp_path):
    """Execute `nbs/<name>` with papermill and `parameters`; return the executed notebook's path.

    The experiment's `train.out_dir` defaults to `tmp_path / "out"` unless `parameters["overrides"]` names one.
    The kernel is the interpreter running pytest, so the notebook sees the same installed `fgr_core`.
    """
    import papermill as pm

    def _run(name: str, parameters: dict, timeout: int = 600) -> Path:
        src = NBS / name
        if not src.is_file():
            raise FileNotFoundError(f"no notebook {src}")
        overrides = {"train.out_dir": str(tmp_path / "out"), **dict(parameters.get("overrides") or {})}
        params = {**parameters, "overrides": overrides}
        out = tmp_path / f"executed_{name}"
        pm.execute_notebook(str(src), str(out), parameters=params, cwd=str(NBS), kernel_name="python3",
                            progress_bar=False, execution_timeout=timeout)
        return out

    return _run


RESULT_KEYS = ["paper", "dataset", "main_metric", "config", "params", "sizes", "runs", "summary", "claims", "paper_rows", "seconds",
               "environment"]


def check_results(out: Path, paper: str, methods: list, seeds: list, metrics: list, figures: list,
                  bounds: tuple = (0.0, 100.0)) -> dict:
    """Check the files every reproduction writes (`fgr_core.repro`): results.json in the shared schema, runs.csv,
    table.csv and figures/; every (method, seed) run present with its resolved config, health and finite metrics
    (labels such as "R@1" or "mAP@all (RE)") in percent; every claim judged. Returns results.json."""
    import json, math

    import pandas as pd
    from fgr_core.repro import metric_label

    res = json.loads((out / "results.json").read_text())
    assert list(res)[:len(RESULT_KEYS)] == RESULT_KEYS, list(res)
    assert res["paper"] == paper and res["seconds"] > 0
    assert set(res["environment"]) == {"fgr_core", "torch", "device", "git_commit"}
    assert isinstance(res["config"]["seeds"], list) and isinstance(res["config"]["methods"], list)
    got = {(r["method"], r["seed"]) for r in res["runs"] if r["variant"] is None}
    assert {(m, s) for m in methods for s in seeds} <= got, got
    for r in res["runs"]:
        assert set(r) == {"method", "variant", "seed", "config", "metrics", "health", "train_seconds"}, r
        if r["method"] != "floor" and r["config"] is not None:
            assert r["config"]["seed"] == r["seed"] == r["config"]["train"]["seed"], r["config"]
        vals = {metric_label(m["metric"], m["k"], m["split"]): m["value"] for m in r["metrics"]}
        for k in metrics if r["method"] in methods and r["variant"] is None else []:
            assert math.isfinite(vals[k]) and bounds[0] <= vals[k] <= bounds[1], (r["method"], k, vals.get(k))
    for m in methods:
        for k in metrics:
            assert set(res["summary"][m][k]) == {"mean", "std", "n"}, (m, k)
    for c in res["claims"]:
        assert c["verdict"] in ("reproduced", "not reproduced: behind", "not reproduced: tie", "inconclusive", "not run") \
            or c["verdict"].startswith("indicative: "), c
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == len(res["runs"]) and {"method", "variant", "seed", "train_seconds", *metrics} <= set(runs.columns)
    table = pd.read_csv(out / "table.csv")
    assert list(table.columns[:2]) == ["source", "method"]
    assert set(methods) <= set(table[table["source"] == "ours"]["method"])
    for f in figures:
        p = out / "figures" / f"{f}.png"
        assert p.is_file() and p.stat().st_size > 0, p
    return res


@pytest.fixture
def results_checker():
    """`check_results` as a fixture, for the reproduction smoke tests."""
    return check_results
