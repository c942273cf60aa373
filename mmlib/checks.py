"""Exercise checks that speak to learners (lesson 01 onwards).

An exercise cell starts with its answers set to `TODO`; the learner replaces them. A check cell
then calls `check(...)` once per answer and `report(...)` to show one row per answer:

    correct   - within the stated tolerance (`exact` when equal to the last bit)
    wrong     - the largest difference, where it is, how many entries are off, and a hint
    shape     - the expected and the received shape
    not attempted yet - the answer is still `TODO`

Comparisons use `torch.allclose` semantics, |got - want| <= atol + rtol * |want|, in float64, with
the tolerance printed in every row so a learner knows how close is close enough.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import html
import io
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mmlib.train import TrainConfig, TrainResult, state_digest, train


class _Todo:
    """The placeholder an exercise answer holds until the learner fills it in."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "TODO"

    def __bool__(self) -> bool:
        return False


TODO = _Todo()


def is_todo(*values: Any) -> bool:
    """True when any of `values` is still the `TODO` placeholder."""
    return any(v is TODO for v in values)


NOT_ATTEMPTED = "replace TODO with your answer"
"""The detail of every "not attempted yet" row."""


PASS = ("exact", "close")
LABELS = {
    "exact": "correct (exact)",
    "close": "correct",
    "wrong": "wrong",
    "shape": "wrong shape",
    "todo": "not attempted yet",
    "error": "cannot check",
}
COLOURS = {"exact": "#1a7f37", "close": "#1a7f37", "wrong": "#cf222e", "shape": "#cf222e",
           "todo": "#9a6700", "error": "#cf222e"}
ANSI = {"exact": "\033[32m", "close": "\033[32m", "wrong": "\033[31m", "shape": "\033[31m",
        "todo": "\033[33m", "error": "\033[31m"}


@dataclass
class Result:
    """The verdict on one answer."""

    name: str
    status: str  # one of LABELS
    detail: str = ""
    hint: str = ""

    @property
    def passed(self) -> bool:
        return self.status in PASS

    def text(self) -> str:
        line = f"{self.name}: {LABELS[self.status]}"
        if self.detail:
            line += f" - {self.detail}"
        if self.hint and not self.passed and self.status != "todo":
            line += f"\n    hint: {self.hint}"
        return line


