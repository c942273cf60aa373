"""Every lesson notebook, learner and solution version: hygiene, freshness, a CI-sized run (the learner's at
the smoke budget), nbval."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest
from conftest import (
    ALL,
    EXERCISE_CHECKS,
    LEARNER,
    SMOKE_SHARE,
    SMOKE_WORDS,
    SOLUTIONS,
    assert_checks,
    ci_parameters,
    nb_id,
    reads_words,
    run_parameter_checks,
    run_parameters,
    smoke_parameters,
)

from mmlib import learner_notebooks
from mmlib.data import NAMES
from mmlib.metrics import validate_metrics

MAX_OUTPUT_BYTES = 100_000
REQUIRED_PARAMETERS = {"data_path", "seed", "device", "metrics_path"}


def test_every_lesson_has_both_versions():
    assert SOLUTIONS, "no solution notebooks found"
    assert [learner_notebooks.learner_name(s) for s in SOLUTIONS] == LEARNER


def test_learner_notebooks_are_up_to_date():
    stale = learner_notebooks.build(check=True)
    assert not stale, (f"{stale} differ from their solutions: run `python -m mmlib.learner_notebooks build` "
                       "and re-execute")


@pytest.mark.parametrize("path", ALL, ids=nb_id)
def test_committed_notebook_hygiene(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"execution counts {counts} are not 1..{len(code)}: restart the kernel, run all, save")
    for i, c in enumerate(code):
        size = len(json.dumps(c.outputs))
        assert size <= MAX_OUTPUT_BYTES, f"code cell {i + 1} has {size // 1000} KB of output"
        for out in c.outputs:
            assert out.output_type != "error", f"code cell {i + 1} ends in an error: {out.get('ename')}"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "a lesson needs exactly one cell tagged `parameters`"
    names = {line.split("=")[0].strip() for line in params[0].source.splitlines()
             if "=" in line and not line.startswith("#")}
    assert REQUIRED_PARAMETERS <= names, f"the parameters cell lacks {REQUIRED_PARAMETERS - names}"
    assert set(ci_parameters(path)) <= names, "metadata.mmlib.ci_parameters names a parameter the cell lacks"


QUICK_TRY = "# Quick try, in minutes on a slow laptop (the small values CI runs): uncomment the "


def quick_try(parameters_cell: str) -> dict:
    """The values of the commented quick-try lines that end a parameters cell."""
    lines = parameters_cell.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(QUICK_TRY)]
    assert len(starts) == 1, f"the parameters cell needs one line starting {QUICK_TRY!r}"
    values = lines[starts[0] + 1:]
    assert values and all(v.startswith("# ") for v in values), "the quick-try values end the cell, commented out"
    n = len(values)
    assert lines[starts[0]].endswith("the line below." if n == 1 else f"the {n} lines below."), lines[starts[0]]
    tree = ast.parse("\n".join(v[2:] for v in values))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body}


@pytest.mark.parametrize("path", ALL, ids=nb_id)
def test_the_quick_try_line_is_what_ci_runs(path):
    """A learner on a slow laptop sees the small budgets CI uses, in the parameters cell, with exactly the
    values of metadata.mmlib.ci_parameters (so the two cannot drift apart)."""
    nb = nbformat.read(path, as_version=4)
    [params] = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert quick_try(params.source) == ci_parameters(path)


def test_a_quick_try_line_that_drifted_is_caught():
    cell = "max_steps = 200_000\n" + QUICK_TRY + "the line below.\n# max_steps = 1_000; seed = 7"
    assert quick_try(cell) == {"max_steps": 1000, "seed": 7} != {"max_steps": 300}
    with pytest.raises(AssertionError, match="one line starting"):
        quick_try("max_steps = 200_000")


@pytest.mark.parametrize("path", LEARNER, ids=nb_id)
def test_the_smoke_budget_cuts_every_training_budget_and_the_lesson_accepts_it(path):
    """The learner version's budget (conftest.smoke_parameters): the CI parameters with each step count cut to
    a twentieth (at least one step), the first SMOKE_WORDS names as the word list where the lesson reads one,
    nothing else changed, and the lesson's own parameter checks pass it."""
    ci, smoke = ci_parameters(path), smoke_parameters(path)
    assert run_parameters(path) == smoke and set(smoke) - set(ci) == ({"data_path"} if reads_words(path) else set())
    if reads_words(path):
        words = Path(smoke["data_path"]).read_text(encoding="utf-8").splitlines()
        assert words == NAMES.read_text(encoding="utf-8").splitlines()[:SMOKE_WORDS]
    steps = [k for k in ci if k.endswith("steps")]
    assert steps, "the CI parameters name no training budget (`..._steps`) to cut"
    for k in ci:
        assert smoke[k] == (max(1, ci[k] // SMOKE_SHARE) if k in steps else ci[k]), k
    run_parameter_checks(path, **smoke)


@pytest.mark.parametrize("path", LEARNER, ids=nb_id)
def test_learner_versions_show_the_solutions_outputs_where_nbval_checks_them(path):
    """The cells marked `# NBVAL_CHECK_OUTPUT` hold the same outputs in the learner version as in the solution,
    whose run nbval checks: with the same code (checked when learner notebooks are generated), the learner's
    then reproduce too, and its own run can take a short word list."""
    def marked(nb_path: Path) -> list:    # a stream's text may come in one output or several, as nbval reads it
        nb = nbformat.read(nb_path, as_version=4)
        return [(c.source, "".join(o.text for o in c.outputs if o.output_type == "stream"),
                 [o.get("data") for o in c.outputs if o.output_type != "stream"])
                for c in nb.cells if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source]
    solution = next(s for s in SOLUTIONS if learner_notebooks.learner_name(s) == path)
    assert marked(path) and marked(path) == marked(solution)


@pytest.mark.parametrize("path", ALL, ids=nb_id)
def test_lesson_runs_under_nbval_at_ci_parameters(path, run_lesson):
    """The CI-sized run of a solution goes through nbval: no cell may fail, and the cells marked
    `# NBVAL_CHECK_OUTPUT` (vocabulary, dataset sizes, counting losses) reproduce the committed output, which
    by design does not depend on the budget. A learner version's run (smoke budget, short word list) goes
    through papermill: no cell may fail."""
    nb = nbformat.read(path, as_version=4)
    marked = [c for c in nb.cells if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source]
    assert marked, "mark the cells whose output does not depend on the training budget with # NBVAL_CHECK_OUTPUT"
    metrics, _ = run_lesson(path)
    assert metrics, "the lesson wrote no metrics"
    assert metrics.get("parameters", {}).get("seed") is not None, "metrics should record the parameters used"


@pytest.mark.parametrize("path", ALL, ids=nb_id)
def test_lesson_metrics_follow_the_one_schema(path, run_lesson):
    """Every lesson, both versions, writes its metrics in mmlib.metrics' schema, under its own number."""
    metrics, _ = run_lesson(path)
    validate_metrics(metrics)
    assert metrics["lesson"] == path.name[:2], f"{path.name} reports itself as lesson {metrics['lesson']}"


@pytest.mark.parametrize("path", [p for p in ALL if p.name[:2] in EXERCISE_CHECKS], ids=nb_id)
def test_every_check_is_correct_in_the_solutions_and_not_attempted_in_the_learners(path, run_lesson):
    """The table of conftest.EXERCISE_CHECKS: at CI parameters the solutions pass all of the lesson's checks,
    and the learner's version, its answers left as TODO, attempts none (each says "not attempted") at the
    smoke budget."""
    status = "correct" if path.parent.name == "solutions" else "todo"
    assert_checks(run_lesson(path)[0], EXERCISE_CHECKS[path.name[:2]], status)


def test_nbval_fails_a_marked_cell_whose_output_changed_and_passes_one_that_reproduces(tmp_path):
    """conftest.nbval, as every lesson run uses it: a `# NBVAL_CHECK_OUTPUT` cell must print what was committed."""
    from conftest import nbval

    def notebook(name: str, committed: str) -> Path:
        cell = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(6 * 7)", execution_count=1,
                                         outputs=[nbformat.v4.new_output("stream", name="stdout", text=committed)])
        nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell("print('free to differ')")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, tmp_path / name)
        return tmp_path / name

    nbval(notebook("same.ipynb", "42\n"), cwd=tmp_path)
    with pytest.raises(AssertionError, match="nbval failed on changed.ipynb"):
        nbval(notebook("changed.ipynb", "41\n"), cwd=tmp_path)
