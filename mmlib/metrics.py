"""A lesson's headline numbers, in one schema for every lesson, written as JSON (lesson 01 onwards).

Every lesson ends with one results cell that calls `save_metrics(metrics_path, {...})` with at least

    lesson         "02"
    model          a one-line description of the main model ("MLP, context 3, 200 tanh units")
    parameters     the parameters cell's values
    losses         {"train": ..., "dev": ..., "test": ...} of the main run (None where not measured)
    train_seconds  wall time of the main run's training (None where nothing was trained)
    n_parameters   parameters of the main model (None for a counting model)
    checks         `mmlib.checks.tally(...)` of the lesson's exercise checks

and any lesson-specific numbers besides. `validate_metrics` checks that shape (a test runs it on
every lesson), the results cell shows the metrics in the notebook, and `mmlib.results` builds the
README's results table from the committed notebooks' metrics, so no number there is typed by hand.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA = "mmlib.metrics/1"
SPLITS = ("train", "dev", "test")
CHECK_KEYS = ("correct", "exact", "wrong", "todo", "total")
REQUIRED = ("lesson", "model", "parameters", "losses", "train_seconds", "n_parameters", "checks")


class MetricsError(ValueError):
    """Metrics that do not follow the schema, or a metrics path that would overwrite something else."""


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars become plain Python numbers so json can write them."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _finite(v: Any) -> Any:
    """NaN and infinity become None (JSON null), so a reader sees a diverged run for what it is."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def _number_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def validate_metrics(m: Any) -> dict[str, Any]:
    """Raise `MetricsError` naming every field that does not follow the schema; return `m`."""
    if not isinstance(m, dict):
        raise MetricsError(f"metrics must be a dict, got {type(m).__name__}")
    problems = [f"missing {k!r}" for k in REQUIRED if k not in m]
    if m.get("schema", SCHEMA) != SCHEMA:
        problems.append(f"schema is {m.get('schema')!r}, expected {SCHEMA!r}")
    if "lesson" in m and not (isinstance(m["lesson"], str) and len(m["lesson"]) == 2 and m["lesson"].isdigit()):
        problems.append(f"lesson must be a two-digit string such as '02', got {m['lesson']!r}")
    if "model" in m and not isinstance(m["model"], str):
        problems.append(f"model must be a one-line description, got {m['model']!r}")
    if "parameters" in m and not isinstance(m["parameters"], dict):
        problems.append("parameters must be a dict of the parameters cell's values")
    losses = m.get("losses")
    if "losses" in m:
        if not isinstance(losses, dict) or set(losses) != set(SPLITS):
            problems.append(f"losses must have exactly the keys {list(SPLITS)}, got {losses!r}")
        elif not all(_number_or_none(v) for v in losses.values()):
            problems.append(f"losses must be numbers or None, got {losses!r}")
    for k in ("train_seconds",):
        if k in m and not _number_or_none(m[k]):
            problems.append(f"{k} must be a number of seconds or None, got {m[k]!r}")
    if "n_parameters" in m and not (m["n_parameters"] is None or
                                    (isinstance(m["n_parameters"], int) and not isinstance(m["n_parameters"], bool))):
        problems.append(f"n_parameters must be a whole number or None, got {m['n_parameters']!r}")
    checks = m.get("checks")
    if "checks" in m and not (isinstance(checks, dict) and set(checks) == set(CHECK_KEYS)):
        problems.append(f"checks must be mmlib.checks.tally(...) (keys {list(CHECK_KEYS)}), got {checks!r}")
    if problems:
        raise MetricsError("metrics do not follow the schema: " + "; ".join(problems))
    return m