def as_tensor(x: Any) -> torch.Tensor:
    """An answer as a float64 CPU tensor, whatever it came as (tensor, numpy, number, list)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.as_tensor(x, dtype=torch.float64)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _where(idx: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in idx) + "]"


def scale_factor(got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> float | None:
    """c when `got` is c times `want` everywhere (within the tolerances scaled by c), else None.

    A wrong answer that is off by one constant factor has one cause to name (a missing division,
    a flipped sign), not "900 of 900 entries wrong". Needs at least two entries of `want` that are
    not negligible, so a single number is never called "proportional".
    """
    signal = want.abs() > atol
    if got.shape != want.shape or int(signal.sum()) < 2 or not torch.isfinite(got).all():
        return None
    c = ((got[signal] * want[signal]).sum() / (want[signal] ** 2).sum()).item()
    if not math.isfinite(c) or abs(c - 1) < 1e-6 or abs(c) < 1e-12:
        return None
    if ((got - c * want).abs() <= atol * abs(c) + max(rtol, 1e-5) * (c * want).abs()).all():
        return c
    return None


def factor_cause(c: float, n: int | None = None, causes: Sequence[tuple[float, str]] = ()) -> str:
    """The usual reason an answer comes out `c` times too large (`n`: the batch size, if one is involved).

    `causes` are (factor, reason) pairs of the exercise itself, tried before the general ones: where a
    factor has one cause in that exercise (n where 1 / (n - 1) belongs is not a missing division by n).
    """
    for value, why in causes:
        if abs(c - value) <= 1e-3 * abs(value):
            return why
    causes = [(-1.0, "the sign is flipped"), (2.0, "a factor of 2 too many"), (0.5, "half of what it should be")]
    if n and n > 2:
        causes += [(float((n - 1) ** 2), f"a factor (n - 1)^2 = {(n - 1) ** 2} too large: n - 1 where 1 / (n - 1) "
                                         f"belongs (n = {n})?"),
                   (float(n - 1), f"a missing division by n - 1 = {n - 1}?"),
                   (1 / (n - 1), f"divided by n - 1 = {n - 1} once too often?")]
    if n and n > 1:
        causes += [(float(n), f"a missing division by n = {n} (the batch size)?"),
                   (1 / n, f"divided by n = {n} once too often?"),
                   (n / (n - 1), f"n - 1 where n belongs (Bessel's correction, n = {n})?"),
                   ((n - 1) / n, f"n where n - 1 belongs (Bessel's correction, n = {n})?"),
                   (math.sqrt((n - 1) / n), f"normalised by the unbiased (n - 1) variance where the batch's own "
                                            f"(n) belongs (Bessel's correction under a square root, n = {n})?"),
                   (math.sqrt(n / (n - 1)), f"normalised by the batch's own (n) variance where the unbiased "
                                            f"(n - 1) one belongs (Bessel's correction under a square root, n = {n})?"),
                   (-float(n), f"a flipped sign and a missing division by n = {n}?")]
    for value, why in causes:
        if abs(c - value) <= 1e-3 * abs(value):
            return why
    return "one constant factor is off: look for a scale in the formula"


def check(name: str, got: Any, want: Any, *, atol: float = 1e-6, rtol: float = 0.0, hint: str = "",
          n: int | None = None, causes: Sequence[tuple[float, str]] = ()) -> Result:
    """Compare a learner's answer with the expected value.

    `got` and `want` may be tensors, numpy arrays, numbers or (nested) lists. The tolerance is
    |got - want| <= atol + rtol * |want| elementwise; `hint` says what to look at when it fails.
    An answer that is a constant multiple of the expected one is reported as such, with its
    likely cause; `n` (the batch size, where one is involved) lets that cause be named exactly, and
    `causes` (see `factor_cause`) names the factors that have one cause in this exercise.
    """
    tol = f"atol={atol:g}" + (f", rtol={rtol:g}" if rtol else "")
    if got is TODO:
        return Result(name, "todo", NOT_ATTEMPTED, hint)
    if got is None:
        return Result(name, "error", "got None: does your cell assign the answer (and not just print it)?", hint)
    try:
        g = as_tensor(got)
    except Exception as e:  # noqa: BLE001 - whatever the answer is, the row says what it is
        return Result(name, "error", f"expected a number or tensor, got {type(got).__name__} ({describe_error(e)})",
                      hint)
    w = as_tensor(want)
    if g.shape != w.shape:
        return Result(name, "shape", shape_diagnosis(g, w), hint)
    if torch.equal(g, w):
        return Result(name, "exact", f"shape {tuple(g.shape)}" if g.ndim else _fmt(g.item()), hint)
    diff = (g - w).abs()
    diff = torch.where(torch.isnan(g) & torch.isnan(w), torch.zeros_like(diff), diff)
    bad = ~(diff <= atol + rtol * w.abs())  # NaN counts as bad
    if not bad.any():
        worst = diff.max().item()
        return Result(name, "close", f"max |difference| {_fmt(worst)} within {tol}", hint)
    if g.ndim == 0:
        why = ""
        if w.item() != 0 and math.isfinite(g.item()):   # a scalar off by a factor with a name (a sign, n, ...)
            why = factor_cause(g.item() / w.item(), n, causes)
            why = "" if why.startswith("one constant factor") else f": {why}"
        return Result(name, "wrong", f"got {_fmt(g.item())}, expected {_fmt(w.item())}: "
                      f"|difference| {_fmt(diff.item())} is outside {tol}{why}", hint)
    if torch.isnan(g).any() and not torch.isnan(w).any():
        where = _where(tuple(int(i) for i in torch.isnan(g).nonzero()[0]))
        return Result(name, "wrong", f"{int(torch.isnan(g).sum())} NaN entries, the first at {where}", hint)
    c = scale_factor(g, w, atol, rtol)
    if c is not None:
        return Result(name, "wrong", f"got {_fmt(c)} x the expected value everywhere (shape {tuple(g.shape)}): "
                      f"{factor_cause(c, n, causes)}", hint)
    worst = int(torch.where(bad, diff, torch.full_like(diff, -1.0)).argmax())
    idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), g.shape))
    detail = (f"max |difference| {_fmt(diff[idx].item())} at {_where(idx)} (got {_fmt(g[idx].item())}, "
              f"expected {_fmt(w[idx].item())}); {int(bad.sum())} of {g.numel()} entries outside {tol}")
    return Result(name, "wrong", detail, hint)


def shape_diagnosis(got: torch.Tensor, want: torch.Tensor) -> str:
    """Both shapes, and the usual cause of the difference: a transpose, a lost or extra dimension of
    size 1 (keepdim, squeeze), or the same entries in another layout (view/reshape)."""
    detail = f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}"
    if got.ndim == 2 and tuple(got.T.shape) == tuple(want.shape) and got.shape != want.shape:
        close = bool(torch.allclose(got.T.to(torch.float64), want.to(torch.float64), atol=1e-6, rtol=1e-4))
        return detail + (": your answer is the transpose of the expected one (.T, or the two factors of a matrix "
                         "product in the other order?)" if close else
                         " (the transposed shape: are the two factors of a matrix product in the other order?)")
    if [d for d in got.shape if d != 1] == [d for d in want.shape if d != 1]:
        if got.ndim < want.ndim:
            return detail + (": they differ only in dimensions of size 1 - your answer lost one: a sum or mean "
                             "without keepdim=True, or a squeeze() that dropped every dimension of size 1 "
                             "(squeeze(d) drops only dimension d)?")
        return detail + (": they differ only in dimensions of size 1 - your answer has one too many (a .view/"
                         ".reshape that kept a dimension of size 1, or keepdim=True where none belongs?)")
    if got.numel() == want.numel():
        return detail + " (same number of entries: a .view/.reshape or a transpose away?)"
    return detail


def _first(mask: torch.Tensor) -> tuple[int, ...]:
    if mask.ndim == 0:
        return ()
    return tuple(int(i) for i in mask.nonzero()[0])


def check_that(name: str, got: Any, ok: bool, detail: str, hint: str = "") -> Result:
    """A check for answers that have no single right value, e.g. "dev loss below 2.2".

    `ok` is the verdict the caller computed, `detail` says what was measured against what.
    """
    if got is TODO:
        return Result(name, "todo", NOT_ATTEMPTED, hint)
    return Result(name, "close" if ok else "wrong", detail, hint)


@dataclass
class Report:
    """All the verdicts of one check cell; shown as coloured rows in JupyterLab."""

    results: list[Result]
    title: str = ""
    mention_exact: bool = False  # say how many answers are exact, where that is a bonus worth knowing
    counts: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.counts = {
            "correct": sum(r.passed for r in self.results),
            "exact": sum(r.status == "exact" for r in self.results),
            "wrong": sum(r.status in ("wrong", "shape", "error") for r in self.results),
            "todo": sum(r.status == "todo" for r in self.results),
            "total": len(self.results),
        }

    @property
    def all_passed(self) -> bool:
        return self.counts["correct"] == self.counts["total"]

    def summary(self) -> str:
        c = self.counts
        s = f"{c['correct']}/{c['total']} correct"
        if self.mention_exact and c["exact"]:
            s += f" ({c['exact']} exact)"
        if c["wrong"]:
            s += f", {c['wrong']} wrong"
        if c["todo"]:
            s += f", {c['todo']} not attempted"
        return s

    def __repr__(self) -> str:
        return "\n".join(([self.title] if self.title else []) + [r.text() for r in self.results] + [self.summary()])

    def _repr_html_(self) -> str:
        rows = []
        for r in self.results:
            colour = COLOURS[r.status]
            hint = (f"<br><span style='color:#57606a'>hint: {html.escape(r.hint)}</span>"
                    if r.hint and not r.passed and r.status != "todo" else "")
            rows.append(
                f"<tr><td style='text-align:left'><code>{html.escape(r.name)}</code></td>"
                f"<td style='text-align:left;color:{colour};font-weight:bold'>{LABELS[r.status]}</td>"
                f"<td style='text-align:left'>{html.escape(r.detail)}{hint}</td></tr>"
            )
        colour = COLOURS["close"] if self.all_passed else COLOURS["wrong" if self.counts["wrong"] else "todo"]
        title = f"<b>{html.escape(self.title)}</b><br>" if self.title else ""
        return (f"<div>{title}<table>{''.join(rows)}</table>"
                f"<span style='color:{colour};font-weight:bold'>{self.summary()}</span></div>")

    def ansi(self) -> str:
        reset = "\033[0m"
        lines = [self.title] if self.title else []
        lines += [f"{ANSI[r.status]}{r.text()}{reset}" for r in self.results]
        return "\n".join(lines + [self.summary()])


def report(*results: Result, title: str = "") -> Report:
    """Show one row per answer and a summary line; returns the `Report` (for metrics)."""
    rep = Report(list(results), title)
    show(rep)
    return rep


def show(rep: Report) -> None:
    """Display a report: coloured HTML in Jupyter, ANSI colours in a terminal, plain text in a log."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        from IPython.display import display

        display(rep)
    else:
        print(rep.ansi() if sys.stdout.isatty() else repr(rep))


