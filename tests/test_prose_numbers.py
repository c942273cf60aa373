"""Every measured number a lesson's prose quotes is one its committed outputs print.

A lesson's markdown says what the run above it found ("dev 2.1078 against 2.1188"). When the code or a
default changes and the lesson is run again, the outputs change and such a sentence silently goes stale.
This test reads each committed notebook, both versions (a learner notebook is a run of its own), and
fails for every measured number in its markdown that none of its own outputs prints.

What counts as measured, in markdown outside inline code, math and link targets:
- a decimal with at least 3 decimals (losses, ratios: 2.1168, 0.089);
- a count with thousands separators (29,910; 171,806);
- a number followed by a unit of time (746 s, 12 min): a time differs from run to run, and the two
  versions of a lesson are separate runs, so prose that quotes one must point at the cell printing it
  instead (the test then fails in the version whose run took another time).
Not checked: percentages, numbers with fewer decimals (settings such as lr 0.1, rounded figures such as
2.10) and figures in words ("about a fifth", "ten minutes").

A prose number is printed when some number in the notebook's outputs (stream text, rendered tables)
equals it once rounded to the prose's decimals, separators ignored: "0.002" stands for a printed 0.0023,
"171,806" for a printed 171806. A number written in the notebook's code is a setting, not a measurement
("0.001" for a momentum the code sets), and passes too. What is left is a reference: a figure quoted
from a lecture or a paper, or arithmetic on the settings. Those are listed below, per lesson, each with
its reason; a measured number never goes there.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import nbformat
import pytest
from conftest import ALL, nb_id

# A number in text: digits with optional thousands separators and decimals (no sign: "0.0068 below"
# stands for a printed -0.0068).
NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?![\w])")
TIME_UNIT = re.compile(r"\s?(?:s|ms|sec|seconds?|min|minutes?|h|hours?)\b")
# Not prose: inline code, math, link and image targets, HTML comments (the solution markers).
NOT_PROSE = re.compile(r"`[^`]*`|\$\$.*?\$\$|\$[^$\n]*\$|\]\([^)]*\)|<!--.*?-->", re.S)

# Reference figures, by lesson: {number as written: why it is not a measurement of this notebook}.
REFERENCES: dict[str, dict[str, str]] = {
    "02": {
        "0.001": "10 ** -3, where the learning-rate sweep starts: the cell sets its exponents, linspace(-3, 0)",
    },
    "03": {
        "32,033": "the number of names in the lecture's own names.txt, not ours",
    },
    "04": {
        "32,033": "the number of names in the lecture's own names.txt, not ours",
    },
    "05": {
        "2.029": "the lecture's dev loss before its BatchNorm fix (lecture 5)",
        "2.022": "the lecture's dev loss after its BatchNorm fix (lecture 5)",
        "1.769": "the lecture's final train loss for this network (lecture 5)",
        "1.993": "the lecture's final dev loss for this network (lecture 5)",
        "0.002": "how close our printed train loss 1.7705 is to the lecture's 1.769 (above): a comparison",
    },
    "06": {
        "0.036": "1/sqrt(768) for GPT-2's width: arithmetic, quoted to compare with our 64-wide layers",
        "4,096": "Mistral 7B's sliding attention window, from its paper",
    },
}


def as_decimal(whole: str, decimals: str | None) -> tuple[Decimal, int]:
    places = len(decimals or "")
    return Decimal(whole.replace(",", "") + (f".{decimals}" if decimals else "")), places


def prose(cell_source: str) -> str:
    return NOT_PROSE.sub(" ", cell_source)


def measured_numbers(text: str) -> list[tuple[str, Decimal, int]]:
    """The numbers of `text` that count as measured: (as written, value, decimals)."""
    found = []
    for m in NUMBER.finditer(text):
        value, places = as_decimal(m.group(1), m.group(2))
        is_count = "," in m.group(1)
        is_time = TIME_UNIT.match(text, m.end()) is not None
        if places >= 3 or is_count or is_time:
            found.append((m.group(0), value, places))
    return found


def output_text(nb: nbformat.NotebookNode) -> str:
    """Everything the code cells of `nb` print or display as text."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(out["text"])
            data = out.get("data", {})
            for kind in ("text/plain", "text/markdown", "text/html"):
                if kind in data:
                    parts.append(data[kind])
    return "\n".join(parts)


def numbers_in(text: str) -> list[tuple[Decimal, int]]:
    return [as_decimal(m.group(1), m.group(2)) for m in NUMBER.finditer(text)]


