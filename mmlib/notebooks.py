"""Running the course's notebooks: one runner behind the tests, `mmlib.results --run` and the learner
notebooks' `python -m mmlib.learner_notebooks execute`.

Every run goes through papermill, with a time limit on each cell (`CELL_TIMEOUT` at the small CI
parameters, `DEFAULT_CELL_TIMEOUT` at the defaults), so a lesson that hangs fails with the cell
named instead of holding the machine until someone notices:

    run_notebook(path, out, parameters={...})    # the tests and `results --run --ci`: small parameters injected
    run_notebook(path, out, timeout=DEFAULT_CELL_TIMEOUT)   # at the defaults: the committed outputs
    nbformat.write(as_committed(out), path)      # papermill's metadata dropped before committing

The tests' default runs inject their parameters here (`prepare_only=True`) and then execute under
nbval, which compares the budget-independent outputs with the committed ones (tests/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import nbformat

CELL_TIMEOUT = 600
"""Seconds one cell may run at a lesson's small CI parameters, where a cell takes seconds."""
DEFAULT_CELL_TIMEOUT = 3600
"""Seconds one cell may run at a lesson's defaults: the main runs take minutes (README's results table),
so a cell still running after an hour has hung."""


def run_notebook(path: str | os.PathLike, output: str | os.PathLike, *, parameters: dict[str, Any] | None = None,
                 timeout: int = CELL_TIMEOUT, quiet: bool = False, prepare_only: bool = False) -> Path:
    """Execute the notebook at `path` top to bottom into `output`, in `path`'s folder; return `output`.

    `parameters` are injected after the cell tagged `parameters` (None: the notebook's own defaults).
    Each cell may run `timeout` seconds. `quiet=True` turns the training progress bars off for the run
    (a committed tqdm widget would be a dead widget). `prepare_only=True` only writes the notebook with
    the parameters injected, for another executor (nbval). A failing cell raises papermill's
    `PapermillExecutionError`, which names the cell and carries the exception (`ename`, `evalue`).
    """
    import papermill as pm

    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1:
        raise ValueError(f"timeout must be a whole number of seconds >= 1 (every cell has a limit), got {timeout!r}")
    path, output = Path(path), Path(output)
    old = os.environ.get("MMLIB_QUIET")
    if quiet:
        os.environ["MMLIB_QUIET"] = "1"
    try:
        pm.execute_notebook(str(path), str(output), parameters=parameters, cwd=str(path.parent),
                            kernel_name="python3", progress_bar=False, execution_timeout=timeout,
                            prepare_only=prepare_only)
    finally:
        if quiet:
            if old is None:
                os.environ.pop("MMLIB_QUIET", None)
            else:
                os.environ["MMLIB_QUIET"] = old
    return output


def as_committed(path: str | os.PathLike) -> "nbformat.NotebookNode":
    """The executed notebook at `path` as one to commit: papermill's and the executor's timing metadata dropped."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    return nb
