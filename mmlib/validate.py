"""The one place where parameters are checked (every lesson, the configs, the command line).

A lesson's parameters cell, a model's or a training run's config and a command-line flag all
end up here, so a nonsense value gets the same clear message wherever it was typed: which
parameter, what it got, and what it needs. Each function returns the value it checked, so a
config can write `self.steps = positive_int("steps", steps)`.

Messages name the parameter as the learner wrote it (`max_steps`, not `steps`), which is why
every function takes the name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

MAX_LR = 10.0
"""Plain SGD on the course's models diverges at once above this; 0 or less does not learn."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def positive_int(name: str, v: Any) -> int:
    """A whole number >= 1 (steps, sizes, counts)."""
    if not _is_int(v) or v < 1:
        raise ValueError(f"{name} must be a positive whole number, got {v!r}")
    return v


def non_negative_int(name: str, v: Any) -> int:
    """A whole number >= 0 (a step index, a warm-up length that may be 0)."""
    if not _is_int(v) or v < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {v!r}")
    return v


def at_least(name: str, v: Any, low: int, why: str) -> int:
    """A whole number >= `low`; `why` says what needs it (e.g. BatchNorm needs a batch of 2)."""
    if not _is_int(v) or v < low:
        raise ValueError(f"{name} must be a whole number >= {low} ({why}), got {v!r}")
    return v


def at_most(name: str, v: Any, high: int, why: str) -> int:
    """A whole number <= `high`; `why` says where the limit comes from (e.g. the longest word for block_size)."""
    if not _is_int(v) or v > high:
        raise ValueError(f"{name} must be a whole number <= {high:,} ({why}), got {v!r}")
    return v


def power_of_two(name: str, v: Any, why: str) -> int:
    """A whole number 2, 4, 8, 16, ...; `why` says what needs it (lesson 05: each level halves the block)."""
    if not _is_int(v) or v < 2 or v & (v - 1):
        raise ValueError(f"{name} must be a power of two (2, 4, 8, 16, ...) because {why}, got {v!r}")
    return v


def learning_rate(name: str, v: Any) -> float:
    """A learning rate in (0, MAX_LR]."""
    if not _is_number(v) or not 0 < v <= MAX_LR:
        raise ValueError(f"{name} must be a learning rate in (0, {MAX_LR:g}], got {v!r}")
    return float(v)


def number(name: str, v: Any, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False) -> float:
    """A finite number, optionally within [low, high] (an end is excluded when `*_open`)."""
    ok = _is_number(v) and math.isfinite(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        lower = None if low is None else f"{'>' if low_open else '>='} {low:g}"
        upper = None if high is None else f"{'<' if high_open else '<='} {high:g}"
        if lower and upper:
            bounds = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        else:
            bounds = lower or upper or ""
        raise ValueError(f"{name} must be a finite number{' ' + bounds if bounds else ''}, got {v!r}")
    return float(v)


MAX_SEED = 2**63 - 1
"""The largest seed. PyTorch's generators take seeds up to 2**64 - 1 (beyond: "Overflow when unpacking long
long"); half of that leaves room for the seeds derived from one (seed + 1 for samples, seed + rank under
torchrun)."""


def seed(name: str, v: Any) -> int:
    """A seed: a whole number from 0 to `MAX_SEED` (None is refused: a run without a seed cannot be repeated)."""
    if not _is_int(v):
        raise ValueError(f"{name} must be a whole number (runs are repeatable only with a fixed seed), got {v!r}")
    if not 0 <= v <= MAX_SEED:
        raise ValueError(f"{name} must be a whole number from 0 to 2**63 - 1 = {MAX_SEED:,} (within what PyTorch's "
                         f"random generators accept), got {v!r}")
    return v


def choice(name: str, v: Any, options: Iterable[Any]) -> Any:
    """One of `options`."""
    options = tuple(options)
    if v not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(str, options))}; got {v!r}")
    return v


def boolean(name: str, v: Any) -> bool:
    """True or False (not 0/1, not a string)."""
    if not isinstance(v, bool):
        raise ValueError(f"{name} must be True or False, got {v!r}")
    return v


def optional(check, name: str, v: Any, *args, **kwargs) -> Any:
    """`check(name, v, ...)` unless `v` is None."""
    return None if v is None else check(name, v, *args, **kwargs)


def positive_ints(**values: Any) -> None:
    """`positive_int` for each keyword, e.g. `positive_ints(explore_steps=explore_steps, n_hidden=n_hidden)`."""
    for name, v in values.items():
        positive_int(name, v)
