"""mmlib.learner_notebooks: solution regions become placeholders, and a broken marker is caught."""

from __future__ import annotations

import nbformat
import pytest

from mmlib import learner_notebooks
from mmlib.learner_notebooks import CODE_BEGIN, CODE_END, MD_BEGIN, MD_END, MarkerError, make_learner, strip_solutions


def test_strip_keeps_the_indent_and_the_lines_around():
    src = f"x = TODO\nif True:\n    {CODE_BEGIN}\n    x = 1\n    {CODE_END}\nprint(x)"
    assert strip_solutions(src, CODE_BEGIN, CODE_END, "# YOUR CODE HERE") == \
        "x = TODO\nif True:\n    # YOUR CODE HERE\nprint(x)"


@pytest.mark.parametrize("src, message", [
    (f"{CODE_BEGIN}\nx", "never closed"),
    (f"x\n{CODE_END}", "without"),
    (f"{CODE_BEGIN}\n{CODE_BEGIN}\n{CODE_END}", "inside another"),
])
def test_unpaired_markers_are_errors(src, message):
    with pytest.raises(MarkerError, match=message):
        strip_solutions(src, CODE_BEGIN, CODE_END, "")


def test_make_learner_blanks_code_and_markdown_and_swaps_the_banner(tmp_path):
    nb = nbformat.v4.new_notebook()
    banner = nbformat.v4.new_markdown_cell("solutions!")
    banner.metadata["tags"] = ["solutions-banner"]
    code = nbformat.v4.new_code_cell(f"a = TODO\n{CODE_BEGIN}\na = 42\n{CODE_END}")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="42")]
    code.execution_count = 3
    md = nbformat.v4.new_markdown_cell(f"Why?\n{MD_BEGIN}\nBecause.\n{MD_END}")
    nb.cells = [banner, code, md]
    sol = learner_notebooks.SOLUTIONS / "99_demo_solutions.ipynb"
    out = make_learner(nb, sol)
    assert "learner-banner" in out.cells[0].metadata["tags"]
    assert "solutions/99_demo_solutions.ipynb" in out.cells[0].source
    assert out.cells[1].source == "a = TODO\n# YOUR CODE HERE"
    assert out.cells[1].outputs == [] and out.cells[1].execution_count is None
    assert out.cells[2].source == "Why?\n*Your answer here.*"
    assert "42" in nb.cells[1].source, "the solution notebook itself is left alone"
    assert learner_notebooks.learner_name(sol).name == "99_demo.ipynb"


def test_no_solution_text_reaches_a_learner_notebook():
    for sol in sorted(learner_notebooks.SOLUTIONS.glob("*_solutions.ipynb")):
        learner = nbformat.read(learner_notebooks.learner_name(sol), as_version=4)
        for cell in learner.cells:
            assert "BEGIN SOLUTION" not in cell.source and "END SOLUTION" not in cell.source
            assert "solutions-banner" not in cell.metadata.get("tags", [])


def test_image_links_are_rewritten_for_the_learner_depth():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("![C](../../images/mlp_architecture.png)")]
    out = make_learner(nb, learner_notebooks.SOLUTIONS / "99_demo_solutions.ipynb")
    assert out.cells[0].source == "![C](../images/mlp_architecture.png)"


def _toy(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_execute_runs_in_place_quietly_and_commits_no_runner_metadata(tmp_path):
    path = _toy(tmp_path / "toy.ipynb", "import os\nprint(os.environ.get('MMLIB_QUIET'))", "x = 2\nx * 21")
    learner_notebooks.execute([path])
    nb = nbformat.read(path, as_version=4)
    assert [c.execution_count for c in nb.cells] == [1, 2]
    assert nb.cells[0].outputs[0]["text"] == "1\n", "progress bars are off in a committed run"
    assert nb.cells[1].outputs[0]["data"]["text/plain"] == "42"
    assert "papermill" not in nb.metadata and not any({"papermill", "execution"} & set(c.metadata) for c in nb.cells)


def test_every_run_has_a_cell_timeout_and_a_failed_run_leaves_the_notebook_as_it_was(tmp_path):
    import papermill as pm

    from mmlib.notebooks import run_notebook

    path = _toy(tmp_path / "slow.ipynb", "import time\ntime.sleep(30)")
    before = path.read_bytes()
    with pytest.raises((pm.PapermillExecutionError, TimeoutError, RuntimeError)):
        learner_notebooks.execute([path], timeout=2)
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="timeout must be a whole number of seconds >= 1"):
        run_notebook(path, tmp_path / "out.ipynb", timeout=0)


def test_build_keeps_the_outputs_when_only_prose_or_comments_changed(tmp_path, monkeypatch):
    """A rebuild after a markdown or comment edit keeps the committed run (its code is the same); a rebuild
    after any change to code that runs clears the outputs, which must then be made again."""
    monkeypatch.setattr(learner_notebooks, "NOTEBOOKS", tmp_path)
    monkeypatch.setattr(learner_notebooks, "SOLUTIONS", tmp_path / "solutions")
    (tmp_path / "solutions").mkdir()
    sol = tmp_path / "solutions" / "99_demo_solutions.ipynb"

    def write_solution(prose, code):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell(prose), nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, sol)

    write_solution("The loss is 2.1.", "x = 1\nprint(x)")
    assert learner_notebooks.build() == ["99_demo.ipynb"]
    learner = tmp_path / "99_demo.ipynb"
    nb = nbformat.read(learner, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.cells[1].execution_count = 1
    nbformat.write(nb, learner)                      # as `execute` leaves it

    write_solution("The loss is 2.2.", "# quick try: x = 0\nx = 1  # one\nprint(x)")
    assert learner_notebooks.build() == ["99_demo.ipynb"]
    nb = nbformat.read(learner, as_version=4)
    assert nb.cells[0].source == "The loss is 2.2." and nb.cells[1].source.startswith("# quick try")
    assert nb.cells[1].outputs[0]["text"] == "1\n" and nb.cells[1].execution_count == 1
    assert learner_notebooks.build(check=True) == []

    write_solution("The loss is 2.2.", "x = 2\nprint(x)")
    assert learner_notebooks.build() == ["99_demo.ipynb"]
    nb = nbformat.read(learner, as_version=4)
    assert nb.cells[1].outputs == [] and nb.cells[1].execution_count is None, "new code: the old run is gone"
