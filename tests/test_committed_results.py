"""The committed defaults learned (issue 26): each `results/<paper>/results.json`, written by
`python scripts/run_defaults.py`, has an untrained `floor` run, three or more seeds of every compared method, a health
entry for every trained run, every classification term ending below 0.7 of its chance level, and every compared method
above the floor on the paper's main metric. A stale results folder (an older default, a notebook that changed without
`run_defaults.py`) fails here."""
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAPERS = ["gapan", "fggan", "dmcac", "cir", "fgan"]


@pytest.fixture(params=PAPERS)
def results(request) -> dict:
    return json.loads((REPO / "results" / request.param / "results.json").read_text())


def _main(results: dict, method: str) -> float:
    "Mean over seeds of `method` (no variant) on the paper's main metric, percent"
    return results["summary"][method][results["main_metric"]]["mean"]


def test_floor_and_three_seeds_per_compared_method(results):
    methods = results["config"]["methods"]
    runs = [r for r in results["runs"] if r["variant"] is None]
    assert any(r["method"] == "floor" for r in runs), "no floor run"
    for m in methods:
        seeds = {r["seed"] for r in runs if r["method"] == m}
        assert len(seeds) >= 3 and seeds == set(results["config"]["seeds"]), (m, seeds)
    assert all(r["health"] for r in results["runs"] if r["method"] != "floor" and r["config"] is not None)


def test_classification_terms_leave_chance(results):
    "Every run, variants included: a logged classification term ends below 0.7 of its chance level (ln C)"
    high = [(r["method"], r["variant"], r["seed"], t, round(h["last"] / h["chance"], 2))
            for r in results["runs"] for t, h in r["health"].items() if h.get("chance") and not h["last"] < 0.7 * h["chance"]]
    assert not high, f"{results['paper']}: terms that end at 0.7 of chance or above (method, variant, seed, term, ratio): {high}"


def test_compared_methods_beat_the_floor_on_the_main_metric(results):
    floor = _main(results, "floor")
    behind = {m: round(_main(results, m), 2) for m in results["config"]["methods"] if not _main(results, m) > floor}
    assert not behind, f"{results['paper']}: behind the floor's {floor:.2f} on {results['main_metric']}: {behind}"