def tally(*reports: Report) -> dict[str, int]:
    """Counts over several check cells, for a lesson's metrics JSON."""
    out = {"correct": 0, "exact": 0, "wrong": 0, "todo": 0, "total": 0}
    for r in reports:
        for k in out:
            out[k] += r.counts[k]
    return out


# ---- running a learner's code: whatever it raises or returns becomes a row, never an exception ----------------

def todo_rows(names: Sequence[str]) -> list[Result]:
    """One "not attempted yet" row per name."""
    return [Result(n, "todo", NOT_ATTEMPTED) for n in names]


def skipped_rows(names: Sequence[str], why: str) -> list[Result]:
    """Rows that cannot be checked because an earlier one failed; they count as not passed, so a
    check cell always shows (and tallies) the same number of rows."""
    return [Result(n, "error", f"not checked: {why}") for n in names]


def answer_cell(name: str) -> str:
    """The source of the latest cell run in this notebook that assigns `name` at its top level ('' outside IPython
    or when none does): a check runs it again in another world (`replay`; lesson 04 on other batches)."""
    try:
        from IPython import get_ipython
        shell = get_ipython()
    except ImportError:
        return ""
    history = shell.user_ns.get("In", []) if shell is not None else []
    for source in reversed(history[:-1]):   # the last entry is the check cell itself
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for stmt in tree.body:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return source
    return ""


def replay(cell: str, namespace: Mapping[str, Any], world: Mapping[str, Any], names: Sequence[str]
           ) -> tuple[dict[str, Any], str]:
    """Run an answer `cell` again where the names in `world` have other values, and return the `names` it leaves.

    The cell runs in a copy of the notebook's `namespace` (tensors cloned: a cell that changes one in place must
    not change the notebook's) updated with `world`; its own top-level assignments to a name of `world` are left
    out, so a cell that sets `alphas = [...]` itself reads the world's. What it prints is dropped. Returns the
    names' values and "", or {} and the error the cell raised, as one line. An answer computed from the
    notebook's objects follows them; one that holds a number typed in for this notebook's data does not.
    """
    try:
        tree = ast.parse(cell)
    except SyntaxError as err:
        return {}, describe_error(err)
    tree.body = [stmt for stmt in tree.body if not (isinstance(stmt, ast.Assign | ast.AnnAssign) and all(
        isinstance(t, ast.Name) and t.id in world for t in getattr(stmt, "targets", [getattr(stmt, "target", None)])))]
    ns = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in namespace.items()} | dict(world)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            exec(compile(tree, "<your answer cell, replayed>", "exec"), ns)   # noqa: S102 - the learner's own cell
    except Exception as err:  # noqa: BLE001 - the learner's cell failing in another world is a finding, not a crash
        return {}, describe_error(err)
    return {k: ns.get(k, TODO) for k in names}, ""


def describe_error(err: BaseException, limit: int = 200) -> str:
    """An exception as one line a learner can read: its type and the first line of its message."""
    lines = str(err).strip().splitlines()
    msg = lines[0] if lines else ""
    if len(msg) > limit:
        msg = msg[: limit - 3] + "..."
    return f"{type(err).__name__}: {msg}" if msg else type(err).__name__


@dataclass
class Outcome:
    """What a call of learner code gave: `value`, or `row` saying why there is no usable value."""

    value: Any = None
    row: Result | None = None

    @property
    def ok(self) -> bool:
        return self.row is None


