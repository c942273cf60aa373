"""Builds the learners' notebooks from the solution notebooks (course tooling).

The solution notebooks in `notebooks/solutions/` are the one source of truth. Inside them, each
answer sits between marker lines, in code cells

    ### BEGIN SOLUTION
    ...
    ### END SOLUTION

and in markdown cells between `<!-- BEGIN SOLUTION -->` and `<!-- END SOLUTION -->` (HTML
comments, so the solution notebook renders cleanly). The learner's notebook in `notebooks/` is the
same notebook with every such region replaced by a placeholder, cells tagged `solutions-banner`
dropped and a banner pointing at the solutions put in their place. Figures from `images/` are
linked as `../../images/NAME.png` in a solution notebook; the learner's copy, one folder higher,
gets `../images/NAME.png`.

    python -m mmlib.learner_notebooks build [NN ...]   # regenerate notebooks/NN_*.ipynb (outputs cleared,
                                                       # kept where only prose or comments changed)
    python -m mmlib.learner_notebooks build --check    # exit 1 if any learner notebook is out of date
    python -m mmlib.learner_notebooks execute FILE...  # run notebooks in place at their default parameters

A test runs `build --check`, so a solution edited without rebuilding fails CI. A rebuild that changes
only markdown and comments keeps the learner notebook's committed outputs: no code that ran changed, so
they are still a real run of it. Any other change clears them, to be made again with `execute`.
"""

from __future__ import annotations

import argparse
import copy
import io
import sys
import tempfile
import tokenize
from pathlib import Path

import nbformat

from mmlib.notebooks import DEFAULT_CELL_TIMEOUT, as_committed, run_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"
SUFFIX = "_solutions"

CODE_BEGIN, CODE_END = "### BEGIN SOLUTION", "### END SOLUTION"
MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
CODE_PLACEHOLDER = "# YOUR CODE HERE"
MD_PLACEHOLDER = "*Your answer here.*"


class MarkerError(ValueError):
    """A solution region whose markers do not pair up."""


def strip_solutions(source: str, begin: str, end: str, placeholder: str) -> str:
    """Replace every `begin`..`end` region of `source` with `placeholder` at the marker's indent."""
    out: list[str] = []
    inside = False
    for n, line in enumerate(source.split("\n"), 1):
        marker = line.strip()
        if marker == begin:
            if inside:
                raise MarkerError(f"line {n}: {begin!r} inside another solution region")
            inside = True
            out.append(line[: len(line) - len(line.lstrip())] + placeholder)
        elif marker == end:
            if not inside:
                raise MarkerError(f"line {n}: {end!r} without a {begin!r} before it")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{begin!r} is never closed by {end!r}")
    return "\n".join(out)


def learner_name(solution: Path) -> Path:
    return NOTEBOOKS / (solution.stem.removesuffix(SUFFIX) + ".ipynb")


def banner(solution: Path) -> nbformat.NotebookNode:
    rel = solution.relative_to(NOTEBOOKS).as_posix()
    cell = nbformat.v4.new_markdown_cell(
        "> **This is your copy, with blanks to fill in.** Each exercise cell starts with its answers set "
        "to `TODO` and a `# YOUR CODE HERE` line; the check cell below it tells you which answers are "
        f"right. Worked answers are in [`{rel}`]({rel}) - try first, then compare."
    )
    cell.metadata["tags"] = ["learner-banner"]
    return cell


def make_learner(nb: nbformat.NotebookNode, solution: Path) -> nbformat.NotebookNode:
    """The learner's version of a solution notebook, outputs cleared."""
    out = copy.deepcopy(nb)
    cells = []
    for i, cell in enumerate(out.cells):
        tags = cell.metadata.get("tags", [])
        if "solutions-banner" in tags:
            cells.append(banner(solution))
            continue
        try:
            if cell.cell_type == "code":
                cell.source = strip_solutions(cell.source, CODE_BEGIN, CODE_END, CODE_PLACEHOLDER)
                cell.outputs, cell.execution_count = [], None
            elif cell.cell_type == "markdown":
                cell.source = strip_solutions(cell.source, MD_BEGIN, MD_END, MD_PLACEHOLDER)
                # The learner's copy sits one folder higher than the solutions.
                cell.source = cell.source.replace("](../../images/", "](../images/")
        except MarkerError as e:
            raise MarkerError(f"{solution.name}, cell {i}: {e}") from None
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        cells.append(cell)
    out.cells = cells
    out.metadata.pop("papermill", None)
    return out


