"""Regenerate data/surnames.txt, the commonest US surnames of 1990, from the census list shipped by `names`.

    pip install -e ".[data]"
    python data/scripts/make_surnames.py            # writes data/surnames.txt
    python data/scripts/make_surnames.py --check    # exits 1 if data/surnames.txt differs

The package `names` ships the US Census Bureau's 1990 list of frequently occurring surnames
(`dist.all.last`: 88,799 surnames in capitals, each with its share of the people sampled in per cent,
rounded to three decimals, the running total of those shares, and its rank). We keep every surname that
at least 3 in a million of the people sampled held, which makes a list the size of names.txt and
cities.txt, lowercased, in the census's rank order (most common first).

Below 0.0005 % the census prints every share as 0.000; those surnames come in runs of equal share, each
run listed in reverse alphabetical order. A run's share is its rise in the running total divided by its
length. The list stores at most 13 characters, so a 13-character entry may be a longer surname cut short
(`swartzentrube` for Swartzentruber): those are left out rather than kept truncated.
We read the package's data file directly; nothing here needs the package's own API.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from word_file import write_or_check  # data/scripts/word_file.py, beside this script

OUT = Path(__file__).resolve().parent.parent / "surnames.txt"   # data/, beside this scripts/ folder
KEEP = set("abcdefghijklmnopqrstuvwxyz")
MIN_SHARE = 3e-4        # per cent: 3 people in a million
WIDTH = 13              # the census list's field width: longer surnames are cut to it


def data_path() -> Path:
    spec = importlib.util.find_spec("names")
    if spec is None or not spec.submodule_search_locations:
        sys.exit('names is not installed: pip install -e ".[data]"')
    return Path(spec.submodule_search_locations[0]) / "dist.all.last"


def read_rows(path: Path) -> list[tuple[str, float, float]]:
    """(surname, share %, running total %) per line, checked to be in rank order."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="ascii").splitlines(), 1):
        name, share, total, rank = line.split()
        if int(rank) != n:
            sys.exit(f"{path}, line {n}: rank {rank}, expected {n}; the census list's layout has changed")
        rows.append((name, float(share), float(total)))
    return rows


def shares(rows: list[tuple[str, float, float]]) -> list[float]:
    """Each surname's share in per cent: as printed, or, where printed as 0.000, its run's mean share."""
    out: list[float] = []
    i = 0
    while i < len(rows):
        if rows[i][1] > 0:
            out.append(rows[i][1])
            i += 1
            continue
        j = i + 1      # the run of equal shares ends where reverse alphabetical order breaks
        while j < len(rows) and rows[j][1] == 0 and rows[j][0] < rows[j - 1][0]:
            j += 1
        before = rows[i - 1][2] if i else 0.0
        out.extend([(rows[j - 1][2] - before) / (j - i)] * (j - i))
        i = j
    if any(b > a + 1e-9 for a, b in zip(out, out[1:])):
        sys.exit("the census list's shares do not fall with rank; its layout has changed")
    return out


def make_surnames() -> tuple[str, int]:
    """Return the text of surnames.txt and how many surnames the census list holds."""
    rows = read_rows(data_path())
    kept: list[str] = []
    for (name, _, _), share in zip(rows, shares(rows)):
        word = name.lower()
        if share >= MIN_SHARE and len(word) < WIDTH and set(word) <= KEEP:
            kept.append(word)
    if len(set(kept)) != len(kept):
        sys.exit("the census list names a surname twice; its layout has changed")
    return "".join(w + "\n" for w in kept), len(rows)


def main() -> None:
    def make() -> tuple[str, str, str]:
        text, n = make_surnames()
        return text, f"the census list's {n:,} surnames", f"{text.count(chr(10)):,} surnames of {n:,}"

    write_or_check(OUT, make, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
