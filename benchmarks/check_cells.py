"""How long does each exercise check cell take at CI size? (issue 27: under 2 s each.)

    python benchmarks/check_cells.py [--lessons 00 01 02 03 04 05 06] [--json OUT.json]

Runs each solution notebook with papermill at its CI parameters (`metadata.mmlib.ci_parameters`), as CI does,
and reads every cell's duration from the output notebook (papermill records one per cell). A check cell is
one that reports on an exercise: it calls `report(`, `probe.check(`, a `check_...` function (but
`check_metrics_path`, a parameter check) or a probe or check of `mmlib.expected`. A cell that also trains
(exercise 4 of lessons 05-06 trains the learner's model in its check cell) is counted whole, so its figure is an
upper bound of the check's own. The committed figures are benchmarks/checks_heldout/check_cells.json.
Prints each check cell's seconds and the load average before and after: on a busy machine the figures are
upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmlib.notebooks import run_notebook  # noqa: E402

CHECK = re.compile(r"\breport\(|\bcheck_(?!metrics_path)\w+\(|\bexpected\.(probe|check|beat)\w*\(|\bprobe\.check\(")
LIMIT = 2.0


def check_cells(nb: dict) -> list[tuple[int, str, float]]:
    """(cell index, first line, seconds) for every check cell of an executed notebook."""
    out = []
    for i, cell in enumerate(nb["cells"]):
        src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code" and CHECK.search(src):
            seconds = cell.get("metadata", {}).get("papermill", {}).get("duration")
            if seconds is not None:
                out.append((i, src.strip().splitlines()[0][:70], float(seconds)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lessons", nargs="+", default=["00", "01", "02", "03", "04", "05", "06"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    start = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for lesson in args.lessons:
            [path] = sorted((ROOT / "notebooks" / "solutions").glob(f"{lesson}_*_solutions.ipynb"))
            params = json.loads(path.read_text())["metadata"]["mmlib"]["ci_parameters"]
            out = run_notebook(path, Path(tmp) / path.name, parameters=params, quiet=True)
            cells = check_cells(json.loads(Path(out).read_text()))
            results[lesson] = cells
            for i, first, s in cells:
                print(f"{lesson} cell {i:3d} {s:6.2f} s {'OVER ' if s > LIMIT else ''}{first}", flush=True)
    end = os.getloadavg()
    worst = max((s for cells in results.values() for _, _, s in cells), default=0.0)
    print(f"slowest check cell {worst:.2f} s (limit {LIMIT} s); load average {start} -> {end}")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_start": start, "load_end": end, "cells": results}, indent=1))


if __name__ == "__main__":
    main()
