"""Shared fixtures: running lessons with papermill at the small parameters CI uses.

Every lesson notebook stores its CI parameters in its own metadata (`metadata.mmlib.ci_parameters`),
so a lesson and the budget it is tested at live in one file. `run_lesson` executes a notebook once
per test session with those parameters plus `metrics_path`, and returns the metrics it wrote and the
executed notebook; tests for the same notebook share that one run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from mmlib.notebooks import CELL_TIMEOUT, run_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
LEARNER = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((NOTEBOOKS / "solutions").glob("[0-9][0-9]_*_solutions.ipynb"))
ALL = LEARNER + SOLUTIONS


def nb_id(path: Path) -> str:
    return path.stem


def ci_parameters(path: Path) -> dict:
    nb = nbformat.read(path, as_version=4)
    return dict(nb.metadata.get("mmlib", {}).get("ci_parameters", {}))


# The unit tests train toy models: one thread is faster than several there, and far faster on a busy
# machine where extra threads wait for each other. (Notebooks set their own threads in their kernels.)
torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)   # the groups must be there when xdist's own hook reads them
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, every test that runs a lesson joins that lesson's group, so the lesson's
    CI-sized run (cached per worker by `run_lesson`) happens once rather than once per worker."""
    for item in items:
        if "run_lesson" not in getattr(item, "fixturenames", ()):
            continue
        m = re.search(r"test_lesson(\d\d)|\[(\d\d)_", item.nodeid)
        if m:
            item.add_marker(pytest.mark.xdist_group(f"lesson{m.group(1) or m.group(2)}"))


@pytest.fixture(autouse=True, scope="session")
def _quiet_home(tmp_path_factory):
    """Jupyter and matplotlib write into $HOME; keep the tests out of the learner's."""
    home = tmp_path_factory.mktemp("home")
    old = {k: os.environ.get(k) for k in ("MPLCONFIGDIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR")}
    os.environ["MPLCONFIGDIR"] = str(home / "mpl")
    os.environ["IPYTHONDIR"] = str(home / "ipython")
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def assert_checks(metrics: dict, total: int, status: str) -> None:
    """The lesson ran all `total` of its exercise checks and each one ended as `status`: "correct" in the
    solutions version, "todo" (not attempted) in the learner's."""
    c = metrics["checks"]
    assert c["total"] == total, c
    assert c[status] == total, c


def stdout(cell) -> str:
    """What a committed code cell printed (its stream outputs), to read the numbers of a default run."""
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def parameter_error(path: Path, tmp_path: Path, **parameters):
    """Run a lesson with `parameters` that must be refused; return papermill's error (its `ename`
    and `evalue` are the exception the lesson raised), failing the test if the lesson ran."""
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as err:
        run_notebook(path, tmp_path / path.name, parameters=parameters)
    return err.value


def _no_setup(seed, device, threads=None):
    """Stands in for mmlib.runtime.setup, which would seed this test process and set its threads."""
    return device, None


def run_parameter_checks(path: Path, **overrides) -> None:
    """A lesson's imports, its parameters cell with `overrides` applied, and the cell that checks them,
    executed in this process (no kernel to start): a bad value must raise before anything trains.

    `setup` is replaced by a stand-in (give `setup=` to replace it otherwise); a kernel is the point only in
    each lesson's one test that papermill's injected parameters reach that cell (`parameter_error`)."""
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    p = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    scope: dict = {}
    for c in code[:p + 1]:
        exec(c.source, scope)       # noqa: S102 - the course's own notebook
    scope.update({"setup": _no_setup, **overrides})
    exec(code[p + 1].source, scope)  # noqa: S102


_runs: dict[str, tuple[dict, nbformat.NotebookNode | None]] = {}


def nbval(notebook: Path, cwd: Path) -> None:
    """Execute `notebook` under nbval (`--nbval-lax`): any cell error fails, and every cell marked
    `# NBVAL_CHECK_OUTPUT` must reproduce its committed output."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
         "--nbval-cell-timeout", str(CELL_TIMEOUT), "--rootdir", str(notebook.parent), str(notebook)],
        cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"nbval failed on {notebook.name}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"


@pytest.fixture(scope="session")
def run_lesson(tmp_path_factory):
    """`run_lesson(path, **overrides) -> (metrics, executed_notebook)`, cached per session.

    Without overrides the lesson runs once at its CI parameters *under nbval*, so the same run proves
    that every cell executes, that the budget-independent outputs match the committed ones, and
    yields the metrics (the executed notebook is then None: nbval does not keep it). With overrides
    (another data file, more steps) papermill runs it and the executed notebook is returned too.
    """
    def run(path: Path, **overrides) -> tuple[dict, nbformat.NotebookNode | None]:
        key = f"{path}:{sorted(overrides.items())}"
        if key not in _runs:
            out = tmp_path_factory.mktemp(nb_id(path))
            params = {**ci_parameters(path), **overrides, "metrics_path": str(out / "metrics.json")}
            target = out / path.name
            if overrides:
                executed = nbformat.read(run_notebook(path, target, parameters=params), as_version=4)
            else:
                nbval(run_notebook(path, target, parameters=params, prepare_only=True), cwd=path.parent)
                executed = None
            metrics = json.loads((out / "metrics.json").read_text())
            _runs[key] = (metrics, executed)
        return _runs[key]

    return run
