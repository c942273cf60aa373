"""The install story: one place for pinned versions, and the README, conda and CI agreeing on it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def all_requirements() -> list[str]:
    project = PYPROJECT["project"]
    return project["dependencies"] + [r for reqs in project["optional-dependencies"].values() for r in reqs]


def test_every_dependency_is_pinned_exactly():
    loose = [r for r in all_requirements() if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.]*", r)]
    assert not loose, f"pin these with ==: {loose}"
    assert "torch==2.13.0" in all_requirements(), "the course is tested with torch 2.13.0 (the CPU wheel on disk)"


def test_conda_environment_installs_the_same_pins():
    env = (ROOT / "environment.yml").read_text()
    assert "python=3.11" in env and PYPROJECT["project"]["requires-python"].startswith(">=3.11,<3.12")
    pip_lines = re.findall(r"^\s+- (-e .*)$", env, flags=re.M)
    readme = (ROOT / "README.md").read_text()
    install = re.search(r'pip install (-e "?[^"\n]+"?)', readme).group(1).replace('"', "")
    assert pip_lines == [install], "environment.yml must pip-install exactly what the README installs"
    assert not re.search(r"==", env), "no version is repeated in environment.yml"


def test_ci_runs_the_readme_block():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- ci:begin -->(.*?)<!-- ci:end -->", readme, flags=re.S)
    commands = [line for b in blocks for line in b.splitlines() if re.match(r"(pip|pytest|python|apt-get)( |$)", line)]
    assert commands[0].startswith("pip install") and [c for c in commands if c.startswith("pytest")] == ["pytest"]
    assert "ci:begin" in (ROOT / ".ci" / "run").read_text()


def test_lesson_index_lists_every_lesson():
    readme = (ROOT / "README.md").read_text()
    index = (ROOT / "notebooks" / "README.md").read_text()
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"notebooks/{nb.name}" in readme, f"README.md's lesson table lacks {nb.name}"
        assert f"({nb.name})" in index, f"notebooks/README.md lacks {nb.name}"


def outputs_text(path: Path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    parts = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            parts.append(o.get("text", "") if o.output_type == "stream" else o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_readme_results_are_printed_by_the_committed_lessons():
    """Every loss in README.md's results table appears in its lesson's committed outputs."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Results"):]
    rows = re.findall(r"^\| (\d\d) \|(.*)$", table, flags=re.M)
    assert rows, "README.md has no results table"
    for lesson, rest in rows:
        nb = next((ROOT / "notebooks" / "solutions").glob(f"{lesson}_*_solutions.ipynb"))
        text = outputs_text(nb)
        for number in re.findall(r"\b\d\.\d{4}\b", rest):
            assert number in text, f"README says {number} for lesson {lesson}, but {nb.name} never prints it"
