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


def test_a_lesson_without_any_loss_reads_n_a_in_the_table_and_stays_off_the_plot(tmp_path):
    """Lesson 00 trains no language model: its losses are all None. The table says so, the others keep theirs,
    and the dev-loss plot leaves it out rather than failing."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    no_loss = metrics("00", model="MLP on two moons", losses={"train": None, "dev": None, "test": None})
    write_notebook(tmp_path / "00_micrograd_solutions.ipynb", no_loss)
    write_notebook(tmp_path / "02_mlp_solutions.ipynb", metrics())
    got = results.collect(tmp_path)
    table = results.results_table(got)
    assert "| 00 | MLP on two moons | 11,897 | n/a | n/a | n/a | 95 s |" in table
    assert "| 02 | MLP | 11,897 | 2.1346 | 2.1806 |  | 95 s |" in table
    ax = results.plot_results(got)
    assert [t.get_text() for t in ax.texts] == ["02"]
    plt.close(ax.figure)


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



def toy_lesson(folder, lesson="07"):
    """A lesson notebook in miniature: a parameters cell, CI parameters in its metadata, a results cell."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("steps = 1000\nmetrics_path = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "from mmlib.metrics import save_metrics\n"
        f"save_metrics(metrics_path, {{'lesson': '{lesson}', 'model': 'toy', 'parameters': {{'steps': steps}}, "
        "'losses': {'train': 1.5, 'dev': 1000 / steps, 'test': None}, 'train_seconds': steps / 100, "
        "'n_parameters': 3, 'checks': {'correct': 1, 'exact': 0, 'wrong': 0, 'todo': 0, 'total': 1}})")]
    nb.metadata["mmlib"] = {"ci_parameters": {"steps": 10}}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{lesson}_toy_solutions.ipynb"
    nbformat.write(nb, path)
    return path


def test_run_mode_executes_lessons_with_papermill_and_collects_their_metrics(tmp_path):
    folder = tmp_path / "solutions"
    folder.mkdir()
    committed = toy_lesson(folder).read_bytes()
    readme = results.README.read_bytes()
    out = tmp_path / "out"
    assert results.main(["--run", "--ci", "--folder", str(folder), "--out", str(out)]) == 0
    got = results.collect(out)["07"]
    assert got["parameters"] == {"steps": 10} and got["losses"]["dev"] == 100.0, "the CI parameters were used"
    assert "| 07 | toy | 3 | 1.5000 | 100.0000 |  | 0 s |" in (out / "results.md").read_text(encoding="utf-8")
    assert (out / "results.png").stat().st_size > 1000
    assert (folder / "07_toy_solutions.ipynb").read_bytes() == committed, "--ci never writes the notebooks"
    assert results.README.read_bytes() == readme, "--ci never writes README.md"
    with pytest.raises(ValueError, match="no solution notebook for lesson 99 in .*; the lessons are 07"):
        results.run_lessons(["99"], ci=True, out=out, folder=folder)


def _a_lesson_with_metrics():
    ready = results.collect()
    if not ready:
        pytest.skip("no committed solution notebook displays metrics in the schema yet")
    return min(ready)


def test_run_mode_on_a_real_lesson_at_ci_parameters(tmp_path):
    lesson = _a_lesson_with_metrics()
    solution = next(results.SOLUTIONS.glob(f"{lesson}_*.ipynb"))
    readme, committed = results.README.read_bytes(), solution.read_bytes()
    assert results.main(["--run", lesson, "--ci", "--out", str(tmp_path)]) == 0
    ci = results.collect(tmp_path)[lesson]
    assert ci["parameters"] != results.notebook_metrics(solution)["parameters"], "the run used the CI parameters"
    assert f"| {lesson} | {ci['model']} |" in (tmp_path / "results.md").read_text(encoding="utf-8")
    assert results.README.read_bytes() == readme and solution.read_bytes() == committed, "--ci writes only --out"


def test_lesson_parameters_are_the_parameters_cell_in_order_without_metrics_path():
    from mmlib.metrics import lesson_parameters

    namespace = {"torch": pytest, "t_start": 1.5, "data_path": None, "seed": 42, "_hidden": 1, "device": "cpu",
                 "config": {"not": "plain"}, "lr": 0.1, "metrics_path": None, "later": 3}
    got = lesson_parameters(namespace)
    assert got == {"data_path": None, "seed": 42, "device": "cpu", "lr": 0.1}
    assert list(got) == ["data_path", "seed", "device", "lr"]
    with pytest.raises(MetricsError, match="needs the parameters cell's 'metrics_path' in the namespace it is given"):
        lesson_parameters({"data_path": None})
    with pytest.raises(MetricsError, match="'metrics_path' was defined before 'data_path'"):
        lesson_parameters({"metrics_path": None, "data_path": None})