def printed(value: Decimal, places: int, shown: list[tuple[Decimal, int]]) -> bool:
    """Whether a shown number, rounded to `places` decimals, is `value`."""
    step = Decimal(1).scaleb(-places)
    return any(p >= places and v.quantize(step) == value for v, p in shown)


def unprinted_numbers(nb: nbformat.NotebookNode, lesson: str) -> list[str]:
    """Each measured prose number of `nb` that its outputs do not print, with its cell and context."""
    shown = numbers_in(output_text(nb))
    in_code = numbers_in(" ".join(c.source.replace("_", "") for c in nb.cells if c.cell_type == "code"))
    references = REFERENCES.get(lesson, {})
    missing = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        text = prose(cell.source)
        for written, value, places in measured_numbers(text):
            if written in references or printed(value, places, shown) or (value, places) in in_code:
                continue
            at = text.find(written)
            context = " ".join(text[max(0, at - 60): at + len(written) + 20].split())
            missing.append(f"cell {i}: {written} (...{context}...)")
    return missing


@pytest.mark.parametrize("path", ALL, ids=nb_id)
def test_every_measured_number_in_the_prose_is_printed_by_the_lesson(path: Path):
    nb = nbformat.read(path, as_version=4)
    missing = unprinted_numbers(nb, path.name[:2])
    assert not missing, (f"{path.name}: the prose quotes numbers no output of this notebook prints (write what the "
                         "committed run printed, or point at the cell that prints it):\n  " + "\n  ".join(missing))


def test_every_reference_is_still_quoted():
    """An entry of REFERENCES that no lesson's prose holds any more is dead: remove it."""
    for lesson, refs in REFERENCES.items():
        text = " ".join(prose(c.source) for p in ALL if p.name.startswith(lesson)
                        for c in nbformat.read(p, as_version=4).cells if c.cell_type == "markdown")
        written = {w for w, _, _ in measured_numbers(text)}
        assert set(refs) <= written, f"lesson {lesson}: REFERENCES lists {set(refs) - written}, no longer in its prose"


# ---- the test of the test ------------------------------------------------------------------------------

def _notebook(prose_text: str, printed_text: str, code: str = "x = 1") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(code)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed_text)]
    nb.cells = [cell, nbformat.v4.new_markdown_cell(prose_text)]
    return nb


@pytest.mark.parametrize("prose_text, printed_text, missing", [
    ("dev 2.1168 with the bug", "train 2.0879  dev 2.1188", ["2.1168"]),               # lesson 05's old slip
    ("dev 2.1188 with the bug", "train 2.0879  dev 2.1188", []),
    ("0.0068 below the lecture's", "AdamW: dev -0.0068 against", []),                   # the sign is the prose's
    ("about 0.002 of the gradient", "kept 0.0023 of it", []),                         # rounded to the prose
    ("about 0.003 of the gradient", "kept 0.0023 of it", ["0.003"]),
    ("its 171,806 windows", "train: X (171806, 8)", []),                              # separators ignored
    ("its 171,807 windows", "train: X (171806, 8)", ["171,807"]),
    ("the run took 746 s", "(200,000 steps in 638 s)", ["746"]),                      # a time of another run
    ("the run took 12 min", "(200,000 steps in 746 s)", ["12"]),
    ("`x = 2.5678` and $1.2345$ and [paper](https://arxiv.org/abs/1609.03499)", "", []),
    ("lr 0.1, 200 units, 3 levels", "", []),                                          # settings, too few decimals
])
def test_a_planted_wrong_number_fails(prose_text, printed_text, missing):
    found = unprinted_numbers(_notebook(prose_text, printed_text), "99")
    assert [f.split(": ")[1].split(" ")[0] for f in found] == missing, found


def test_a_number_the_code_sets_is_a_setting():
    assert unprinted_numbers(_notebook("momentum 0.001 keeps it", "", code="momentum = 0.001"), "99") == []
    assert unprinted_numbers(_notebook("for 1,500 steps", "", code="deep_steps = 1_500"), "99") == []


def test_a_planted_wrong_number_in_a_committed_lesson_fails():
    """The committed lesson 05 passes; the same notebook with one quoted loss off by 0.0001 does not."""
    path = next(p for p in ALL if p.name.startswith("05_") and "solutions" in p.parts)
    nb = nbformat.read(path, as_version=4)
    assert unprinted_numbers(nb, "05") == []
    cell = next(c for c in nb.cells if c.cell_type == "markdown" and "2.0255" in c.source)
    cell.source = cell.source.replace("2.0255", "2.0256", 1)
    assert [m.split(" ")[2] for m in unprinted_numbers(nb, "05")] == ["2.0256"]
