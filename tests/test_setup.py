"""A newcomer's set-up (README "Start"): the Makefile repairs a .venv it cannot use, refuses a Python the
course does not support in one clear line, installs only what each command needs, and takes a port.

Each test runs the real Makefile in a temporary folder, so the checkout's .venv is never touched. A
stand-in `.venv/bin/python` (a shell script answering as another Python would) plays the broken venv:
no second Python version needs to be installed for the test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MAKE, "--no-print-directory", *args], cwd=folder, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def checkout(tmp_path) -> Path:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    return tmp_path


def fake_venv(folder: Path, version: str | None) -> None:
    """A .venv whose python reports `version` (None: runs nothing at all) and has no usable pip."""
    bin_ = folder / ".venv" / "bin"
    bin_.mkdir(parents=True)
    script = "#!/bin/sh\nexit 1\n" if version is None else (
        f'#!/bin/sh\ncase "$*" in *"import sys, pip"*) exit 1;; *print*) echo {version};; esac\n')
    (bin_ / "python").write_text(script)
    (bin_ / "python").chmod(0o755)


def this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.mark.skipif(this_python() != "3.11", reason="the course's Python makes the new venv")
@pytest.mark.parametrize("made_by, says", [
    ("3.12", "was made by Python 3.12, not 3.11"),
    ("3.11", "is unfinished"),
    (None, "a Python that no longer runs"),
])
def test_an_unusable_venv_is_named_and_made_again(checkout, made_by, says):
    fake_venv(checkout, made_by)
    r = make(checkout, "venv", f"PYTHON={sys.executable}")
    assert r.returncode == 0, r.stderr
    assert says in r.stdout and "removing it and making it again" in r.stdout, r.stdout
    out = subprocess.run([checkout / ".venv" / "bin" / "python", "-c", "import sys, pip; print(sys.version_info[:2])"],
                         capture_output=True, text=True)
    assert out.stdout.strip() == "(3, 11)", out
    again = make(checkout, "venv", f"PYTHON={sys.executable}")   # a good venv is left alone, silently
    assert again.returncode == 0 and again.stdout == "", again.stdout


def test_another_python_is_refused_in_one_line_that_says_what_to_do(checkout, tmp_path):
    other = tmp_path / "python3.12"
    other.write_text("#!/bin/sh\nexit 1\n")   # answers no version check
    other.chmod(0o755)
    for python, why in ((other, f"{other} is another version"), ("", "no python3.11 is on the PATH")):
        r = make(checkout, "lab", f"PYTHON={python}")
        assert r.returncode != 0
        first = r.stderr.splitlines()[0]
        assert first.startswith("error: the course needs Python 3.11") and why in first, r.stderr
        assert "make lab PYTHON=/path/to/python3.11" in first
        assert not (checkout / ".venv").exists()


def dry_run(target: str, *args: str) -> str:
    """What `make -n target` would run in the checkout, with its install stamps treated as fresh."""
    r = subprocess.run([MAKE, "-n", "--no-print-directory", "-o", ".venv/.installed-lab", target, *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_lab_installs_the_course_alone_and_test_adds_the_extras():
    make_text = (ROOT / "Makefile").read_text()
    lab_install = re.search(r"^\$\(LAB_STAMP\):.*\n((?:\t.*\n)+)", make_text, flags=re.M).group(1)
    test_install = re.search(r"^\$\(TEST_STAMP\):.*\n((?:\t.*\n)+)", make_text, flags=re.M).group(1)
    assert "pip install -e . " in lab_install and "[" not in lab_install.split("pip install")[1].split("\n")[0]
    assert 'pip install -e ".[test,data]"' in test_install
    assert "install-test" not in re.search(r"^lab:(.*)$", make_text, flags=re.M).group(1)
    assert "install-test" in re.search(r"^test:(.*)$", make_text, flags=re.M).group(1)


def test_lab_takes_a_port():
    assert "--port=8899" in dry_run("lab", "PORT=8899")
    assert "--port=8888" in dry_run("lab")


def install_lines(folder: Path, *args: str) -> list[str]:
    """The pip commands `make -n` would run to install the course, its tests and the website, from scratch."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, folder / name)
    (folder / ".jupyter").mkdir()
    shutil.copy(ROOT / ".jupyter" / "overrides.json", folder / ".jupyter" / "overrides.json")
    r = subprocess.run([MAKE, "-n", "--no-print-directory", ".venv/.installed-lab", ".venv/.installed-test",
                        ".venv/.installed-book", *args], cwd=folder, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if "pip install" in line]


def test_torch_index_adds_pytorchs_cpu_index_to_every_install_and_the_default_adds_nothing(tmp_path):
    (tmp_path / "default").mkdir()
    (tmp_path / "cpu").mkdir()
    default = install_lines(tmp_path / "default")
    assert default == [f".venv/bin/python -m pip install -e {what} --quiet --disable-pip-version-check"
                       for what in (".", '".[test,data]"', '".[book]"')], default
    cpu = "https://download.pytorch.org/whl/cpu"
    with_cpu = install_lines(tmp_path / "cpu", f"TORCH_INDEX={cpu}")
    assert with_cpu == [f"{line} --extra-index-url {cpu}" for line in default], with_cpu
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"make lab TORCH_INDEX={cpu}" in readme, "README.md must say how to take the CPU-only build"