def is_metrics_file(path: str | os.PathLike) -> bool:
    """True when `path` holds metrics this course wrote (JSON with our schema tag)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("schema") == SCHEMA
    except (OSError, ValueError, AttributeError):
        return False


def check_metrics_path(path: str | os.PathLike | None) -> Path | None:
    """Refuse, before a lesson runs, a `metrics_path` that would overwrite something or cannot be written.

    Accepted: None (write nothing), a new `.json` file in a folder that exists or can be made, or a
    metrics file an earlier run of a lesson wrote. Refused: a folder, any other existing file (a
    notebook, the course's data), a name not ending in .json, a place that cannot be written. What the
    file holds now is noted: `save_metrics` never overwrites another lesson's metrics, nor a file another
    run wrote meanwhile (two lessons run at once on one path), but writes beside it and says so.
    """
    p = _writable(path)
    if p is not None:
        _seen[p.resolve()] = _fingerprint(p)
    return p


def _writable(path: str | os.PathLike | None) -> Path | None:
    """check_metrics_path's checks, without noting what the file holds."""
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise MetricsError(f"metrics_path must be None or a file name ending in .json, got {path!r}")
    p = Path(path)
    if p.is_dir():
        raise MetricsError(f"metrics_path {p} is a folder; name a file in it, e.g. {p / 'metrics.json'}")
    if p.suffix != ".json":
        raise MetricsError(f"metrics_path must end in .json (it is written as JSON), got {p}")
    if p.exists() and not is_metrics_file(p):
        raise MetricsError(f"metrics_path {p} exists and is not a metrics file of this course; "
                           "refusing to overwrite it: choose a new file name")
    folder = next((d for d in [p.parent, *p.parent.parents] if d.exists()), None)
    if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise MetricsError(f"metrics_path {p} cannot be written: {folder} is not a folder you can write to")
    return p


_seen: dict[Path, str | None] = {}
"""What each metrics file held when this process checked it (`check_metrics_path`, at a lesson's start) or
last wrote it: a file that changed since was written by another run, and is not overwritten."""


def _fingerprint(p: Path) -> str | None:
    try:
        return hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError:
        return None


def _lesson_in(p: Path) -> str | None:
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("lesson")
    except (OSError, ValueError, AttributeError):
        return None


def _own_file(p: Path, lesson: str) -> tuple[Path, str | None]:
    """Where a lesson's metrics go: `p`, unless `p` holds another lesson's metrics or another run wrote it
    after this one checked it; then a file of the lesson's own beside it, and the one line that says so."""
    held = _lesson_in(p) if p.exists() else None
    changed = p.resolve() in _seen and _fingerprint(p) != _seen[p.resolve()]
    if held is None or (held == lesson and not changed):
        return p, None
    own = p.with_name(f"{p.stem}_{lesson}{p.suffix}")
    why = "another run wrote it while this one ran" if changed else "from an earlier run"
    return own, (f"metrics_path {p} holds lesson {held}'s metrics ({why}), so lesson {lesson}'s were written to "
                 f"{own} instead: give each lesson a metrics file of its own")


PLAIN = (type(None), bool, int, float, str)
"""The types a parameters cell's values have: what papermill can inject and JSON can write."""


def lesson_parameters(namespace: Mapping[str, Any], first: str = "data_path",
                      end: str = "metrics_path") -> dict[str, Any]:
    """The parameters cell's values, for the metrics' "parameters": every plain value of `namespace`
    from the name `first` up to (not including) `end`, in the order they were defined.

    A lesson calls it as `parameters = lesson_parameters(globals())` in the cell after its parameters
    cell, so no parameter name is typed twice. Every parameters cell starts with `data_path` and ends
    with `metrics_path` (CONTRIBUTING.md); `metrics_path` is left out: it says where the numbers go,
    not how they were made. Values papermill injected are the ones returned, as they are the ones used.
    """
    names = list(namespace)
    for name in (first, end):
        if name not in namespace:
            raise MetricsError(f"lesson_parameters needs the parameters cell's {name!r} in the namespace it is "
                               "given: run the parameters cell first, and pass globals()")
    start, stop = names.index(first), names.index(end)
    if stop < start:
        raise MetricsError(f"{end!r} was defined before {first!r}: the parameters cell must start with "
                           f"{first} and end with {end}")
    return {k: namespace[k] for k in names[start:stop] if not k.startswith("_") and isinstance(namespace[k], PLAIN)}


def save_metrics(path: str | os.PathLike | None, metrics: dict[str, Any], *, show: bool = True) -> dict[str, Any]:
    """Check `metrics` against the schema, write it to `path` as JSON (nothing when None), show it.

    Where `path` holds another lesson's metrics, or another run wrote it after this lesson's
    `check_metrics_path`, the metrics go to `<name>_<lesson>.json` beside it instead, and one
    printed line says so: nothing another run wrote is lost.

    Returns the metrics as plain Python values, with the schema tag added. A NaN or infinite
    number is written as null. In a notebook the metrics are also displayed (as JSON, with a
    short text line), so the committed notebook carries them for `mmlib.results`.
    """
    plain = _finite(_plain({"schema": SCHEMA, **metrics}))
    validate_metrics(plain)
    if path is not None:
        p, moved = _own_file(_writable(path), plain["lesson"])
        if moved:
            _writable(p)
            print(moved)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(plain, indent=2) + "\n", encoding="utf-8")
        _seen[p.resolve()] = _fingerprint(p)
    if show:
        _display(plain)
    return plain


def summary(m: dict[str, Any]) -> str:
    """One line: the lesson's losses, parameters, training time and checks."""
    losses = "  ".join(f"{k} {v:.4f}" for k, v in m["losses"].items() if v is not None) or "no losses"
    n = "" if m["n_parameters"] is None else f", {m['n_parameters']:,} parameters"
    t = "" if m["train_seconds"] is None else f", trained in {m['train_seconds']:.0f} s"
    c = m["checks"]
    return f"lesson {m['lesson']} ({m['model']}{n}{t}): {losses}; checks {c['correct']}/{c['total']} correct"


def _display(plain: dict[str, Any]) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is None:
        return
    display({"application/json": plain, "text/plain": summary(plain)}, raw=True)
