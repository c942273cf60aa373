"""Checking hand-written gradients against autograd, one row per variable (used by lesson 04).

Lesson 04 has learners write the backward pass of an MLP by hand, one intermediate at a time.
`check_grads` compares a dict of their gradients with autograd's: one `mmlib.checks.check` row per
variable (named `d<name>`, as in the lesson), shown as a `mmlib.checks.Report` whose summary also
counts the exact matches, e.g. "21/26 correct (15 exact), 3 wrong, 2 not attempted". Exact is a
bonus, not a requirement: whether a correct formula matches autograd to the last bit depends on the
order of floating-point operations, which changes between torch versions.

What this module adds to `mmlib.checks` is the lesson's own knowledge: the tolerances for each
dtype (`TOLERANCES`), and hints from a table of the forward pass (`Step`): a variable's gradient
collects one contribution from every step that *uses* the variable, so the hint names exactly those steps.

The lesson's own probes (exercise 4's `probe_backward`, the references' staleness test) live with its
expected values in `mmlib.expected.lesson04`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mmlib import checks
from mmlib.checks import TODO, Report, check

DTYPES = {"float32": torch.float32, "float64": torch.float64}

TOLERANCES: dict[torch.dtype, dict[str, float]] = {
    # float32 carries about 7 significant digits: two correct formulas that add the same numbers
    # in a different order differ by a few units in the last place, about 1e-7 relative, and the
    # largest differences measured in lesson 04 are ~3e-8 absolute. The gradients there are of
    # order 1e-4..1e-1, so rtol covers them with a wide margin and atol covers the entries that are
    # zero up to round-off (all of db1's are). A wrong formula is off by far more than either.
    torch.float32: {"atol": 1e-6, "rtol": 1e-4},
    # float64 carries about 16 digits (differences measured: ~1e-16): the same margins, tighter.
    torch.float64: {"atol": 1e-14, "rtol": 1e-10},
}


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """`"float32"` or `"float64"` (the lesson's `dtype` parameter) as a `torch.dtype`."""
    if isinstance(name, torch.dtype) and name in TOLERANCES:
        return name
    if isinstance(name, str) and name in DTYPES:
        return DTYPES[name]
    raise ValueError(f"dtype must be 'float32' or 'float64', got {name!r} "
                     "(float64 shrinks every difference between your gradients and autograd's to round-off)")


def tolerances(dtype: str | torch.dtype) -> dict[str, float]:
    """The `atol`/`rtol` the checks use for tensors of `dtype` (see `TOLERANCES` for why)."""
    return dict(TOLERANCES[resolve_dtype(dtype)])


@dataclass(frozen=True)
class Step:
    """One named step of a forward pass: `out` is computed by `code` from the variables `inputs`."""

    number: int
    out: str
    code: str
    inputs: tuple[str, ...]


def hints_from_steps(steps: Sequence[Step]) -> dict[str, str]:
    """For every variable, a hint naming the forward steps its gradient flows back through.

    The gradient of a variable is the sum of one contribution per step that uses it; when a
    check fails, the usual cause is a missing contribution or a wrong local derivative in one of them.
    """
    users: dict[str, list[Step]] = {}
    for s in steps:
        for name in dict.fromkeys(s.inputs):  # a step that uses a variable twice is named once
            users.setdefault(name, []).append(s)
    hints = {}
    for name, used in users.items():
        where = "; ".join(f"step {s.number} `{s.code}`" for s in used)
        if len(used) == 1:
            hints[name] = f"{name} is used once, in {where}: chain d{used[0].out} through that step's local derivative"
        else:
            hints[name] = (f"{name} is used in {len(used)} steps - {where} - so d{name} is the sum of "
                           f"{len(used)} contributions, one from each (did you add them all?)")
    return hints


@dataclass(repr=False)  # keep Report's learner-facing repr
class GradReport(Report):
    """A `Report` that mentions exact matches and keeps `max_abs_diff`: the largest difference over
    the gradients that could be compared (None before any is), the number that shrinks to round-off
    when the lesson runs in float64."""

    mention_exact: bool = True
    max_abs_diff: float | None = None


def check_grads(
    got: Mapping[str, Any],
    want: Mapping[str, torch.Tensor],
    *,
    atol: float,
    rtol: float,
    hints: Mapping[str, str] | None = None,
    title: str = "",
    show: bool = True,
    n: int | None = None,
    batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    loss: torch.Tensor | float | None = None,
    cell: str = "",
    upstream: Mapping[str, Any] | None = None,
    names: Mapping[str, str] | None = None,
) -> GradReport:
    """Compare the learner's gradients `got` (name -> tensor or `TODO`) with autograd's `want`.

    Rows appear in the order of `got`, named `d<name>` as in the lesson. Every answered name in
    `got` must have a reference in `want`. `n` is the batch size (default: the references' own,
    `want.n`): an answer off by a constant factor such as n or n/(n-1) is then named as a missing
    division by n or Bessel's correction. `batch=(Xb, Yb)` and `loss` are the notebook's current
    minibatch and forward-pass loss: when `want.stale(batch, loss)` (e.g. lesson 04's `References`)
    says the references belong to another, a first row says which cells to re-run. `want.causes`
    (name -> (factor, reason) pairs) names the factors that have one cause for a variable
    (`mmlib.checks.factor_cause`). Where `want` has a `diagnose` method (lesson 04's `References`), it tells each
    row what the answer computes: `cell` is the answer cell's source (replayed on other batches), `upstream` the
    learner's gradients of the cells above (name -> tensor), `names` the variable of an answer that is not
    named d<name>. Returns the `GradReport` (its `counts` go into the metrics).
    """
    missing = [k for k, v in got.items() if k not in want and v is not TODO]
    if missing:
        raise KeyError(f"no autograd reference for {missing}; the references cover {sorted(want)}")
    tampered = getattr(want, "tampered", None)
    tampered = tampered() if callable(tampered) else ""     # restores the references before they are compared
    hints = hints or {}
    n = n if n is not None else getattr(want, "n", None)
    causes = getattr(want, "causes", {})
    results = [check(f"d{name}", value, want.get(name), atol=atol, rtol=rtol, hint=hints.get(name, ""), n=n,
                     causes=causes.get(name, ())) for name, value in got.items()]
    # `check` has already converted and compared every answer; where it got as far as comparing
    # values (a verdict other than todo, error or shape), the same conversion gives the difference.
    diffs = [(checks.as_tensor(got[name]) - checks.as_tensor(want[name])).abs().max().item()
             for r, name in zip(results, got) if r.status in ("exact", "close", "wrong") and want[name].numel()]
    diagnose = getattr(want, "diagnose", None)
    if callable(diagnose) and any(r.status in ("wrong", "exact", "close") for r in results):
        results = diagnose(got, results, atol=atol, rtol=rtol, cell=cell, upstream=upstream, names=names)
    stale_of = getattr(want, "stale", None)
    stale = stale_of(batch, loss) if callable(stale_of) and any(v is not TODO for v in got.values()) else ""
    if stale:
        results.insert(0, checks.Result("ref", "error", stale))
    if tampered:
        results.insert(0, checks.Result("ref", "wrong", tampered))
    rep = GradReport(results, title, max_abs_diff=torch.tensor(diffs).max().item() if diffs else None)  # NaN propagates
    if show:
        checks.show(rep)
    return rep
