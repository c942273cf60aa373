"""data/surnames.txt is what data/scripts/make_surnames.py makes, and what data/README.md says it is."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mmlib.data import load_words

ROOT = Path(__file__).resolve().parent.parent
SURNAMES = ROOT / "data" / "surnames.txt"


def _section() -> str:
    readme = (ROOT / "data" / "README.md").read_text(encoding="utf-8")
    return readme[readme.index("# data/surnames.txt"):]


def test_readme_describes_the_shipped_file():
    text = SURNAMES.read_text(encoding="utf-8")
    words = text.split("\n")[:-1]
    section = _section()
    assert hashlib.sha256(text.encode()).hexdigest() in section
    assert f"{len(words):,} surnames" in section
    assert set("".join(words)) == set("abcdefghijklmnopqrstuvwxyz")
    assert len(set(words)) == len(words), "surnames are distinct"
    assert max(map(len, words)) < 13, "13-character entries may be cut short by the census list: left out"
    assert re.search(rf"shortest {min(map(len, words))} characters, the longest {max(map(len, words))} characters",
                     section)
    assert load_words(SURNAMES) == words, "the lessons read the file as it is written"


@pytest.mark.skipif(importlib.util.find_spec("names") is None,
                    reason='the data extra is not installed (pip install -e ".[data]")')
def test_make_surnames_regenerates_the_file_byte_for_byte():
    proc = subprocess.run([sys.executable, str(ROOT / "data" / "scripts" / "make_surnames.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