def attempt(name: str, fn: Callable, *args: Any, what: str, hint: str = "", **kwargs: Any) -> Outcome:
    """Call the learner's `fn(*args, **kwargs)`; an exception, `TODO` or `None` becomes the row `name`.

    `what` is how the row names the call (e.g. "MyHead(16, 8)"); `hint` is shown when it raised.
    """
    try:
        value = fn(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - any exception in learner code is reported, not raised
        return Outcome(row=Result(name, "error", f"{what} raised {describe_error(err)}", hint))
    if value is TODO:
        return Outcome(row=Result(name, "todo", NOT_ATTEMPTED))
    if value is None:
        return Outcome(row=Result(name, "error", f"{what} returned None: does it end with `return ...`?", hint))
    return Outcome(value)


def tensor_problem(value: Any, like: torch.Tensor | None = None) -> str:
    """Why `value` cannot be an output computed from the tensor `like` ("" when it can): not a tensor,
    or a tensor on another device than its input (a new tensor made without `device=x.device`)."""
    if not isinstance(value, torch.Tensor):
        return f"expected a tensor, got {type(value).__name__}"
    if like is not None and value.device != like.device:
        return (f"the output is on {value.device} but its input was on {like.device}: create new tensors on the "
                f"input's device (device=x.device) or with *_like functions")
    if not value.is_floating_point():
        return f"expected a floating-point tensor, got {value.dtype}"
    return ""


def shares_parameters(mine: Any, theirs: Any, mine_name: str = "my_model", theirs_name: str = "model") -> str:
    """Why training `mine` would change the lesson's trained `theirs` ("" when it would not): `mine` is
    `theirs` itself (an assignment copies no tensors) or holds some of its parameter tensors."""
    if is_todo(mine) or mine is None or theirs is None:
        return ""
    if mine is theirs:
        return (f"{mine_name} is the lesson's `{theirs_name}` itself, not a copy (`{mine_name} = {theirs_name}` copies "
                f"no tensors): training it would change `{theirs_name}`, and the results cell would report your "
                f"run's test loss as the lesson's. Start from copy.deepcopy({theirs_name})")
    params = getattr(mine, "parameters", None)
    theirs_params = getattr(theirs, "parameters", None)
    if not callable(params) or not callable(theirs_params):
        return ""
    ours = {p.data_ptr() for p in theirs_params()}
    shared = sum(p.data_ptr() in ours for p in params())
    if shared:
        return (f"{mine_name} shares {shared} parameter tensors with the lesson's `{theirs_name}`: training it would "
                f"change `{theirs_name}` too. Start from copy.deepcopy({theirs_name})")
    return ""


def changed_since_training(model: Any, lesson_run: TrainResult | None, name: str = "model") -> str:
    """Why the lesson's `model` is no longer the one `lesson_run` trained ("" when it still is, or when there is
    nothing to compare): its parameters, buffers or module settings differ from those the run left
    (`TrainResult.digest`)."""
    recorded = getattr(lesson_run, "digest", "")
    if not recorded or not hasattr(model, "state_dict") or state_digest(model) == recorded:
        return ""
    return (f"the lesson's `{name}` has changed since its training run ended: its weights, buffers or module "
            f"settings (a dropout's p, say) are no longer those that run left, so something trained or edited "
            f"`{name}` itself (before copying it?). The "
            f"lesson's dev loss, your target, belongs to `{name}` as that run left it: re-run the lesson's training "
            f"cell, then train or change only a copy, copy.deepcopy({name})")


def model_mismatch(my_model: Any, model: Any) -> str:
    """Why `my_model` cannot be trained and measured on the lesson's data, which fits `model` ("" when it can):
    another vocabulary (its dev loss would not be comparable, or its embedding would be indexed out of range),
    the other kind of data (a window model reads a fixed context, a sequence model whole words), or a sequence
    model that reads fewer positions than the lesson's longest word needs."""
    if not callable(getattr(my_model, "parameters", None)) or not hasattr(my_model, "block_size"):
        return (f"my_model must be a model the trainer takes - one of mmlib.models (create(...) or "
                f"copy.deepcopy(model)), or a LayerModel - got {type(my_model).__name__}: the check builds its data "
                f"from the model's block_size")
    mine, theirs = (getattr(m, "vocab_size", None) for m in (my_model, model))
    if mine is not None and theirs is not None and mine != theirs:
        return (f"my_model predicts {mine} characters but the lesson's vocabulary has {theirs} ('.' included): build "
                f"it with vocab_size={theirs}, so it reads every character of the data and its dev loss is comparable")
    kind = {True: "a sequence model (it reads whole words)", False: "a window model (it reads a fixed context)"}
    mine, theirs = (getattr(m, "per_position", None) for m in (my_model, model))
    if mine is not None and theirs is not None and mine != theirs:
        return (f"my_model is {kind[mine]} but the lesson's model is {kind[theirs]}, and the check trains on data "
                f"built for that kind: start from the lesson's kind of model")
    if theirs and getattr(my_model, "block_size", 0) < getattr(model, "block_size", 0):
        return (f"my_model reads at most {my_model.block_size} positions but the lesson's longest word needs "
                f"{model.block_size} (the word and its end token '.'): build it with block_size={model.block_size}")
    return _trial_forward(my_model, getattr(model, "vocab_size", None), getattr(my_model, "per_position", None))


def _trial_forward(my_model: Any, vocab_size: int | None, per_position: bool | None = None) -> str:
    """Why `my_model` cannot read a batch of the data its `block_size` makes ("" when it can): two rows of
    block_size characters, on a copy (a BatchNorm's running statistics and the learner's model stay as they were),
    must give logits with one score per character, (2, vocab_size) from a window model and (2, block_size,
    vocab_size) from a sequence model (`per_position`). Said before training, not after a run's first step fails."""
    try:
        trial = copy.deepcopy(my_model)
        device = next(iter(trial.parameters()), torch.empty(0)).device
        with torch.no_grad():
            logits = trial(torch.zeros(2, trial.block_size, dtype=torch.long, device=device))[0]
    except Exception as err:  # noqa: BLE001 - the learner's model failing is the finding
        return (f"my_model cannot read the data its block_size of {my_model.block_size} makes: on 2 rows of "
                f"{my_model.block_size} characters it raised {describe_error(err, limit=300)} - do its layers fit "
                f"block_size (a model built for another context length)?")
    if vocab_size is not None and (not torch.is_tensor(logits) or logits.shape[-1] != vocab_size):
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        return (f"my_model's logits on 2 rows of {my_model.block_size} characters are {shape}: the last dimension "
                f"must hold one score per character, {vocab_size}")
    want = (2, my_model.block_size, logits.shape[-1]) if per_position else (2, logits.shape[-1])
    if per_position is not None and tuple(logits.shape) != want:
        return (f"my_model's logits on 2 rows of {my_model.block_size} characters are {tuple(logits.shape)}, not "
                f"{want}: " + ("a sequence model scores every position" if per_position else
                               "a window model reads its block_size characters down to one vector per row (do its "
                               "layers fit block_size? a stack built for another context leaves more positions)"))
    return ""


def train_your_model(my_model: Any, my_config: Any, model: Any,
                     splits_for: Callable[[Any], Mapping[str, tuple[torch.Tensor, torch.Tensor]]],
                     lesson_run: TrainResult | None = None) -> tuple[Any, str]:
    """Exercise 4 of lessons 05 and 06, "beat the lesson": train the learner's `my_model` with `my_config`
    (a `TrainConfig`) on `splits_for(my_model)` and return its dev loss and a reason it cannot count.

    No run when it is not attempted (`TODO`) or cannot count: `my_config` is no `TrainConfig`, `my_model`
    shares parameters with the lesson's trained `model` (`shares_parameters`), or `model` has changed since
    `lesson_run`, the run that trained it and set the target (`changed_since_training`): the dev loss is then `TODO`
    and the reason goes to `beat_target(..., problem=...)`.
    """
    problem = why_not_counted(my_model, my_config, model, lesson_run)
    if is_todo(my_model, my_config) or problem:
        return TODO, problem
    try:
        run = train(my_model, splits_for(my_model), my_config)
    except Exception as err:  # noqa: BLE001 - the learner's model or config failing is a row, not a traceback
        return TODO, f"training my_model with my_config raised {describe_error(err, limit=400)}"
    n_params = sum(p.numel() for p in my_model.parameters())
    print(f"{n_params:,} parameters, {my_config.max_steps:,} steps in {run.seconds:.0f} s: "
          f"train {run.final['train']:.4f}, dev {run.final['dev']:.4f}")
    return run.final["dev"], ""


def why_not_counted(my_model: Any, my_config: Any, model: Any, lesson_run: TrainResult | None = None) -> str:
    """Why a run of `my_model` with `my_config` could not count against the lesson's `model` ("" when it could, or
    while either is `TODO`), in `train_your_model`'s order: tensors shared with `model`, `model` changed since
    `lesson_run`, a `my_config` that is no `TrainConfig`, a model that does not fit the lesson's data."""
    shared = shares_parameters(my_model, model) or changed_since_training(model, lesson_run)
    if shared or is_todo(my_model, my_config):
        return shared
    if not isinstance(my_config, TrainConfig):
        return f"my_config must be a TrainConfig (mmlib.train), got {type(my_config).__name__}"
    from mmlib.runtime import pick_device
    try:
        pick_device(my_config.device)
    except (RuntimeError, ValueError) as err:
        return f"my_config cannot run here: {describe_error(err)}"
    return model_mismatch(my_model, model)


def beat_target(name: str, got: Any, target: float, *, what: str = "dev loss", hint: str = "",
                problem: str = "") -> Result:
    """Whether the loss `got` beats the lesson's `target` (is lower), and by how much it beat or missed it.

    `problem` (e.g. from `shares_parameters`) is a reason the run cannot count, reported instead (without `hint`,
    which is about beating the target: the problem says what to do).
    """
    if problem:
        return Result(name, "error", problem)
    if is_todo(got):
        return Result(name, "todo", NOT_ATTEMPTED)
    try:
        value = float(got)
    except (TypeError, ValueError):
        return Result(name, "error", f"expected a number (the {what}), got {type(got).__name__}", hint)
    if not math.isfinite(value):
        return Result(name, "wrong", f"the {what} is {value}: the run diverged (a lower learning rate?)", hint)
    margin = target - value
    if margin > 0:
        return Result(name, "close", f"{what} {value:.4f} beats the lesson's {target:.4f} by {margin:.4f}")
    if -margin < 5e-5:    # equal at four decimals: say so, or "misses by -0.0000" reads as a contradiction
        return Result(name, "wrong", f"{what} {value:.6g} is not below the lesson's {target:.6g} (it equals it to four "
                      "decimals: beating means lower; a rounded figure, or the lesson's own run?)", hint)
    return Result(name, "wrong", f"{what} {value:.4f} misses the lesson's {target:.4f} by {-margin:.4f}", hint)


# ---- what an answer does besides its output: state, inputs, devices (issue 27) -------------------------------
# A module can compute the right numbers once and still be wrong: a mask it trains, a tensor `state_dict` does not
# save, a buffer it cuts in place, two parts that are one tensor, running statistics that keep an autograd graph,
# an input it changes, a tensor it makes on the CPU whatever device its input is on. These helpers look for each
# and return sentences that name what they found ("" or [] when nothing).

def snapshot(**tensors: Any) -> dict[str, torch.Tensor]:
    """Copies of the named tensors (others are left out), to compare with `changed` after a call."""
    return {k: v.detach().clone() for k, v in tensors.items() if isinstance(v, torch.Tensor)}


def changed(before: Mapping[str, torch.Tensor], **after: Any) -> list[str]:
    """The names whose tensor in `after` differs from its copy in `before` (shape, or any value; NaN = NaN)."""
    out = []
    for k, old in before.items():
        new = after.get(k)
        if not isinstance(new, torch.Tensor):
            continue
        new = new.detach()
        if new.shape != old.shape or not torch.equal(new.isnan(), old.isnan()) or not torch.equal(
                new.nan_to_num(), old.nan_to_num()):
            out.append(k)
    return out


def inputs_changed_sentence(names: Sequence[str], what: str, example: str = "q = q * scale, not q *= scale") -> str:
    """The sentence for inputs `what` (e.g. "my_attention") changed in place ("" when none); `example` shows
    the out-of-place way."""
    if not names:
        return ""
    return (f"{what} changed its input {' and '.join(names)} in place (an in-place operation such as *=, +=, "
            f"masked_fill_, sub_, or a view of the input written to): its caller still needs it, so compute new "
            f"tensors, e.g. {example}")


def tensor_state(obj: Any) -> dict[str, torch.Tensor]:
    """Every tensor an object holds, by name: an nn.Module's parameters and buffers (shared ones under each of
    their names) and tensor attributes of it and its submodules; a plain object's tensor attributes."""
    from torch import nn
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, nn.Module):
        out.update(obj.named_parameters(remove_duplicate=False))
        out.update(obj.named_buffers(remove_duplicate=False))
        for prefix, m in obj.named_modules(remove_duplicate=False):
            for k, v in vars(m).items():
                if isinstance(v, torch.Tensor) and not k.startswith("_"):
                    out.setdefault(f"{prefix}.{k}" if prefix else k, v)
    else:
        out.update({k: v for k, v in vars(obj).items() if isinstance(v, torch.Tensor)})
    return out


