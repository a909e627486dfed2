"""The notebooks under notebooks/ run top to bottom on a fresh kernel, so they never go stale.

Each notebook is also committed with its outputs (so it reads on GitHub without running it); the test checks
that the committed file was executed, then executes a copy and checks that no cell fails and that the
derivation renders as math (a text/latex output with a sum in it).
"""

from __future__ import annotations

from pathlib import Path

# the dev extra installs these; a missing one is a failure, not a skip
import ipykernel  # noqa: F401
import matplotlib  # noqa: F401
import nbclient
import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 120  # seconds per cell; each notebook takes under a minute (04, exporting to ONNX, the longest)


def _outputs(nb) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def _has_rendered_sum(nb) -> bool:
    return any("\\sum" in "".join(o.get("data", {}).get("text/latex", "")) for o in _outputs(nb))


def test_there_are_notebooks():
    names = [p.name for p in NOTEBOOKS]
    for name in ("01_evit_walkthrough.ipynb", "02_ties_and_the_seed.ipynb", "03_write_your_own.ipynb",
                 "04_export_and_timm.ipynb"):
        assert name in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_with_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    cells = _code_cells(nb)
    assert cells, f"{path.name} has no code cells"
    missing = [i for i, c in enumerate(cells) if c.get("execution_count") is None]
    assert not missing, f"{path.name}: code cells {missing} were never executed; commit the notebook executed"
    assert not [o for o in _outputs(nb) if o.output_type == "error"], f"{path.name} was committed with an error"
    assert _has_rendered_sum(nb), f"{path.name} was committed without its rendered LaTeX outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_runs_top_to_bottom(path: Path):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    errors = [o for o in _outputs(nb) if o.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0].ename}: {errors[0].evalue}"
    assert _has_rendered_sum(nb), f"{path.name}: no text/latex output with a \\sum"
