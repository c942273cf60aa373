"""mmlib.results: the README's results table comes from the committed notebooks' metrics."""

from __future__ import annotations

import nbformat
import pytest

from mmlib import results
from mmlib.metrics import SCHEMA, MetricsError


def metrics(lesson="02", dev=2.1806, **kw):
    return {"schema": SCHEMA, "lesson": lesson, "model": "MLP", "parameters": {"seed": 1},
            "losses": {"train": 2.1346, "dev": dev, "test": None}, "train_seconds": 95.2, "n_parameters": 11897,
            "checks": {"correct": 7, "exact": 0, "wrong": 0, "todo": 0, "total": 7}, **kw}


def write_notebook(path, *outputs):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("save_metrics(...)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"application/json": m, "text/plain": "x"})
                    for m in outputs]
    nb.cells = [nbformat.v4.new_code_cell("print(1)"), cell]
    nbformat.write(nb, path)


def test_collect_reads_the_displayed_metrics_of_each_solution_notebook(tmp_path):
    write_notebook(tmp_path / "02_mlp_solutions.ipynb", metrics())
    write_notebook(tmp_path / "03_bn_solutions.ipynb", {"not": "ours"})   # no metrics in the schema: left out
    got = results.collect(tmp_path)
    assert list(got) == ["02"] and got["02"]["losses"]["dev"] == 2.1806
    table = results.results_table(got)
    assert "| 02 | MLP | 11,897 | 2.1346 | 2.1806 |  | 95 s |" in table


def test_metrics_that_break_the_schema_name_the_notebook(tmp_path):
    bad = metrics()
    del bad["losses"]
    write_notebook(tmp_path / "04_x_solutions.ipynb", bad)
    with pytest.raises(MetricsError, match="04_x_solutions.ipynb: .*missing 'losses'"):
        results.collect(tmp_path)


def test_the_table_goes_between_the_markers_and_nowhere_else():
    readme = f"intro\n{results.BEGIN}\nold table\n{results.END}\nafter\n"
    assert results.readme_with_table(readme, "NEW") == f"intro\n{results.BEGIN}\nNEW\n{results.END}\nafter\n"
    with pytest.raises(ValueError, match="needs the markers"):
        results.readme_with_table("no markers", "NEW")


def test_readme_results_table_is_the_one_the_notebooks_give():
    assert results.main(["--check"]) == 0, "run `python -m mmlib.results --write` after re-running a lesson"
