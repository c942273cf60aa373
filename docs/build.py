"""Build the course website (`make book`): every committed learner notebook, with its saved outputs, as
a page of a static HTML site in build/book/html, the lesson index (notebooks/README.md) as its front page
and the solutions on pages of their own.

    python docs/build.py [--out build/book]

The notebooks are read as committed (nothing is executed), and nothing is downloaded: Sphinx, myst-nb,
the book theme and MathJax come from the `book` extra of pyproject.toml. Each page is made from a copy of
its notebook whose title has the site's one form and whose plumbing is hidden, and links the
notebook itself, published unchanged beside it. The site opens from disk (build/book/html/index.html) or
from any static web server, and needs nothing from the web.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


# "Lesson 02 - A multilayer perceptron": the lesson's number and its name, joined by any kind of dash
TITLE = re.compile(r"^#\s+(Lesson\s+\d+)\s*[-\u2013\u2014]+\s*(.+)$", flags=re.M)
# Plumbing a learner runs but need not read on a page: the parameter checks (folded away, one click opens
# them) and the cell that writes the metrics JSON for CI (its code removed, its one-line result kept).
PLUMBING = {"check_metrics_path(": "hide-input", "save_metrics(": "remove-input"}
# The marks that tell CI's nbval which outputs to compare ("# NBVAL_CHECK_OUTPUT"): lines for the tests only
NBVAL_MARK = re.compile(r"^#\s*NBVAL_\w+[ \t]*\n?", flags=re.M)


def title_of(source: str) -> str | None:
    """A markdown cell's first heading, its dash made the site's one: "Lesson 02 — A multilayer perceptron"."""
    m = re.search(r"^#\s+(.+)$", source, flags=re.M)
    if not m:
        return None
    t = TITLE.match(m.group(0))
    return f"{t.group(1)} \u2014 {t.group(2).strip()}" if t else m.group(1).strip()


def lesson_title(path: Path) -> str:
    """The notebook's first heading ("Lesson 01 — The bigram language model")."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and (title := title_of(cell.source)):
            return title
    return path.stem


def write_page(path: Path, dest: Path, solutions: bool = False) -> None:
    """Copy a notebook as the page's source: its title in the site's one form (marked as the solutions on
    theirs, so that the navigation tells them from the lesson), a link to download the notebook under it,
    and the plumbing hidden (cells, and nbval's marks). main() publishes the notebook itself, unchanged,
    beside its page."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and (title := title_of(cell.source)):
            heading = f"# {title}" + (" (solutions)" if solutions else "")
            link = (f'<p class="notebook-download"><a href="{path.name}" download>Download this notebook</a> '
                    f"(<code>{path.name}</code>; it runs inside the course, beside <code>mmlib</code>)</p>")
            cell.source = re.sub(r"^#\s+.+$", lambda _: f"{heading}\n\n{link}", cell.source, count=1, flags=re.M)
            break
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for call, tag in PLUMBING.items():
            if call in cell.source:
                cell.metadata.setdefault("tags", []).append(tag)
        cell.source = NBVAL_MARK.sub("", cell.source)
    nbformat.write(nb, dest)


def solution_notebooks() -> list[Path]:
    return sorted((NOTEBOOKS / "solutions").glob("[0-9][0-9]_*_solutions.ipynb"))


def prepare(src: Path, notebooks: Path = NOTEBOOKS) -> list[Path]:
    """Lay out the site's sources in `src`: the index, the lessons (from `notebooks`), the solutions and the
    images they link."""
    if src.exists():
        shutil.rmtree(src)
    (src / "solutions").mkdir(parents=True)
    lessons = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    solutions = solution_notebooks()
    if not lessons:
        sys.exit(f"no lesson notebooks in {notebooks}")
    for p in lessons:
        write_page(p, src / p.name)
    for p in solutions:
        write_page(p, src / "solutions" / p.name, solutions=True)
    # the notebooks link ../images/NAME.png (../../images from solutions/): the same layout here
    shutil.copytree(ROOT / "images", src.parent / "images", dirs_exist_ok=True)
    index = (NOTEBOOKS / "README.md").read_text(encoding="utf-8")
    index = index.replace("](solutions/)", "](solutions/index.md)")
    index += "\n```{toctree}\n:hidden:\n:caption: Lessons\n\n" + "\n".join(p.stem for p in lessons) + "\n```\n"
    index += "\n```{toctree}\n:hidden:\n:caption: Solutions\n\nsolutions/index\n```\n"
    (src / "index.md").write_text(index, encoding="utf-8")
    rows = "\n".join(f"- [{lesson_title(p)}]({p.name})" for p in solutions)   # titles as the lessons have them
    (src / "solutions" / "index.md").write_text(
        "# Solutions\n\nThe same lessons with worked answers. Try each exercise first, then compare.\n\n"
        f"{rows}\n\n```{{toctree}}\n:hidden:\n\n" + "\n".join(p.stem for p in solutions) + "\n```\n",
        encoding="utf-8")
    return lessons


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python docs/build.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "book",
                    help="where the site goes (default: build/book)")
    ap.add_argument("--notebooks", type=Path, default=NOTEBOOKS,
                    help="the learner notebooks to publish (default: notebooks/, as committed; another folder: "
                    "for example freshly executed ones, to look at before committing them)")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    published = prepare(args.out / "src", args.notebooks)
    html = args.out / "html"
    # -W would stop on the notebooks' links into the repository (README.md, mmlib/): they are warnings
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-c", str(ROOT / "docs"), str(args.out / "src"),
           str(html)]
    r = subprocess.run(cmd)
    if r.returncode:
        return r.returncode
    # each page's "Download this notebook": the notebook as committed, beside its page
    for p in published:
        shutil.copy(p, html / p.name)
    for p in solution_notebooks():
        shutil.copy(p, html / "solutions" / p.name)
    size = sum(p.stat().st_size for p in html.rglob("*") if p.is_file())
    print(f"built the course website in {time.perf_counter() - start:.0f} s: {html / 'index.html'} "
          f"({size / 1e6:.1f} MB); open it in a browser, or serve it: python3 -m http.server -d {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