def plain_tensor_attributes(module: Any) -> list[str]:
    """Tensor attributes of an nn.Module (or its submodules) that are neither parameters nor buffers."""
    from torch import nn
    if not isinstance(module, nn.Module):
        return []
    registered = {id(t) for t in module.parameters()} | {id(t) for t in module.buffers()}
    return [k for k, v in tensor_state(module).items() if id(v) not in registered
            and k not in dict(module.named_parameters(remove_duplicate=False))
            and k not in dict(module.named_buffers(remove_duplicate=False))]


def shared_tensors(obj: Any) -> list[tuple[str, ...]]:
    """Groups of names under which an object holds one and the same tensor storage (by identity or memory)."""
    groups: dict[tuple[int, int], list[str]] = {}
    for k, v in tensor_state(obj).items():
        if v.device.type == "meta" or v.numel() == 0:
            continue
        groups.setdefault((v.untyped_storage().data_ptr(), v.storage_offset()), []).append(k)
    return [tuple(names) for names in groups.values() if len(names) > 1]


def module_inventory(module: Any, parameters: Mapping[str, tuple[int, ...]],
                     buffers: Sequence[str] = ()) -> list[str]:
    """What a learner's nn.Module holds that differs from the reference's: `parameters` maps each expected
    trainable tensor's name to its shape; `buffers` names tensors it may keep (untrained) in state_dict.

    Names: a parameter missing, of another shape or extra (a mask made trainable: its name is among `buffers`),
    a tensor attribute that is no buffer (state_dict and .to(device) leave it behind), and parts that share one
    tensor. Parameters shared under two names are listed once, as shared.
    """
    from torch import nn
    if not isinstance(module, nn.Module):
        return [f"expected an nn.Module, got {type(module).__name__}"]
    problems = []
    got = dict(module.named_parameters(remove_duplicate=False))
    for name, p in got.items():
        if name.split(".")[-1] in {b.split(".")[-1] for b in buffers}:
            problems.append(f"`{name}` is a trainable nn.Parameter: the optimizer would change it (and "
                            f"parameters() counts it); a fixed tensor such as a mask is a buffer, "
                            f"self.register_buffer('{name.split('.')[-1]}', ...)")
        elif name not in parameters:
            problems.append(f"an extra parameter `{name}` of shape {tuple(p.shape)} (the reference has only "
                            f"{', '.join(parameters) or 'none'})")
        elif tuple(p.shape) != tuple(parameters[name]):
            problems.append(f"the parameter `{name}` has shape {tuple(p.shape)}, expected {tuple(parameters[name])}")
    missing = [n for n in parameters if n not in got]
    if missing:
        problems.append(f"no parameter {', '.join(f'`{n}`' for n in missing)} (parameters() must list every "
                        "trained tensor)")
    for name in plain_tensor_attributes(module):
        problems.append(f"`{name}` is a plain tensor attribute, not a buffer: state_dict() does not save it and "
                        f".to(device) leaves it on its old device; self.register_buffer('{name.split('.')[-1]}', "
                        "...) does both")
    for names in shared_tensors(module):
        if all(n in got for n in names) or any(n in parameters for n in names):
            problems.append(f"{' and '.join(f'`{n}`' for n in names)} are one and the same tensor: the parts "
                            "each need a tensor of their own (a layer assigned twice, or one tensor reused), so "
                            "they can learn different things")
    return problems