def sources(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def code_of(source: str) -> list[tuple[int, str]]:
    """The tokens of a code cell that run: its source without comments and blank lines."""
    try:
        tokens = tokenize.generate_tokens(io.StringIO(source).readline)
        return [(t.type, "" if t.type == tokenize.NEWLINE else t.string)   # "" at the end of the source
                for t in tokens if t.type not in (tokenize.COMMENT, tokenize.NL)]
    except (tokenize.TokenError, SyntaxError):   # not Python (a magic, unfinished code): compare it all
        return [(-1, source)]


def same_code(a: nbformat.NotebookNode, b: nbformat.NotebookNode) -> bool:
    """Whether `a` and `b` run the same code: the same cells, whose code differs at most in comments."""
    return [c.cell_type for c in a.cells] == [c.cell_type for c in b.cells] and all(
        x.cell_type != "code" or code_of(x.source) == code_of(y.source) for x, y in zip(a.cells, b.cells))


def with_sources(committed: nbformat.NotebookNode, new: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """`committed` with the sources, cell metadata and course metadata of `new`, outputs kept."""
    out = copy.deepcopy(committed)
    for cell, fresh in zip(out.cells, new.cells):
        cell.source, cell.metadata = fresh.source, fresh.metadata
    if "mmlib" in new.metadata:
        out.metadata["mmlib"] = new.metadata["mmlib"]
    return out


def build(check: bool = False, only: list[str] | None = None) -> list[str]:
    """Write (or, with `check`, compare) the learner notebooks; returns the stale ones.

    A learner notebook whose code is unchanged but for comments keeps its outputs (`same_code`).

    `only` limits the work to lessons whose file name starts with one of its entries (e.g. "02").
    """
    stale = []
    for sol in sorted(SOLUTIONS.glob(f"*{SUFFIX}.ipynb")):
        if only and not any(sol.name.startswith(o) for o in only):
            continue
        learner = make_learner(nbformat.read(sol, as_version=4), sol)
        target = learner_name(sol)
        current = nbformat.read(target, as_version=4) if target.exists() else None
        if current is not None and sources(current) == sources(learner):
            continue
        stale.append(target.name)
        if not check:
            if current is not None and same_code(current, learner):
                learner = with_sources(current, learner)   # prose or comments only: the outputs stand
            nbformat.write(learner, target)
    return stale


def execute(paths: list[Path], timeout: int = DEFAULT_CELL_TIMEOUT) -> None:
    """Run notebooks top to bottom in place at their default parameters (execution counts 1..N).

    Each runs into a temporary file first (`mmlib.notebooks.run_notebook`, every cell limited to
    `timeout` seconds), so a failing run leaves the notebook as it was. No progress bars: a tqdm widget
    would be saved as a dead widget.
    """
    for p in paths:
        with tempfile.TemporaryDirectory() as tmp:
            executed = run_notebook(p, Path(tmp) / p.name, timeout=timeout, quiet=True)
            nbformat.write(as_committed(executed), p)
        print(f"executed {p}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m mmlib.learner_notebooks",
                                 description="Build learner notebooks from solutions.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="regenerate notebooks/NN_*.ipynb from notebooks/solutions/")
    b.add_argument("--check", action="store_true", help="only report; exit 1 if any is out of date")
    b.add_argument("only", nargs="*", help="lesson numbers or name prefixes (default: all), e.g. 02")
    e = sub.add_parser("execute", help="run notebooks in place at their default parameters")
    e.add_argument("paths", nargs="+", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        stale = build(check=args.check, only=args.only)
        verb = "out of date" if args.check else "rebuilt"
        print(f"{verb}: {', '.join(stale)}" if stale else "learner notebooks are up to date")
        if args.check and stale:
            print("run `python -m mmlib.learner_notebooks build`, then execute the rebuilt notebooks", file=sys.stderr)
            sys.exit(1)
    else:
        execute(args.paths)


if __name__ == "__main__":
    main()
