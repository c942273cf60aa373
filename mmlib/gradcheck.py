"""Checking hand-written gradients against autograd, one row per variable (lesson 04).

Lesson 04 has learners write the backward pass of an MLP by hand, one intermediate at a time.
`check_grads` compares a dict of their gradients with autograd's: one `mmlib.checks.check` row per
variable (named `d<name>`, as in the lesson), shown as a `mmlib.checks.Report` whose summary also
counts the exact matches, e.g. "21/26 correct (15 exact), 3 wrong, 2 not attempted". Exact is a
bonus, not a requirement: whether a correct formula matches autograd to the last bit depends on the
order of floating-point operations, which changes between torch versions.

What this module adds to `mmlib.checks` is the lesson's own knowledge: the tolerances for each
dtype (`TOLERANCES`), and hints from a table of the forward pass (`Step`): a variable's gradient
collects one contribution from every step that *uses* the variable, so the hint names exactly those steps.

`probe_backward` is exercise 4's guard: before a learner's `backward` trains a network, it runs once
on a batch of another size and its answer is inspected, so a missing or misshapen gradient, an
exception, or a `backward` that quietly uses the notebook's 32-example batch is explained in one
sentence instead of surfacing deep inside training.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
) -> GradReport:
    """Compare the learner's gradients `got` (name -> tensor or `TODO`) with autograd's `want`.

    Rows appear in the order of `got`, named `d<name>` as in the lesson. Every answered name in
    `got` must have a reference in `want`. Returns the `GradReport` (its `counts` go into the metrics).
    """
    missing = [k for k, v in got.items() if k not in want and v is not TODO]
    if missing:
        raise KeyError(f"no autograd reference for {missing}; the references cover {sorted(want)}")
    hints = hints or {}
    results = [check(f"d{name}", value, want.get(name), atol=atol, rtol=rtol, hint=hints.get(name, ""))
               for name, value in got.items()]
    # `check` has already converted and compared every answer; where it got as far as comparing
    # values (a verdict other than todo, error or shape), the same conversion gives the difference.
    diffs = [(checks.as_tensor(got[name]) - checks.as_tensor(want[name])).abs().max().item()
             for r, name in zip(results, got) if r.status in ("exact", "close", "wrong") and want[name].numel()]
    rep = GradReport(results, title, max_abs_diff=torch.tensor(diffs).max().item() if diffs else None)  # NaN propagates
    if show:
        checks.show(rep)
    return rep


@dataclass
class Probe:
    """What `probe_backward` found: `backward`'s answer on the probe batch and whether it can train.

    `got` is what `backward` returned (`TODO` when it was not run), `want` autograd's gradients on
    the same batch, `problem` the reason training cannot start ("" when it can), `unanswered` the
    earlier answers still `TODO`.
    """

    got: Any
    want: Mapping[str, torch.Tensor]
    names: tuple[str, ...]
    batch: int
    problem: str = ""
    unanswered: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return not self.problem

    def message(self) -> str:
        if self.problem:
            return f"{self.problem} The cells below skip training."
        return f"backward returns a gradient of the right shape for each of {', '.join(self.names)}: ready to train."

    def check(self, steps_got: Sequence[Mapping[str, torch.Tensor]] = (),
              steps_want: Sequence[Mapping[str, torch.Tensor]] = (), *, atol: float, rtol: float,
              hints: Mapping[str, str] | None = None, title: str = "Exercise 4", show: bool = True) -> GradReport:
        """One row per parameter. When `backward` could train, the probe and the training steps'
        gradients are stacked (index 0 of a "where" is the probe, 1.. the steps); otherwise the rows
        compare what there is on the probe batch, so a learner sees which gradient is missing or misshapen."""
        if self.ready:
            got = {k: torch.stack([self.got[k], *(s[k] for s in steps_got)]) for k in self.names}
            want = {k: torch.stack([self.want[k], *(s[k] for s in steps_want)]) for k in self.names}
            where = f"the probe batch and the first {len(steps_got)} training steps" if steps_got else "the probe batch"
            title = f"{title}: your backward vs autograd on {where}"
        elif isinstance(self.got, Mapping):
            got, want = {k: self.got.get(k, TODO) for k in self.names}, self.want
            title = f"{title}: your backward vs autograd on the probe batch of {self.batch}"
        else:
            got, want = {k: TODO for k in self.names}, self.want
            title = f"{title}: your backward vs autograd"
        return check_grads(got, want, atol=atol, rtol=rtol, hints=hints, title=title, show=show)


def probe_backward(backward: Callable, forward: Callable, params: Mapping[str, torch.Tensor], X: torch.Tensor,
                   Y: torch.Tensor, *, want: Mapping[str, torch.Tensor], names: Sequence[str],
                   after: Sequence[Report] = ()) -> Probe:
    """Run a learner's `backward(params, cache, Y)` once on the batch (X, Y) and say whether it can train.

    `forward(params, X)` must return `(loss, cache)` as lesson 04's does; `want` is autograd's
    gradients on (X, Y), `names` the parameters `backward` must return a gradient for, each shaped
    like its parameter. `after` are the reports of the exercises this one builds on: while any of
    their answers is `TODO`, `backward` is not run. Choose a batch of another size than the training
    batches, so a `backward` that reads the notebook's batch size instead of its input's shows up.
    """
    names = tuple(names)
    unanswered = tuple(r.name for rep in after for r in rep.results if r.status == "todo")
    if unanswered:
        shown = ", ".join(unanswered[:6]) + (", ..." if len(unanswered) > 6 else "")
        return Probe(TODO, want, names, len(X),
                     f"Exercise 4 needs exercises 1-3 first: {len(unanswered)} answers are still TODO ({shown}).",
                     unanswered)
    try:
        with torch.no_grad():
            got = backward(params, forward(params, X)[1], Y)
    except Exception as err:  # a learner's bug: explain it here rather than deep inside training
        return Probe(TODO, want, names, len(X),
                     f"Exercise 4: backward raised {type(err).__name__}: {err}\n  (call backward on a batch of "
                     f"{len(X)} in a new cell to see where)")
    if got is TODO:
        problem = "Exercise 4: `backward` still returns TODO. Fill it in (cell above) and run again."
    elif not isinstance(got, Mapping):
        problem = f"Exercise 4: `backward` must return a dict name -> gradient, got {type(got).__name__}."
    else:
        missing = [k for k in names if k not in got]
        misshapen = [f"d{k} {tuple(got[k].shape) if torch.is_tensor(got[k]) else type(got[k]).__name__} "
                     f"(want {tuple(params[k].shape)})" for k in names
                     if k in got and not (torch.is_tensor(got[k]) and got[k].shape == params[k].shape)]
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"wrong shape: {', '.join(misshapen)}"] if misshapen else [])
        problem = (f"Exercise 4: backward's gradients do not fit the parameters on a batch of {len(X)}: "
                   + "; ".join(parts)) if parts else ""
    return Probe(got, want, names, len(X), problem)
