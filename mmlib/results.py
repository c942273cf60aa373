"""Every lesson's headline results, read from the committed notebooks, never typed (course tooling).

Each lesson's results cell calls `mmlib.metrics.save_metrics`, which shows the metrics in the
notebook as an `application/json` output. The committed solution notebooks are real runs at the
default parameters, so their metrics are the course's results. This module reads them back:

    collect()                 {"01": metrics, "02": ..., ...} from notebooks/solutions/
    course_results(current)   the same for lesson 06's comparison, with a line for each lesson lacking metrics
    results_table(collected)  the README's markdown table
    plot_results(collected)   dev loss against training time, one point per lesson (lesson 06)

    python -m mmlib.results           print the table
    python -m mmlib.results --write   put it into README.md between the results markers
    python -m mmlib.results --check   exit 1 if README.md's table differs (a test runs this)
    python -m mmlib.results --run     run every lesson at its defaults (papermill; the table gives each main
                                      run's time), put the executed notebooks back as the committed
                                      outputs, write the table into README.md and plot dev loss against
                                      training time
    python -m mmlib.results --run 02 --ci --out DIR   one lesson at its CI parameters, into DIR only
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

import nbformat

from mmlib.metrics import SCHEMA, MetricsError, validate_metrics
from mmlib.notebooks import CELL_TIMEOUT, DEFAULT_CELL_TIMEOUT, as_committed, run_notebook

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "notebooks" / "solutions"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def notebook_metrics(path: str | Path) -> dict[str, Any] | None:
    """The metrics a notebook's results cell displayed (the last, if several), or None if it has none."""
    nb = nbformat.read(Path(path), as_version=4)
    found = None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {}).get("application/json")
            if isinstance(data, dict) and data.get("schema") == SCHEMA:
                found = dict(data)
    return found


def collect(folder: str | Path = SOLUTIONS) -> dict[str, dict[str, Any]]:
    """Lesson number -> metrics, for every solution notebook in `folder` that displays them.

    A notebook without metrics in the schema (not yet re-run since the schema came in) is left
    out; one whose metrics break the schema raises `MetricsError` naming the notebook.
    """
    out = {}
    for path in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")):
        m = notebook_metrics(path)
        if m is None:
            continue
        try:
            validate_metrics(m)
        except MetricsError as e:
            raise MetricsError(f"{path.name}: {e}") from None
        out[m["lesson"]] = m
    return out


