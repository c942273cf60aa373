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
    install = re.search(r'pip install (-e "?\.\[test[^"\n]*"?)', readme).group(1).replace('"', "")
    assert pip_lines == [install], "environment.yml must pip-install exactly what the README installs"
    assert not re.search(r"==", env), "no version is repeated in environment.yml"


def test_two_commands_open_the_course_and_pass_the_tests():
    """README gives a newcomer `make lab` and `make test`; CI runs exactly the README's test block, and
    both targets make the venv and install the pinned versions first (no separate install step)."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"<!-- ci:begin -->(.*?)<!-- ci:end -->", readme, flags=re.S)
    commands = [line.split("#")[0].strip() for b in blocks for line in b.splitlines()
                if re.match(r"(make|pip|pytest|python|apt-get)( |$)", line)]
    assert commands == ["make test"], commands
    assert "make lab" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "ci:begin" in ci and "activate" not in ci, "CI must run the README block as a newcomer would"
    make = (ROOT / "Makefile").read_text()
    rules = dict(re.findall(r"^(\w+):(.*)$", make, flags=re.M))
    assert "install" in rules["lab"].split() and "install" in rules["test"].split()
    assert re.search(r"^\t\$\(BIN\)/pytest$", make, flags=re.M), "make test runs the whole suite"
    assert 'pip install -e ".[test,data]"' in make and "-m venv" in make


def test_lesson_index_lists_every_lesson():
    readme = (ROOT / "README.md").read_text()
    index = (ROOT / "notebooks" / "README.md").read_text()
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"notebooks/{nb.name}" in readme, f"README.md's lesson table lacks {nb.name}"
        assert f"({nb.name})" in index, f"notebooks/README.md lacks {nb.name}"


def test_a_plain_install_carries_every_subpackage_and_the_word_lists(tmp_path):
    """`pip install .` (not editable) works: the wheel holds mmlib.expected and data/'s word lists as
    mmlib.words (not the scripts that made them), and mmlib imported from the unpacked wheel, away from
    the checkout, reads the names file."""
    import shutil
    import subprocess
    import sys
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("mmlib", "data"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    # The venv's setuptools builds it: no download at test time.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("mmlib-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for must in ("mmlib/models.py", "mmlib/expected/lesson04.py", "mmlib/words/names.txt"):
        assert must in names, f"the wheel lacks {must}"
    scripts = [n for n in names if n.startswith("mmlib/words/") and n.endswith(".py") and not n.endswith("__init__.py")]
    assert not scripts, f"the wheel installs the scripts that made the word lists as modules: {scripts}"
    assert "mmlib/words/cities.txt" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import mmlib.data as d, mmlib.expected.lesson02; "
            "print(d.NAMES.is_relative_to(r'%s'), len(d.load_words()))" % site)
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, r'{site}'); {code}"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "29910"], out.stdout
