"""The notebooks readers open are committed executed: figures stored as images, and `nbs/` within its size budget."""
import ast
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NBS = REPO / "nbs"
EXECUTED = re.compile(r"^(0\d|1\d|30)[a-z]?_.*\.ipynb$")   # scripts/execute_notebooks.py executes these
FIGURES = re.compile(r"^(0[4-9]|1[0-4]|30)[a-z]?_")          # method and component notebooks with figures, and 30
DRAWS = re.compile(r"plt\.show\(\)|display\(Image\(")


def _cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def _shows_a_value(src: str) -> bool:
    "True if the cell ends with a bare expression (a name, attribute, subscript ...) that Jupyter displays"
    try: body = ast.parse(src).body
    except SyntaxError: return False
    return bool(body) and isinstance(body[-1], ast.Expr) and not isinstance(body[-1].value, (ast.Call, ast.Constant))


def test_executed_notebooks_show_values():
    shown = {p.name: [c for c in _cells(p) if _shows_a_value("".join(c["source"]))]
             for p in NBS.glob("*.ipynb") if EXECUTED.match(p.name)}
    assert sum(map(len, shown.values())) >= 5, "expected value-displaying cells in the executed notebooks"
    missing = {n: [c.get("id") for c in cs if not c.get("outputs")] for n, cs in shown.items()}
    missing = {n: ids for n, ids in missing.items() if ids}
    assert not missing, f"cells that display a value have no stored output: {missing}; run scripts/execute_notebooks.py"


@pytest.mark.parametrize("path", sorted(p for p in NBS.glob("*.ipynb") if FIGURES.match(p.name)), ids=lambda p: p.stem)
def test_figure_cells_store_their_image(path):
    missing = [c.get("id") for c in _cells(path) if DRAWS.search("".join(c["source"]))
               and not any("image/png" in o.get("data", {}) for o in c.get("outputs", []))]
    assert not missing, (f"{path.name}: figure cell(s) {missing} have no stored PNG; "
                         f"run `python scripts/execute_notebooks.py {path.name[:2]}`")


def test_method_notebooks_teach_with_figures():
    for n in ("10_gapan", "11_fggan", "12_dmcac", "13_cir", "14_fgan"):
        figs = sum(bool(DRAWS.search("".join(c["source"]))) for c in _cells(NBS / f"{n}.ipynb"))
        assert figs >= 2, f"{n}.ipynb draws {figs} figure(s); each method notebook shows at least two"


def test_nbs_folder_within_budget():
    size = sum(f.stat().st_size for f in NBS.rglob("*") if f.is_file()) / 2**20
    assert size <= 15, f"nbs/ is {size:.1f} MB, over the 15 MB budget: lower the figures' dpi or size"


def _mixes_import_and_code(src: str) -> bool:
    "True if a cell holds an import next to other statements (nbdev's docs processing runs every cell with an import)"
    try: body = ast.parse("\n".join(l for l in src.splitlines() if not l.lstrip().startswith(("%", "!")))).body
    except SyntaxError: return False
    imports = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))]
    others = [n for n in body if not isinstance(n, (ast.Import, ast.ImportFrom))
              and "nbdev_export" not in ast.unparse(n)]
    return bool(imports and others)


@pytest.mark.parametrize("path", sorted(p for p in NBS.glob("*.ipynb") if EXECUTED.match(p.name)), ids=lambda p: p.stem)
def test_docs_cells_keep_imports_alone(path):
    bad = [c.get("id") for c in _cells(path) if not re.search(r"^#\|\s*export", "".join(c["source"]), re.M)
           and _mixes_import_and_code("".join(c["source"]))]
    assert not bad, (f"{path.name}: cell(s) {bad} mix an import with other code; nbdev_proc_nbs (docs/build.py) executes "
                     f"such cells out of context: put the import in a cell of its own")
