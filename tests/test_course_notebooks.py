"""The lecture notebooks in course/: committed with their outputs, and each re-executes top to bottom without error.

Every notebook runs in a fresh Jupyter kernel through nbclient, as a student's "Run all" would,
from the course/ folder (some read committed results relative to it). Any cell that raises fails
the test with the cell's error. Each notebook has a wall-clock ceiling, so one that hangs cannot eat
CI's budget; it is a limit, not a timing assertion (each is meant to run in at most 90 s on a
2-core laptop, usually far less).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbclient
import nbformat
import pytest

COURSE = Path(__file__).resolve().parent.parent / "course"
NOTEBOOKS = sorted(COURSE.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_S = 240
NOTEBOOK_TIMEOUT_S = 300


def test_the_course_has_its_lectures_in_order():
    names = [p.name for p in NOTEBOOKS]
    assert len(names) >= 6, names
    assert [int(n[:2]) for n in names] == list(range(1, len(names) + 1))  # 01, 02, ... with no gap
    readme = (COURSE / "README.md").read_text(encoding="utf-8")
    for name in names:
        assert name in readme, f"course/README.md does not list {name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_holds_its_outputs(path: Path):
    """Read on a repository host, a notebook shows what it computed: every code cell ran, in order, without error."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code"
    counts = [c.get("execution_count") for c in code]
    assert None not in counts, f"{path.name}: cell {counts.index(None)} was never executed"
    assert counts == sorted(counts), f"{path.name}: cells were executed out of order: {counts}"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: committed with an error output: {errors[0].ename}: {errors[0].evalue}"
    assert _images(nb), f"{path.name} shows no figure"


def _images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def _execute(nb, cwd: Path) -> None:
    """Run every cell in a fresh kernel; raises nbclient's CellExecutionError (or its timeout) on the first failure.

    Each cell may take what is left of the notebook's budget, at most CELL_TIMEOUT_S: so the
    notebook as a whole stops after NOTEBOOK_TIMEOUT_S.
    """
    deadline = time.monotonic() + NOTEBOOK_TIMEOUT_S

    def cell_timeout(cell) -> int:
        return max(1, min(CELL_TIMEOUT_S, int(deadline - time.monotonic())))

    client = nbclient.NotebookClient(
        nb, timeout_func=cell_timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_top_to_bottom(path: Path, monkeypatch):
    # The kernel must import this checkout's minivae (CI installs it; a developer may use PYTHONPATH).
    root = str(COURSE.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    try:
        _execute(nb, COURSE)
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name} failed in a cell:\n{err}")
    except TimeoutError:
        pytest.fail(f"{path.name} did not finish within {NOTEBOOK_TIMEOUT_S} s")
    assert _images(nb) > 0, f"{path.name} ran but showed no figure inline"
    if any("Trainer(" in c.source for c in nb.cells if c.cell_type == "code"):
        # tqdm.auto: in a kernel the trainer's bar is one ipywidgets progress bar, not text blocks on stderr
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs), path.name
        assert not any(o.output_type == "stream" and o.name == "stderr" and "step/s" in o.text for o in outputs)