def buffers_changed_by(module: Any, call: Callable[[], Any]) -> list[str]:
    """The names of a module's buffers and tensor attributes that `call()` changed (`call`'s errors propagate)."""
    from torch import nn
    if not isinstance(module, nn.Module):   # a plain class (lesson 05's layers): it has no buffers, but the call counts
        call()
        return []
    params = dict(module.named_parameters(remove_duplicate=False))
    before = snapshot(**{k: v for k, v in tensor_state(module).items() if k not in params})
    call()
    now = {k: v for k, v in tensor_state(module).items() if k not in params}
    return changed(before, **now)


_PLAIN = (int, float, bool, str, type(None))


def plain_attributes(obj: Any) -> dict[str, Any]:
    """The settings an object (and, for an nn.Module, each submodule) keeps as plain values - numbers, strings,
    None, tuples of them - by name; PyTorch's own (`training`, private names) left out."""
    from torch import nn
    parts = obj.named_modules(remove_duplicate=False) if isinstance(obj, nn.Module) else [("", obj)]
    out = {}
    for prefix, part in parts:
        for k, v in vars(part).items():
            if k.startswith("_") or k == "training":
                continue
            if isinstance(v, _PLAIN) or (isinstance(v, tuple) and all(isinstance(e, _PLAIN) for e in v)):
                out[f"{prefix}.{k}" if prefix else k] = v
    return out