def course_results(current: dict[str, Any] | None = None,
                   lessons: tuple[str, ...] = ("01", "02", "03", "04", "05", "06"),
                   folder: str | Path = SOLUTIONS) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Every lesson's metrics for the course-wide comparison (lesson 06), and a line for each that lacks them.

    Like `collect`, but a notebook that is missing, has no metrics in the schema yet, or breaks the
    schema gives a line saying so instead of stopping the comparison. `current` (the metrics of the
    run in progress) takes the place of its lesson's committed ones.
    """
    found: dict[str, dict[str, Any]] = {}
    notes = []
    for lesson in lessons:
        if current is not None and current.get("lesson") == lesson:
            found[lesson] = current
            continue
        paths = sorted(Path(folder).glob(f"{lesson}_*.ipynb"))
        if not paths:
            notes.append(f"lesson {lesson}: no solution notebook in {Path(folder).name}/")
            continue
        m = notebook_metrics(paths[0])
        if m is None:
            notes.append(f"lesson {lesson}: {paths[0].name} shows no metrics in the schema yet "
                         "(re-run it to add its row)")
            continue
        try:
            found[lesson] = validate_metrics(m)
        except MetricsError as e:
            notes.append(f"lesson {lesson}: {paths[0].name}: {e}")
    return found, notes


def _loss(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


def _seconds(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v:.0f} s" if v < 120 else f"{v / 60:.1f} min"


def results_table(collected: dict[str, dict[str, Any]]) -> str:
    """A markdown table: lesson, model, parameters, train/dev/test loss, training time.

    A loss that was not measured is an empty cell; a lesson with no loss at all trains no language model
    (lesson 00's network separates points), and its three loss cells say "n/a" rather than look unmeasured.
    """
    lines = ["| lesson | model | parameters | train | dev | test | training time |",
             "|---|---|---|---|---|---|---|"]
    for lesson, m in sorted(collected.items()):
        n = "" if m["n_parameters"] is None else f"{m['n_parameters']:,}"
        losses = m["losses"]
        cells = ([_loss(losses[k]) for k in ("train", "dev", "test")] if any(v is not None for v in losses.values())
                 else ["n/a"] * 3)
        lines.append(f"| {lesson} | {m['model']} | {n} | {' | '.join(cells)} | {_seconds(m['train_seconds'])} |")
    return "\n".join(lines)


def plot_results(collected: dict[str, dict[str, Any]], ax=None):
    """Dev loss against training time (log scale), one point per lesson that has both.

    Each point is labelled with its lesson number, placed where it covers no other label; the legend
    beside the plot names each lesson's model (its name up to the first colon: the full description
    is in the results table).
    """
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(8, 3.5), layout="constrained")[1]
    placed = []
    # a marker shape each as well as a colour: compact PNG palettes may merge two colours
    markers = iter("osD^vP*Xh<>p" * 4)
    for lesson, m in sorted(collected.items()):
        dev, t = m["losses"]["dev"], m["train_seconds"]
        if dev is None or not t:
            continue
        name = textwrap.fill(f"{lesson} {m['model'].split(':')[0]}", 30, subsequent_indent="   ")
        ax.scatter([t], [dev], label=name, marker=next(markers), zorder=3)
        placed.append(ax.annotate(lesson, (t, dev), fontsize=8, xytext=(5, 3), textcoords="offset points"))
    ax.set_xscale("log")
    ax.set_xlabel("training time (s, log scale)")
    ax.set_ylabel("dev loss")
    ax.set_title("every lesson's main model on the same dev split")
    if placed:
        from matplotlib.ticker import NullFormatter

        from mmlib.plots import spread_labels

        ax.margins(x=0.15, y=0.15)          # room for the labels inside the axes
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
        # a few round times, in seconds: a log axis's own minor labels ("3x10^2") run into each other
        lo, hi = ax.get_xlim()
        ticks = _spaced_ticks(ax, [v for v in (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
                                   if lo <= v <= hi])
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        spread_labels(placed, [(5, 3), (5, -11), (-16, 3), (-16, -11), (5, 12), (5, -20)])
    return ax


def _spaced_ticks(ax, ticks: list[float]) -> list[float]:
    """The ticks whose labels do not run into the one kept before them, at the axes' laid-out width (a lesson
    run for a second beside one of an hour spans a wide log axis: 1200 and 1800 then sit a few pixels apart)."""
    from matplotlib import rcParams
    from matplotlib.font_manager import FontProperties

    ax.figure.draw_without_rendering()          # the layout (legend beside the axes) sets their width
    char_px = 0.6 * FontProperties(size=rcParams["xtick.labelsize"]).get_size_in_points() * ax.figure.dpi / 72
    x = {v: ax.transData.transform((v, 0))[0] for v in ticks}
    kept: list[float] = []
    for v in ticks:
        if not kept or x[v] - x[kept[-1]] >= (len(f"{v:g}") + len(f"{kept[-1]:g}")) / 2 * char_px + 6:
            kept.append(v)
    return kept


def readme_with_table(readme: str, table: str, markers: tuple[str, str] = (BEGIN, END)) -> str:
    """`readme` with the text between `markers` (default: the results markers) replaced by `table`."""
    begin, end = markers
    if begin not in readme or end not in readme:
        raise ValueError(f"README.md needs the markers {begin} and {end} around the table")
    head, rest = readme.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{table}\n{end}{tail}"


def update_readme(table: str, *, check: bool, stale: str, markers: tuple[str, str] = (BEGIN, END)) -> int:
    """Put `table` between `markers` in README.md, or (`check`) only compare: exit status 1, with `stale` on
    stderr, when README.md holds something else there; 0 otherwise."""
    readme = README.read_text(encoding="utf-8")
    new = readme_with_table(readme, table, markers)
    if check:
        if new != readme:
            print(stale, file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


def run_lessons(lessons: list[str] | None = None, *, ci: bool = False, out: str | Path,
                folder: str | Path = SOLUTIONS) -> dict[str, dict[str, Any]]:
    """Execute solution notebooks into `out` (`mmlib.notebooks.run_notebook`); return their metrics, as `collect` does.

    `lessons`: two-digit numbers (None: every lesson). At the defaults (`ci=False`) nothing is
    injected, so each executed notebook is the committed outputs of a real run; with `ci=True` each
    runs at the small parameters in its metadata (`mmlib.ci_parameters`), for a quick check. Progress
    bars are off, as in `mmlib.learner_notebooks execute`, and every cell has a time limit. The notebooks in
    `folder` are not touched here; a notebook that fails raises papermill's error, naming the cell.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if lessons:
        unknown = sorted(set(lessons) - {p.name[:2] for p in paths})
        if unknown:
            raise ValueError(f"no solution notebook for lesson {', '.join(unknown)} in {folder}; "
                             f"the lessons are {', '.join(p.name[:2] for p in paths)}")
        paths = [p for p in paths if p.name[:2] in lessons]
    for p in paths:
        params = None
        if ci:
            meta = nbformat.read(p, as_version=4).metadata.get("mmlib", {})
            params = {**meta.get("ci_parameters", {}), "metrics_path": str(out / f"{p.name[:2]}_metrics.json")}
        print(f"running {p.name} at its {'CI' if ci else 'default'} parameters", flush=True)
        run_notebook(p, out / p.name, parameters=params, quiet=True,
                     timeout=CELL_TIMEOUT if ci else DEFAULT_CELL_TIMEOUT)
    return collect(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmlib.results",
                                 description="The results table, from the committed solution notebooks' metrics.")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write the table into README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 if README.md's table is out of date")
    mode.add_argument("--run", nargs="*", metavar="NN", default=None,
                      help="run these lessons (none named: all) with papermill at their defaults, make the executed "
                      "notebooks the committed ones, write README.md's table and plot dev loss against time")
    ap.add_argument("--ci", action="store_true", help="with --run: the lessons' small CI parameters; then only "
                    "--out is written (never the notebooks or README.md)")
    ap.add_argument("--folder", type=Path, default=SOLUTIONS, help=argparse.SUPPRESS)   # tests: other notebooks
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "results",
                    help="with --run: where the executed notebooks, results.md and results.png go "
                         "(default: build/results)")
    args = ap.parse_args(argv)
    if args.ci and args.run is None:
        ap.error("--ci goes with --run")
    if args.run is not None:
        return _run(args)
    table = results_table(collect())
    if not (args.write or args.check):
        print(table)
        return 0
    status = update_readme(table, check=args.check, stale="README.md's results table differs from the notebooks' "
                           "metrics: run `python -m mmlib.results --write`")
    if not args.check:
        print(f"wrote the results of {table.count(chr(10)) - 1} lessons into {README.name}")
    return status


def _run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    collected = run_lessons(args.run or None, ci=args.ci, out=args.out, folder=args.folder)
    table = results_table(collected)
    (args.out / "results.md").write_text(table + "\n", encoding="utf-8")
    ax = plot_results(collected)
    ax.figure.savefig(args.out / "results.png", dpi=120, bbox_inches="tight")
    plt.close(ax.figure)
    print(table)
    print(f"wrote {args.out / 'results.md'} and {args.out / 'results.png'}")
    if args.ci:
        return 0
    for executed in sorted(args.out.glob("[0-9][0-9]_*.ipynb")):
        if executed.name[:2] in collected:
            nbformat.write(as_committed(executed), args.folder / executed.name)
            print(f"updated {args.folder / executed.name}")
    README.write_text(readme_with_table(README.read_text(encoding="utf-8"), results_table(collect())), encoding="utf-8")
    print(f"wrote the results table into {README.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