def settings_changed(before: Mapping[str, Any], obj: Any) -> list[str]:
    """How `obj`'s plain settings differ from `before` (`plain_attributes` of it earlier), as "`name` None -> 8"."""
    now = plain_attributes(obj)
    return [f"`{k}` {before[k]!r} -> {now.get(k, 'deleted')!r}" for k in before if now.get(k, "deleted") != before[k]]


def history_problem(module: Any, first: torch.Tensor, x: torch.Tensor, *, what: str, atol: float = 1e-5) -> str:
    """Whether `module`'s output on `x` depends on an earlier call on `first`: a copy of it as it is now answers
    `x` first, then `module` answers `first` and `x`. The sentence names the settings and buffers that the
    call changed; "" when the two answers agree (or either call fails: other rows judge that)."""
    import copy
    before, fresh = plain_attributes(module), copy.deepcopy(module)
    try:
        with torch.no_grad():
            want = fresh(x)
            moved = buffers_changed_by(module, lambda: module(first))
    except Exception:  # noqa: BLE001 - a call that fails is reported by the rows that make it
        return ""
    try:
        with torch.no_grad():
            got = module(x)
    except Exception as err:  # noqa: BLE001 - it answers x when new: failing now is what the first call left
        got, how = None, f" (it raises {describe_error(err)}, where a new one answers)"
    else:
        if not (isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor)) or (got.shape == want.shape and (
                torch.allclose(got.double(), want.double(), atol=atol, equal_nan=True))):
            return ""
        how = (f" (shape {tuple(got.shape)}, where a new one gives {tuple(want.shape)})" if got.shape != want.shape
               else "")
    causes = settings_changed(before, module) + [f"`{n}`" for n in moved]
    return (f"{what}'s output on {tuple(x.shape)} changes after one call on {tuple(first.shape)}{how}"
            + (f": that call changed {', '.join(causes)}" if causes else "")
            + " - each call must be computed from its input and the module's parameters alone, not from what an "
            "earlier call left behind")


def graph_in_state(obj: Any, names: Sequence[str]) -> list[str]:
    """Which of `obj`'s attributes `names` are tensors that carry an autograd graph or require grad: running
    statistics computed without torch.no_grad() keep every batch's graph alive."""
    return [n for n in names if isinstance(getattr(obj, n, None), torch.Tensor)
            and (getattr(obj, n).requires_grad or getattr(obj, n).grad_fn is not None)]


def is_device_error(message: str) -> bool:
    """Whether an error's message is PyTorch's about tensors on two devices (a CPU tensor meeting a 'meta' one)."""
    return "device" in message and ("meta" in message or "cpu" in message)


def device_problem(call: Callable[..., Any], *inputs: torch.Tensor, what: str) -> str:
    """Run `call(*inputs)` with the inputs on the 'meta' device, standing in for a GPU (no data, no memory): a tensor
    the answer makes on the CPU without `device=` then meets a meta one, as it would meet a CUDA one, and PyTorch
    raises. "" when it runs and its output is on the inputs' device (or it fails for a reason unrelated to devices,
    e.g. reading a value with .item(), which meta tensors do not have)."""
    meta = [t.detach().to("meta") for t in inputs]
    try:
        out = call(*meta)
    except Exception as err:  # noqa: BLE001 - a learner's error is the finding, not a crash of the check
        if is_device_error(str(err)):
            return (f"{what} fails when its inputs are on another device than the CPU (here 'meta', standing in for a "
                    f"GPU): {describe_error(err)}. A tensor made inside it (a mask, torch.ones, torch.tril, arange) "
                    "stays on the CPU: give it device=x.device, or use *_like functions or a registered buffer")
        return ""
    if isinstance(out, torch.Tensor) and out.device.type != "meta":
        return (f"{what} returns its output on {out.device} when its inputs are on another device (here 'meta', "
                "standing in for a GPU): make new tensors on the input's device (device=x.device)")
    return ""


def gradient_problem(call: Callable[..., Any], inputs: Mapping[str, torch.Tensor], reference: Callable[..., Any], *,
                     what: str, seed: int = 3) -> str:
    """Whether the gradient that flows back through `call(*inputs)` to each input is the one through
    `reference(*inputs)` ("" when it is, or when there is nothing to compare): for an answer whose output is right.
    An output computed partly outside autograd (detach(), .data, a tensor rebuilt from numbers, torch.no_grad())
    has the right values and trains wrongly. Float64 inputs, so round-off cannot hide a difference."""
    names = list(inputs)
    leaves = [inputs[k].detach().double().clone().requires_grad_() for k in names]
    try:
        out = call(*leaves)
    except Exception as err:  # noqa: BLE001 - the learner's error is the finding
        return (f"{what} raises when its inputs require grad, as they do in training: {describe_error(err)} (an "
                "in-place operation on an input autograd needs?)")
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        return ""
    if not out.requires_grad:
        return (f"{what}'s output carries no gradient back to its inputs (detach(), .data, torch.no_grad() or a "
                "tensor rebuilt from numbers inside?): the layers before it would never learn")
    R = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    got = torch.autograd.grad((out * R).sum(), leaves, allow_unused=True)
    mine = [t.detach().clone().requires_grad_() for t in leaves]
    want = torch.autograd.grad((reference(*mine) * R).sum(), mine, allow_unused=True)
    off = [k for k, a, b in zip(names, got, want) if b is not None and (
        a is None or a.shape != b.shape or not torch.allclose(a, b, atol=1e-9 * (1 + float(b.abs().max())),
                                                              rtol=1e-7))]
    if not off:
        return ""
    return (f"{what}'s output is right, but its gradient with respect to {', '.join(off)} is not: part of the "
            "computation is cut from autograd (detach(), .data, torch.no_grad(), a tensor rebuilt from numbers), so "
            "training would follow another gradient than the one of what it computes")


def on_one_thread(probe: Callable) -> Callable:
    """Run `probe` with PyTorch on one thread, then restore the setting: a probe's tensors are tiny, so threads
    only add their start-up and, on a busy machine, wait for each other (a check cell then took seconds, not
    tenths of a second)."""
    import functools

    @functools.wraps(probe)
    def run(*args: Any, **kwargs: Any) -> Any:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return probe(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)
    return run


def closer_than_tolerance(got: Any, want: float, candidates: Candidates, *, what: str, noise: float = 1e-5) -> str:
    """Why a number inside a check's tolerance of 1e-4 is still another quantity ("" when it is not): farther from
    `want` than float32 round-off (`noise`: a mean moves by a few 1e-6) and not rounded to four decimals, which is
    what the tolerance is there for. Named as the first of `candidates` (description, value or callable) that is
    twenty times closer to it, else said as it is. `what` says what `want` is ("the mean over every example")."""
    try:
        value = float(got)
    except (TypeError, ValueError):
        return ""
    off = abs(value - want)
    if not off > noise:
        return ""
    for why, cand in (candidates() if callable(candidates) else candidates):
        c = quietly(cand, default=None) if callable(cand) else cand
        if isinstance(c, (int, float)) and math.isfinite(c) and abs(value - c) * 20 < off:
            return (f"within the tolerance, but not the right number: yours is {value:.7f}, {what} {want:.7f}, and "
                    f"it equals {c:.7f}, {why}")
    if off > 2 * noise and round(value, 4) != value:
        return (f"within the tolerance, but not the right number: yours is {value:.7f}, {what} {want:.7f}, "
                f"{off:.2g} away. The tolerance of 1e-4 is there for a number rounded to four decimals; yours has "
                f"more digits, and float32 round-off moves a mean by a few 1e-6 only: it is another quantity (a part "
                f"of the examples, or a mean of means?)")
    return ""


def quietly(explain: Callable[..., Any], *args: Any, default: Any = "", **kwargs: Any) -> Any:
    """`explain(*args, **kwargs)`, or `default` if it raises: a diagnosis runs a learner's code in ways the
    check's own rows did not, and whatever that code does, the check must still give its rows."""
    try:
        return explain(*args, **kwargs)
    except Exception:  # noqa: BLE001 - a diagnosis that fails says nothing; the row still says what was measured
        return default


# ---- naming what a wrong answer computes -----------------------------------------------------------------------

Candidates = Iterable[tuple[str, Any]] | Callable[[], Iterable[tuple[str, Any]]]


def _matches(got: torch.Tensor, value: Any, atol: float, rtol: float) -> bool:
    try:
        v = as_tensor(value() if callable(value) else value)
    except Exception:  # noqa: BLE001 - a candidate that cannot be computed matches nothing
        return False
    if v.shape != got.shape:
        return False
    same_nan = torch.isnan(got) & torch.isnan(v)
    same_inf = torch.isinf(got) & (got == v)
    close = torch.isfinite(v) & ((got - v).abs() <= atol + rtol * v.abs())
    return bool((close | same_nan | same_inf).all())


def explain(result: Result, got: Any, candidates: Candidates, *, atol: float, rtol: float = 0.0,
            fallback: str | Callable[[], str] = "", every: bool = False) -> Result:
    """`result` with the cause named when it is wrong: the first candidate `got` equals within the tolerance.

    `candidates` are (description, value) pairs, each value what the answer would be had it been computed that
    way (a number, a tensor, or a zero-argument callable computing it); the whole iterable may be a callable
    too. They are computed only for a wrong answer and only until one matches, so a right answer costs nothing
    and a check names what the answer computes - "it equals the NLL counted with one start token" - rather than
    how far off it is. `fallback` (text, or a callable giving it) is added when no candidate matches;
    `every`: name every candidate that matches (where several causes give the same value, say so).
    A right, not-attempted or unreadable answer is returned unchanged.
    """
    if result.status != "wrong":
        return result
    try:
        g = as_tensor(got)
    except Exception:  # noqa: BLE001 - check() already said what the answer is
        return result
    found = []
    try:
        for description, value in (candidates() if callable(candidates) else candidates):
            if description not in found and _matches(g, value, atol, rtol):
                found.append(description)
                if not every:
                    break
    except Exception:  # noqa: BLE001 - a search that cannot go on ends; the row stands without a cause
        pass
    if found:
        return Result(result.name, "wrong", f"{result.detail}; your answer equals {' - or '.join(found)}",
                      result.hint)
    try:
        extra = fallback() if callable(fallback) else fallback
    except Exception:  # noqa: BLE001 - likewise for the description of last resort
        extra = ""
    if extra:
        return Result(result.name, "wrong", f"{result.detail}; {extra}", result.hint)
    return result


def rows_of(got: torch.Tensor, table: torch.Tensor, atol: float = 1e-6, rtol: float = 1e-5) -> torch.Tensor:
    """For each row of `got`, the index of the row of `table` it equals (the first, within atol + rtol * the
    row's largest entry), or -1.

    Recovers which rows an answer looked up: `W[ys]` where `W[xs]` belongs shows as the indices ys.
    """
    g, t = as_tensor(got), as_tensor(table)
    if g.ndim != 2 or t.ndim != 2 or g.shape[1] != t.shape[1]:
        return torch.full((g.shape[0] if g.ndim else 0,), -1, dtype=torch.long)
    dist = torch.cdist(g, t, p=float("inf")) if g.numel() and t.numel() else torch.empty(len(g), len(t))
    close = dist <= atol + rtol * t.abs().amax(1)[None, :]
    return torch.where(close.any(1), close.float().argmax(1), torch.full((len(g),), -1, dtype=torch.long))


def name_sizes(shape: Sequence[int], sizes: Mapping[str, int]) -> str:
    """A shape with each dimension named by the sizes it equals, e.g. "(10, 27) = (n_embd, vocab_size)"."""
    names = []
    for d in shape:
        hit = [k for k, v in sizes.items() if v == d]
        names.append(" or ".join(hit) if hit else str(d))
    return f"{tuple(shape)} = ({', '.join(names)})"
