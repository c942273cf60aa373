"""Expected answers for lesson 05's exercises, each computed by a route of its own, and the probes
that run a learner's code against them.

- `flatten_consecutive`: neighbouring positions side by side, built from strided slices and
  `torch.cat` (the lesson's layer uses one `view`); `probe_flatten` runs a learner's class on
  random inputs of several shapes and on shapes it must refuse (exercise 1).
- `batchnorm_reference`: `torch.nn.BatchNorm1d` on the channels-first layout PyTorch uses;
  `probe_batchnorm` feeds a learner's BatchNorm a few (N, L, C) and (N, C) batches and compares
  outputs and running statistics (exercise 2).
- `probe_conv_stack`: a learner's stack of `nn.Conv1d` levels, given a trained WaveNet's weights,
  against the WaveNet's own outputs window by window (exercise 3).
- `beat_target`: a dev loss against the lesson's, by how much it beat or missed it (exercise 4).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmlib import checks
from mmlib.checks import Result, attempt, check, check_that, is_todo, tensor_problem, todo_rows

ATOL = 1e-5
"""How close is right, for exercise 2's float32 BatchNorm (atol, with rtol 1e-5): two right answers of the
catalogue (tests/wrong_answers.toml) differ from torch.nn.BatchNorm1d by at most 7.2e-7, the closest wrong one
by 2.1e-2, so 1e-5 sits between them with a margin of more than 10 on each side. The probe's first channel has
a spread of 0.01, where eps = 1e-5 is a tenth of the variance: eps outside the square root, or none, moves that
channel's output by about 5% (with every channel of spread ~1 it moved by 1.5e-5 and passed)."""


# ---- exercise 1: FlattenConsecutive -----------------------------------------------------------------

def flatten_consecutive(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, T, C) -> (B, T // n, n * C), one group dropped to (B, n * C); by slices, not by `view`.

    Group g holds positions g*n ... g*n + n - 1; `x[:, i::n]` is position i of every group, so
    concatenating the n of them along the channels puts each group's positions side by side.
    """
    B, T, C = x.shape
    if T % n:
        raise ValueError(f"{n} does not divide {T} positions")
    out = torch.cat([x[:, i::n] for i in range(n)], dim=2)      # (B, T // n, n * C)
    return out[:, 0] if out.shape[1] == 1 else out


# The last case is a batch of one example: squeeze() with no dimension would drop the batch dimension too.
FLATTEN_CASES = [((4, 8, 3), 2), ((3, 8, 5), 4), ((2, 8, 3), 8), ((5, 2, 7), 2), ((2, 16, 4), 2), ((1, 8, 3), 8)]
FLATTEN_REFUSED = [((4, 6, 3), 4, "6 positions do not split into groups of 4"),
                   ((4, 12, 2), 8, "12 positions do not split into groups of 8"),
                   ((4, 16), 2, "a 2-D input has no positions left to fuse")]


def _layer_call(make: Callable, n: int, x: torch.Tensor, name: str, hint: str = "") -> checks.Outcome:
    """`make(n)(x)` through `mmlib.checks.attempt`: the construction and the call, each may raise."""
    layer = attempt(name, make, n, what=f"MyFlattenConsecutive({n})")
    if not layer.ok:
        return layer
    return attempt(name, layer.value, x, what=f"MyFlattenConsecutive({n})(x) on x of shape {tuple(x.shape)}", hint=hint)


FLATTEN_HINT = ("group g holds positions g*n ... g*n + n - 1: their n vectors of C numbers side by side are one "
                "vector of n * C numbers, so only the last two dimensions change size; a dimension of size 1 that "
                "is left goes, and only that one (a batch can have a single example too)")


@checks.on_one_thread
def probe_flatten(cls: type, seed: int = 0) -> list[Result]:
    """One row per case: `cls(n)(x)` against `flatten_consecutive(x, n)`, then the shapes to refuse."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for shape, n in FLATTEN_CASES:
        x = torch.randn(shape, generator=g)
        want = flatten_consecutive(x, n)
        name = f"FlattenConsecutive({n}) on {shape} -> {tuple(want.shape)}"
        got = _layer_call(cls, n, x, name, hint="x is (B, T, C); fuse groups of n positions")
        if not got.ok:
            rows.append(got.row)
        elif problem := tensor_problem(got.value, x):
            rows.append(Result(name, "error", problem, FLATTEN_HINT))
        else:
            row = check(name, got.value, want, atol=0.0, hint=FLATTEN_HINT)
            if not row.passed and row.status == "wrong":
                row.hint = checks.quietly(explain_flatten, cls, shape, n) or FLATTEN_HINT
            rows.append(row)
    if all(r.passed for r in rows) and (problem := _dtype_or_device_problem(cls, g)):
        rows[0] = Result(rows[0].name, "wrong", f"right for float32 on the CPU, but {problem}", FLATTEN_HINT)
    elif all(r.passed for r in rows) and (problem := _history(cls, g)):
        rows[0] = Result(rows[0].name, "wrong", f"right on a new layer each time, but {problem}", FLATTEN_HINT)
    for shape, n, why in FLATTEN_REFUSED:
        name = f"FlattenConsecutive({n}) on {shape} must be refused"
        got = _layer_call(cls, n, torch.randn(shape, generator=g), name)
        if got.ok:
            rows.append(Result(name, "wrong", f"returned {tuple(getattr(got.value, 'shape', ()))} instead of "
                               f"refusing: {why}", "raise ValueError when x is not 3-D or n does not divide T"))
        elif got.row.status == "todo":
            rows.append(got.row)
        elif "raised ValueError" in got.row.detail:
            rows.append(Result(name, "close", got.row.detail.split(" raised ", 1)[1]))
        else:
            rows.append(Result(name, "wrong", f"{got.row.detail}; expected a ValueError that says why: {why}",
                               "check the shape first and raise ValueError with a message"))
    return rows


def _history(cls: type, g: torch.Generator) -> str:
    """Whether one layer's answer depends on its earlier calls: a layer called on 4 positions, then on 8 (as the
    same layer meets words of other lengths), must fuse the 8 as a new one does (`checks.history_problem`)."""
    try:
        layer = cls(2)
    except Exception:  # noqa: BLE001 - the rows above made it already: nothing new to report
        return ""
    return checks.history_problem(layer, torch.randn(2, 4, 3, generator=g), torch.randn(2, 8, 3, generator=g),
                                  what="the layer", atol=0.0)


def _dtype_or_device_problem(cls: type, g: torch.Generator) -> str:
    """The layer only moves numbers, so it must hand back the input's dtype and device: a float64 input (its values
    kept to the last bit), an integer one, and one on the 'meta' device standing in for a GPU ("" when it does)."""
    shape, n = (2, 8, 3), 2
    for x in (torch.randn(shape, generator=g, dtype=torch.float64), torch.randint(0, 1000, shape, generator=g)):
        got = _layer_call(cls, n, x, "")
        if not got.ok:
            return f"on a {x.dtype} input {got.row.detail}"
        out = got.value
        if not isinstance(out, torch.Tensor) or out.dtype != x.dtype:
            return (f"a {x.dtype} input comes back as {getattr(out, 'dtype', type(out).__name__)}: a tensor made "
                    "inside the layer (torch.zeros, torch.empty) takes the default dtype unless given dtype=x.dtype - "
                    "or move the numbers with view/reshape/cat, which keep it")
        want = flatten_consecutive(x, n)
        if out.shape != want.shape or not torch.equal(out, want):
            return f"on a {x.dtype} input the numbers are not where they are for float32"
    layer = attempt("", cls, n, what=f"MyFlattenConsecutive({n})")
    if not layer.ok:
        return ""
    x = torch.randn(shape, generator=g)
    return (checks.device_problem(layer.value, x, what=f"MyFlattenConsecutive({n})")
            or checks.gradient_problem(layer.value, {"x": x}, lambda t: flatten_consecutive(t, n),
                                       what=f"MyFlattenConsecutive({n})"))


def explain_flatten(cls: type, shape: tuple[int, ...], n: int) -> str:
    """Where each number of `cls(n)(x)` came from: x holds 0, 1, 2, ... (every entry its own index), so each output
    entry names the position and channel it was copied from. Says which positions a group holds, in which order,
    and how their channels are laid out, against `flatten_consecutive`; "" when the output is no copy of x's
    entries or its shape differs."""
    B, T, C = shape
    x = torch.arange(B * T * C, dtype=torch.float32).view(B, T, C)
    got = _layer_call(cls, n, x.clone(), "explain")
    want = flatten_consecutive(x, n)
    if not got.ok or not isinstance(got.value, torch.Tensor) or got.value.shape != want.shape:
        return ""
    out = got.value.detach().reshape(B, -1, n * C)
    ids = out.round().long()
    if not torch.equal(ids.float(), out) or ids.min() < 0 or ids.max() >= x.numel():
        return "its entries are not x's entries: the layer must only move numbers (view, reshape, cat), not compute"
    b, t, c = ids // (T * C), ids // C % T, ids % C
    if not torch.equal(b, torch.arange(B).view(B, 1, 1).expand_as(b)):
        return "an example's output holds numbers of other examples: the batch dimension was mixed into the groups"
    for g in range(out.shape[1]):
        pos = [int(p) for p in t[0, g].view(-1, C)[:, 0]] if torch.equal(
            t[0, g].view(n, C), t[0, g].view(n, C)[:, :1].expand(n, C)) else None
        wanted = list(range(g * n, g * n + n))
        if pos is None:
            sources = [f"({int(tt)}, {int(cc)})" for tt, cc in zip(t[0, g][: 2 * C], c[0, g][: 2 * C])]
            held = sorted({int(p) for p in t[0, g]})
            which = "" if held == wanted else f"; and it holds positions {held}, not the neighbours {wanted}"
            return (f"group {g}'s first {2 * C} numbers come from (position, channel) {', '.join(sources)}: "
                    f"the channels of different positions are interleaved (a transpose before the reshape?); "
                    f"group {g} must be position {g * n}'s {C} channels, then position {g * n + 1}'s, ...{which}")
        if pos != wanted:
            if sorted(pos) == wanted:
                return (f"group {g} holds positions {pos}, in another order than {wanted}: neighbours side by side "
                        "in their order, earliest first")
            return (f"group {g} holds positions {pos}, not the neighbours {wanted}: group g is positions g*n .. "
                    "g*n + n - 1 (x.view(B, T // n, n * C) keeps them together; strided slices or chunks split them)")
        if not torch.equal(c[0, g].view(n, C), torch.arange(C).expand(n, C)):
            return f"group {g} holds the right positions but their channels are reordered"
    return ""


# ---- exercise 2: BatchNorm over batch and positions -------------------------------------------------

def batchnorm_reference(batches: list[torch.Tensor], dim: int, momentum: float, eps: float = 1e-5
                        ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, nn.BatchNorm1d]:
    """`torch.nn.BatchNorm1d` in training mode on each batch, in PyTorch's (N, C, L) layout.

    Returns the outputs (in the batches' own layout), the running mean and variance after the
    last batch, and the module (for eval-mode outputs).
    """
    bn = nn.BatchNorm1d(dim, eps=eps, momentum=momentum)
    outs = []
    with torch.no_grad():
        for x in batches:
            outs.append(bn(x.transpose(1, 2)).transpose(1, 2) if x.ndim == 3 else bn(x))
    return outs, bn.running_mean.clone(), bn.running_var.clone(), bn


def _running(batches: list[torch.Tensor], momentum: float, *, swapped: bool = False,
             unbiased: bool = True, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The running mean and variance after `batches` with one of the usual mistakes: `swapped` gives the
    new batch the weight 1 - momentum, `unbiased` False leaves out the factor n / (n - 1), `n` counts another
    number of values in that factor."""
    dim = batches[0].shape[-1]
    mean, var = torch.zeros(dim, dtype=torch.float64), torch.ones(dim, dtype=torch.float64)
    for x in batches:
        x = x.double().reshape(-1, dim)
        new = 1 - momentum if swapped else momentum
        mean = (1 - new) * mean + new * x.mean(0)
        biased = x.var(0, correction=0)
        count = n or x.shape[0]
        var = (1 - new) * var + new * (biased * count / (count - 1) if unbiased else biased)
    return mean, var


def _normalised(x: torch.Tensor, eps: float, where: str) -> torch.Tensor:
    """Training-mode BatchNorm output (gamma 1, beta 0) with eps `where`: "inside" the square root (right),
    "outside" it, or "none"; or "unbiased": the variance with Bessel's correction where the biased one belongs."""
    x = x.double()
    dims = tuple(range(x.ndim - 1))
    d = x - x.mean(dims)
    var = x.var(dims, correction=1 if where == "unbiased" else 0)
    return d / {"outside": var.sqrt() + eps, "none": var.sqrt()}.get(where, (var + eps).sqrt())


@checks.on_one_thread
def probe_batchnorm(cls: type, seed: int = 0, dim: int = 6, momentum: float = 0.2) -> list[Result]:
    """Train-mode outputs and running statistics of `cls(dim, momentum=momentum)` after three
    (N, L, C) batches, its eval-mode output, and the same for (N, C) batches (which must still work).

    Channel 0 has a spread of 0.01 and mean 0, so eps (1e-5) is a tenth of its variance there: an eps
    outside the square root, or none, moves its output by about 5%, far outside ATOL.
    """
    g = torch.Generator().manual_seed(seed)
    shift, scale = torch.randn(dim, generator=g), torch.rand(dim, generator=g) * 3 + 0.5
    shift[0], scale[0] = 0.0, 0.01
    hint_shape = ("which dimensions does the mean run over? every one but the last (the channels), so the running "
                  "statistics keep one number per channel, shape (C,) - see section 4")
    rows = []
    for layout, shape in (("(N, L, C)", (16, 4, dim)), ("(N, C)", (32, dim))):
        batches = [torch.randn(shape, generator=g) * scale + shift for _ in range(3)]
        outs, mean, var, ref = batchnorm_reference(batches, dim, momentum)
        names = [f"{layout}: output in training mode", f"{layout}: running_mean after 3 batches",
                 f"{layout}: running_var after 3 batches", f"{layout}: output in eval mode"]
        made = attempt(names[0], cls, dim, momentum=momentum, what=f"MyBatchNorm1d({dim}, momentum={momentum})")
        got = made
        if made.ok:
            layer = made.value
            for x in batches:
                got = attempt(names[0], layer, x, what=f"layer(x) on x of shape {tuple(x.shape)}", hint=hint_shape)
                if not got.ok:
                    break
        if not got.ok:
            rows += (todo_rows(names) if got.row.status == "todo" else
                     [got.row, *checks.skipped_rows(names[1:], "the layer raised")])
            continue
        n = math.prod(shape[:-1])   # values averaged per channel: a factor of n or n - 1 is named as such
        rows.append(_training_output_row(names[0], layer, got.value, batches[-1], outs[-1], n, hint_shape))
        mean_hint, var_hint = _running_hints(layer, batches, momentum, mean, var, hint_shape)
        rows.append(_buffer_shape_row(names[1], getattr(layer, "running_mean", None), dim, layout) or check(
            names[1], _per_channel(getattr(layer, "running_mean", None), dim), mean, atol=ATOL, rtol=1e-5,
            hint=mean_hint))
        rows.append(_buffer_shape_row(names[2], getattr(layer, "running_var", None), dim, layout) or check(
            names[2], _per_channel(getattr(layer, "running_var", None), dim), var, atol=ATOL, rtol=1e-5,
            hint=var_hint, n=n))
        problems = (checks.quietly(batchnorm_state_problems, cls, dim, momentum, shape, scale, shift, g, default=[])
                    if rows[-3].passed else [])
        in_eval = [p for p in problems if p.startswith("in eval mode")]
        if problems := [p for p in problems if p not in in_eval]:
            rows[-3] = Result(names[0], "wrong", "the output is right with gamma = 1 and beta = 0, but "
                              + "; ".join(problems))
        layer.training = False
        ref.eval()
        x = torch.randn(shape, generator=g)[:2] * scale + shift
        with torch.no_grad():
            want = ref(x.transpose(1, 2)).transpose(1, 2) if x.ndim == 3 else ref(x)
        got = attempt(names[3], layer, x, what="layer(x) in eval mode",
                      hint="eval mode normalises with the running statistics")
        rows.append(got.row if not got.ok else check(names[3], got.value, want, atol=ATOL, rtol=1e-5,
                                                     hint=checks.quietly(_eval_hint, layer, got.value, x)))
        if rows[-1].passed and in_eval:
            rows[-1] = Result(names[3], "wrong", "right with these running statistics, but " + "; ".join(in_eval))
        elif rows[-1].passed and getattr(layer, "out", None) is not got.value:
            rows[-1] = Result(names[3], "wrong", "the output is right, but self.out is not it in eval mode: the "
                              "lesson's layers keep their last output in self.out in either mode (lesson 03's plots "
                              "read it after an evaluation too)", "store the output in self.out, whatever the mode")
        elif in_eval:          # the call moved the statistics it reads: a wrong eval output need not follow from them
            hint = rows[-1].hint
            if hint == "eval mode normalises with the running statistics" or "follows from the running_mean" in hint:
                hint = "eval mode normalises with the running statistics, and leaves them as they are"
            rows[-1] = Result(names[3], rows[-1].status, f"{rows[-1].detail}; {'; '.join(in_eval)}", hint)
    return rows


def _eval_hint(layer: object, got: object, x: torch.Tensor) -> str:
    """What a wrong eval-mode output used: the batch's own statistics (self.training ignored), or the layer's own
    running statistics - right, then, given them: the running rows above are the step to fix."""
    hint = "eval mode normalises with the running statistics"
    if not isinstance(got, torch.Tensor) or got.shape != x.shape:
        return hint
    g = got.double()
    gamma, beta = (getattr(layer, a, None) for a in ("gamma", "beta"))
    if not (isinstance(gamma, torch.Tensor) and isinstance(beta, torch.Tensor)):
        return hint
    gamma, beta = gamma.detach().double(), beta.detach().double()
    x64 = x.double()
    dims = tuple(range(x.ndim - 1))
    batch = gamma * (x64 - x64.mean(dims)) / (x64.var(dims, correction=0) + 1e-5).sqrt() + beta
    if torch.allclose(g, batch, atol=ATOL, rtol=1e-5):
        return ("in eval mode it normalises with this batch's own mean and variance: when self.training is False "
                "the running statistics take their place (self.training ignored?)")
    mean, var = (_per_channel(getattr(layer, a, None), x.shape[-1]) for a in ("running_mean", "running_var"))
    if isinstance(mean, torch.Tensor) and isinstance(var, torch.Tensor) and mean.shape == var.shape == gamma.shape:
        d, v = x64 - mean.double(), var.double()
        for own, why in ((gamma * d / (v + 1e-5).sqrt() + beta,
                          "it normalises with its own running statistics, as eval mode should: the error follows from "
                          "the running_mean / running_var rows above"),
                         (gamma * d / (v.sqrt() + 1e-5) + beta, "in eval mode eps is added outside the square root: "
                          "it belongs under it, with the running variance"),
                         (gamma * d / v.sqrt() + beta, "in eval mode eps is missing: sqrt(running_var + eps)"),
                         (d / (v + 1e-5).sqrt(), "in eval mode gamma and beta are not applied")):
            if torch.allclose(g, own, atol=ATOL, rtol=1e-5):
                return why
    return hint


def _buffer_shape_row(name: str, t: object, dim: int, layout: str) -> Result | None:
    """A wrong row for a running statistic that holds one number per channel but no longer has the shape (C,) it
    was made with (the lecture's keepdim=True statistics assigned back); None otherwise, for the value check."""
    if not (isinstance(t, torch.Tensor) and t.numel() == dim and t.shape != (dim,)
            and [d for d in t.shape if d != 1] == [dim]):
        return None
    buffer = name.split(": ")[-1].split(" ")[0]
    return Result(name, "wrong", f"after {layout} batches {buffer} has shape {tuple(t.shape)}, where it was made "
                  f"({dim},): one number per channel, but a buffer must keep its shape. state_dict saves it, a new "
                  f"layer of shape ({dim},) must load it, and in eval mode an (N, C) input meets (1, 1, C) statistics "
                  "and comes out 3-D", "reduce without keepdim for the running statistics, or reshape the batch's "
                  "statistics to (C,) before blending them in (lesson 03's keepdim=True shapes are for normalising)")


def _per_channel(t: object, dim: int) -> object:
    """Running statistics of shape (C,), or the lecture's keepdim=True shapes (1, C), (1, 1, C) - one number per
    channel either way, and they broadcast alike - as (C,); anything else as it is, for `check` to report."""
    if isinstance(t, torch.Tensor) and t.numel() == dim and [d for d in t.shape if d != 1] == [dim]:
        return t.reshape(dim)
    return t


def batchnorm_state_problems(cls: type, dim: int, momentum: float, shape: tuple[int, ...], scale: torch.Tensor,
                             shift: torch.Tensor, g: torch.Generator) -> list[str]:
    """What a layer whose outputs are right with gamma = 1 and beta = 0 still does wrong, on one batch of `shape`:
    random gamma and beta (are they applied?), an input it changes in place (a snapshot of x), an input that
    requires grad (do the running statistics keep its graph?)."""
    gamma = 1 + 0.5 * torch.randn(dim, generator=g)
    beta = 0.5 * torch.randn(dim, generator=g)
    x = torch.randn(shape, generator=g) * scale + shift
    ref = nn.BatchNorm1d(dim, momentum=momentum)
    with torch.no_grad():
        ref.weight.copy_(gamma)
        ref.bias.copy_(beta)
        want = (ref(x.transpose(1, 2)).transpose(1, 2) if x.ndim == 3 else ref(x)).double()
    problems = []
    layer = attempt("", cls, dim, momentum=momentum, what="")
    if not layer.ok:
        return []
    bn = layer.value
    bn.gamma, bn.beta = gamma.clone().requires_grad_(), beta.clone().requires_grad_()
    given = x.clone()
    out = attempt("", bn, given, what="layer(x)")
    if not out.ok or not isinstance(out.value, torch.Tensor) or out.value.shape != x.shape:
        return [f"with a random gamma and beta {out.row.detail if not out.ok else 'the output has another shape'}"]
    if checks.changed(checks.snapshot(x=x), x=given):
        problems.append(checks.inputs_changed_sentence(["x"], "the layer",
                                                       example="x_hat = (x - mean) / std, not x.sub_(mean)"))
    got = out.value.detach().double()
    if not torch.allclose(got, want, atol=ATOL, rtol=1e-5):
        g64, b64 = gamma.double(), beta.double()
        plain = (want - b64) / g64
        why = next((w for alt, w in ((plain, "gamma and beta are never applied (the output is the normalised x "
                                             "alone): gamma * x_hat + beta"),
                                     (plain + b64, "gamma is never applied (x_hat + beta)"),
                                     (plain * g64, "beta is never added (gamma * x_hat)"))
                    if torch.allclose(got, alt, atol=ATOL, rtol=1e-5)),
                   f"the output is not gamma * x_hat + beta (max |difference| {float((got - want).abs().max()):.3g})")
        problems.append(f"with a random gamma and beta (as after training) {why}")
    problems += _eval_with_small_variance(bn, x, g)
    leaf = (torch.randn(shape, generator=g) * scale + shift).requires_grad_()
    bn = attempt("", cls, dim, momentum=momentum, what="").value
    with_grad = attempt("", bn, leaf, what="layer(x) on an input that requires grad")
    if not with_grad.ok:
        problems.append(with_grad.row.detail + " (an in-place operation on the input?)")
    elif graph := checks.graph_in_state(bn, ["running_mean", "running_var"]):
        problems.append(f"after an input that requires grad (as every layer's input does in training), "
                        f"{' and '.join(graph)} carry an autograd graph: update them under torch.no_grad() (or from "
                        "detached statistics), or each batch's graph stays alive, linked to the next")
    elif why := _input_gradient_problem(with_grad.value, leaf, dim):
        problems.append(why)
    return problems


def _input_gradient_problem(out: object, leaf: torch.Tensor, dim: int) -> str:
    """Whether the gradient that reaches a training-mode layer's input `leaf` through its output `out` is
    BatchNorm's ("" when it is, or when there is nothing to compare): the batch statistics are functions of the
    input, so the gradient flows through them too. A right output with a wrong gradient trains the layers below
    it wrongly (statistics detached, or the output cut from the input)."""
    if not isinstance(out, torch.Tensor) or out.shape != leaf.shape:
        return ""
    R = torch.randn(leaf.shape, generator=torch.Generator().manual_seed(1))
    if not out.requires_grad:
        return ("in training mode the output carries no gradient back to the input (it is detached from x): the "
                "layers below the BatchNorm would never learn")
    (got,) = torch.autograd.grad((out * R).sum(), leaf, allow_unused=True)
    x = leaf.detach().clone().requires_grad_()
    ref = nn.BatchNorm1d(dim)
    ((ref(x.transpose(1, 2)).transpose(1, 2) if x.ndim == 3 else ref(x)) * R).sum().backward()
    if got is not None and torch.allclose(got, x.grad, atol=1e-4, rtol=1e-3):
        return ""
    R_plain = ref.weight.detach() * R / (x.detach().var(tuple(range(x.ndim - 1)), correction=0) + ref.eps).sqrt()
    if got is not None and torch.allclose(got, R_plain, atol=1e-4, rtol=1e-3):
        return ("in training mode its gradient with respect to the input treats the batch "
                "mean and variance as constants (detached, or computed under no_grad): they are functions of x, "
                "and BatchNorm's gradient flows through them too - detach only what goes into the running statistics")
    return ("in training mode its gradient with respect to the input is not BatchNorm's "
            "(max |difference| "
            f"{float((got - x.grad).abs().max()) if got is not None else float('nan'):.3g}): is part of the "
            "computation detached, or done outside autograd?")


def _eval_with_small_variance(bn: object, x: torch.Tensor, g: torch.Generator) -> list[str]:
    """Eval mode with running statistics set by hand, channel 0's variance 1e-5 (= eps, so eps outside the root or
    none changes that channel's output by about 40%): the main probe's running variances near 1 hide eps."""
    dim = x.shape[-1]
    mean, var = torch.randn(dim, generator=g), torch.rand(dim, generator=g) + 0.5
    var[0] = 1e-5
    try:
        bn.training = False
        bn.running_mean, bn.running_var = mean.clone(), var.clone()
    except Exception:  # noqa: BLE001 - a layer that keeps its statistics elsewhere is judged by the main rows
        return []
    before = checks.snapshot(running_mean=bn.running_mean, running_var=bn.running_var)
    out = attempt("", bn, x, what="layer(x) in eval mode")
    moved = checks.changed(before, running_mean=getattr(bn, "running_mean", None),
                           running_var=getattr(bn, "running_var", None))
    if out.ok and moved:
        return [f"in eval mode the layer changed its {' and '.join(moved)}: evaluating must only read the running "
                "statistics (update them only when self.training is True), or every evaluation moves them"]
    gamma, beta = (getattr(bn, a).detach().double() for a in ("gamma", "beta"))
    want = gamma * (x.double() - mean.double()) / (var.double() + 1e-5).sqrt() + beta
    if not out.ok or not isinstance(out.value, torch.Tensor) or out.value.shape != x.shape:
        return [f"in eval mode with set running statistics {out.row.detail if not out.ok else 'the shape changes'}"]
    if torch.allclose(out.value.detach().double(), want, atol=ATOL, rtol=1e-5):
        return []
    return ["in eval mode, with running_var 1e-5 in channel 0, the output is not gamma * (x - running_mean) / "
            "sqrt(running_var + eps) + beta: " + _eval_hint(bn, out.value.detach(), x)]


def _training_output_row(name: str, layer: object, got: object, x: torch.Tensor, want: torch.Tensor, n: int,
                         hint: str) -> Result:
    """The last training-mode output against `want`, naming eps outside the root, no eps or Bessel's
    correction when the output matches one of them, and a right output that is not kept in self.out."""
    cause = ""
    for where, why in (("outside", "eps is added outside the square root: it belongs under it, with the variance"),
                       ("none", "eps is missing: it keeps the division safe when a channel barely varies"),
                       ("unbiased", f"it is normalised by the unbiased (n - 1) variance where the batch's own (n) "
                                    f"belongs (Bessel's correction, n = {n} values per channel)")):
        alt = _normalised(x, 1e-5, where)
        if isinstance(got, torch.Tensor) and got.shape == alt.shape and torch.allclose(
                got.double(), alt, atol=ATOL, rtol=1e-5):
            cause = why
    if not cause and isinstance(got, torch.Tensor) and got.shape == x.shape:
        cause = checks.quietly(_statistics_dims, got, x)
    row = check(name, got, want, atol=ATOL, rtol=1e-5, hint=hint, n=n)
    if cause and not row.passed:
        return Result(name, "wrong", f"{row.detail}: {cause}", hint)
    if row.passed and getattr(layer, "out", None) is not got:
        return Result(name, "wrong", "the output is right, but self.out is not it: the lesson's layers keep "
                      "their last output in self.out (lesson 03's plots read it)", "store the output in self.out")
    return row


def _statistics_dims(got: torch.Tensor, x: torch.Tensor) -> str:
    """Which dimensions an output's statistics ran over, when not over all but the channels: each other set of
    dimensions is tried (a mean over the batch only, over everything, over the channels...)."""
    import itertools
    x64 = x.double()
    right = tuple(range(x.ndim - 1))
    names = {0: "the batch (0)", 1: "the positions (1)" if x.ndim == 3 else "the channels (1)", 2: "the channels (2)"}
    for r in range(1, x.ndim + 1):
        for dims in itertools.combinations(range(x.ndim), r):
            if dims == right:
                continue
            alt = (x64 - x64.mean(dims, keepdim=True)) / (x64.var(dims, keepdim=True, correction=0) + 1e-5).sqrt()
            if torch.allclose(got.double(), alt, atol=ATOL, rtol=1e-5):
                over = " and ".join(names[d] for d in dims)
                return (f"its mean and variance run over {over}, not over every dimension but the channels "
                        f"(dims {right} for a {x.ndim}-D input: x.ndim - 1 of them, whatever x.ndim is)")
    return ""


def _running_hints(layer: object, batches: list[torch.Tensor], momentum: float, mean: torch.Tensor,
                   var: torch.Tensor, hint_shape: str) -> tuple[str, str]:
    """Hints for the running mean and variance rows: momentum swapped, or a biased running variance."""
    mean_hint, var_hint = hint_shape, ("the running variance moves towards the unbiased estimate: the batch "
                                       "variance times n / (n - 1), n = the number of values averaged per channel")
    swapped = _running(batches, momentum, swapped=True)
    running_mean, running_var = getattr(layer, "running_mean", None), getattr(layer, "running_var", None)
    if isinstance(running_mean, torch.Tensor) and running_mean.shape == mean.shape and torch.allclose(
            running_mean.double(), swapped[0], atol=ATOL):
        mean_hint = var_hint = (f"momentum swapped: each new batch must count with weight momentum = {momentum}, "
                                f"the running value with 1 - momentum")
    elif isinstance(running_var, torch.Tensor) and running_var.shape == var.shape and torch.allclose(
            running_var.double(), swapped[1], atol=ATOL):
        var_hint = (f"momentum swapped in the running variance: each new batch must count with weight momentum = "
                    f"{momentum}, the running value with 1 - momentum")
    elif isinstance(running_var, torch.Tensor) and running_var.shape == var.shape and torch.allclose(
            running_var.double(), _running(batches, momentum, unbiased=False)[1], atol=ATOL):
        var_hint = ("the running variance is the biased one: it moves towards the batch variance times "
                    "n / (n - 1), n = the number of values averaged per channel")
    elif isinstance(running_var, torch.Tensor) and running_var.shape == var.shape:
        shape = batches[0].shape
        n_all = math.prod(shape[:-1])
        for d, size in enumerate(shape[:-1]):
            if size != n_all and size > 1 and torch.allclose(running_var.double(),
                                                             _running(batches, momentum, n=size)[1], atol=ATOL):
                var_hint = (f"the running variance uses n / (n - 1) with n = {size}, the size of dimension {d} only, "
                            f"where n = {n_all} values are averaged per channel (every dimension but the last)")
    return mean_hint, var_hint


# ---- exercise 3: the dilated-convolution stack ------------------------------------------------------

def windows_of(X: torch.Tensor, keep: torch.Tensor, block_size: int) -> torch.Tensor:
    """The `block_size` characters before every real position of the padded words `X` (`keep`), start tokens (0) in
    front: what `build_dataset` makes of the same words."""
    return F.pad(X, (block_size - 1, 0)).unfold(1, block_size, 1)[keep]


def probe_conv_stack(stack, model, X: torch.Tensor, X_windows: torch.Tensor, keep: torch.Tensor,
                     atol: float = 1e-4, *, cell: str = "", namespace: Mapping[str, Any] | None = None
                     ) -> list[Result]:
    """A learner's `nn.Sequential` of Conv1d levels against a trained WaveNet.

    `X` holds padded words (`build_sequences`), `X_windows` the same words' windows (`build_dataset`)
    and `keep` (the targets != -1) which positions of X are real; the WaveNet's weights are copied
    into the stack and its logits at every real position compared with the WaveNet's per window.
    A level's row names the settings that differ, and what to think about, not the values to type.
    With the answer `cell` and the notebook's `namespace`, a stack right here is built again for a WaveNet of
    twice the block size (`_replayed_stack_rows`): one with the levels typed in is right only for this one.
    """
    rows = _conv_stack_rows(stack, model, X, X_windows, keep, atol)
    if cell and namespace is not None and all(r.passed for r in rows):
        rows = _replayed_stack_rows(rows, cell, namespace, model, X, keep, atol)
    return rows


def _replayed_stack_rows(rows: list[Result], cell: str, namespace: Mapping[str, Any], model, X: torch.Tensor,
                         keep: torch.Tensor, atol: float) -> list[Result]:
    """The rows of a stack built again by the answer `cell` where `block_size` is doubled, against a WaveNet of that
    size (its other settings the same): a row that fails there fails here, saying so. The cell's `model` stays the
    notebook's: the exercise text asks for log2(block_size) levels, so a stack whose levels are read off the
    trained model does not follow block_size."""
    block_size = 2 * model.config.block_size
    other = type(model)(dataclasses.replace(model.config, block_size=block_size),
                        generator=torch.Generator().manual_seed(0)).to(model.device)
    setting = (f"your cell, run again with block_size = {block_size} (where log2(block_size) = {len(other.levels)} "
               f"levels belong)")
    got, error = checks.replay(cell, namespace, {"block_size": block_size}, ("conv_stack",))
    if error:
        return [Result(rows[0].name, "error", f"right for this notebook's WaveNet, but {setting}, raised {error}"),
                *rows[1:]]
    again = _conv_stack_rows(got["conv_stack"], other, X, windows_of(X, keep, block_size), keep, atol)
    if all(r.passed for r in again):
        return rows
    first = next(r for r in again if not r.passed)
    return [Result(rows[0].name, "wrong", f"right for this notebook's WaveNet, but {setting}, builds a stack whose "
                   f"row '{first.name}' fails: {first.detail} (a number of levels or a dilation typed in, or read "
                   f"from the trained model, right only for block_size {model.config.block_size}?)", first.hint),
            *rows[1:]]


def _conv_stack_rows(stack, model, X: torch.Tensor, X_windows: torch.Tensor, keep: torch.Tensor,
                     atol: float) -> list[Result]:
    """`probe_conv_stack`'s rows for one WaveNet."""
    from mmlib.layers import eval_mode
    from mmlib.models import CausalConvWaveNet

    n = len(model.levels)
    names = ["Conv1d layers", *[f"Conv1d {k}: kernel, dilation, channels" for k in range(n)],
             "logits at every position vs the WaveNet, window by window"]
    if is_todo(stack):
        return todo_rows(names)
    if not isinstance(stack, nn.Module):
        return [Result(names[0], "error", f"expected an nn.Sequential, got {type(stack).__name__}"),
                *checks.skipped_rows(names[1:], "not a module")]
    convs = [m for m in stack.modules() if isinstance(m, nn.Conv1d)]
    rows = [check_that(names[0], stack, len(convs) == n,
                       f"{len(convs)} Conv1d layers, the WaveNet has {n} levels",
                       hint="one Conv1d -> BatchNorm1d -> Tanh per level of the tree")]
    c = model.config
    why = {"kernel_size": "how many positions does one node of the tree read?",
           "dilation": "level k pairs each position with an earlier one: how far back, at level k? (section 6)",
           "in_channels": "a level reads the embeddings (level 0) or the level below's units",
           "out_channels": "every level has n_hidden units",
           "bias": "BatchNorm follows, so a bias would be cancelled: leave it out",
           "padding": "the start tokens in front stand in for padding",
           "stride": "every position gets an output: the stride is 1 (the dilation, not the stride, spaces the pair)",
           "groups": "every output channel reads every input channel: groups=1"}
    for k in range(n):
        if k >= len(convs):
            rows.append(Result(names[1 + k], "wrong", "missing", "one Conv1d per level of the tree"))
            continue
        m = convs[k]
        want = {"kernel_size": 2, "dilation": 2**k, "in_channels": c.n_embd if k == 0 else c.n_hidden,
                "out_channels": c.n_hidden, "bias": False, "padding": 0, "stride": 1, "groups": 1}
        got = {"kernel_size": m.kernel_size[0], "dilation": m.dilation[0], "in_channels": m.in_channels,
               "out_channels": m.out_channels, "bias": m.bias is not None,
               "padding": m.padding if isinstance(m.padding, str) else m.padding[0], "stride": m.stride[0],
               "groups": m.groups}
        off = [key for key in want if got[key] != want[key]]
        rows.append(check_that(names[1 + k], m, not off,
                               "as the tree's level" if not off else
                               "; ".join(f"{key} {got[key]}" for key in off) + " differ from the tree's level",
                               hint=" ".join(why[key] for key in off)))
    try:
        conv = CausalConvWaveNet.from_wavenet(model, stack)
        with torch.no_grad(), eval_mode(model, conv):
            got = conv(X.to(model.device))[0][keep.to(model.device)]
            want = model(X_windows.to(model.device))[0]
        row = check(names[-1], got, want, atol=atol)
        if not row.passed:
            row.hint = (checks.quietly(stack_structure, stack, model)
                        or ("fix the rows above first" if not all(r.passed for r in rows) else
                            "compare each level with the rows above: the order Conv1d, BatchNorm1d, Tanh matters"))
        rows.append(row)
    except Exception as e:  # noqa: BLE001 - any exception from the learner's stack is reported, not raised
        rows.append(Result(names[-1], "error", checks.describe_error(e),
                           checks.quietly(stack_structure, stack, model)
                           or ("fix the rows above first" if not all(r.passed for r in rows) else "")))
    return rows


def stack_structure(stack: nn.Module, model) -> str:
    """How the stack's levels differ from the tree's besides the convolutions' settings: the layers of each level in
    order (Conv1d, BatchNorm1d, Tanh), one module object used in several places, and BatchNorm settings (eps,
    affine, running statistics) other than the WaveNet's - settings a copy of the weights does not carry."""
    leaves = [m for _, m in stack.named_modules(remove_duplicate=False) if not list(m.children())]
    levels: list[list[nn.Module]] = []
    for m in leaves:
        if isinstance(m, nn.Conv1d) or not levels:
            levels.append([])
        levels[-1].append(m)
    found = []
    want = ["Conv1d", "BatchNorm1d", "Tanh"]
    for k, level in enumerate(levels):
        kinds = [type(m).__name__ for m in level]
        if kinds != want:
            found.append(f"level {k} is {', '.join(kinds)}; the tree's level is Conv1d, BatchNorm1d, Tanh (a "
                         "BatchNorm normalises the convolution's output before the tanh squashes it)")
            break
    seen: dict[int, list[int]] = {}
    for k, level in enumerate(levels):
        for m in level:
            if list(m.parameters()) or list(m.buffers()):
                seen.setdefault(id(m), []).append(k)
    shared = [(next(m for m in leaves if id(m) == i), ks) for i, ks in seen.items() if len(ks) > 1]
    for m, ks in shared[:1]:
        found.append(f"one {type(m).__name__} object serves levels {', '.join(map(str, ks))}: each level needs "
                     "its own (its own weights and running statistics); create a new module per level")
    ref_bn = next((m for m in model.modules() if isinstance(m, nn.BatchNorm1d)), None)
    for k, level in enumerate(levels):
        for m in level:
            if isinstance(m, nn.BatchNorm1d) and ref_bn is not None:
                off = [f"{a} {getattr(m, a)}" for a in ("eps", "affine", "track_running_stats")
                       if getattr(m, a) != getattr(ref_bn, a)]
                if off:
                    found.append(f"level {k}'s BatchNorm1d has {', '.join(off)}, the tree's "
                                 + ", ".join(f"{a.split()[0]} {getattr(ref_bn, a.split()[0])}" for a in off)
                                 + ": settings are not weights, so copying the tree's weights does not carry them")
                    return "; ".join(found)
    return "; ".join(found)


# ---- exercise 4: beat the lesson --------------------------------------------------------------------

BEAT_HINT = "more capacity (n_embd, n_hidden), AdamW with a cosine schedule (section 8), or both"


def beat_target(name: str, dev, target: float, *, problem: str = "") -> Result:
    """Whether `dev` is below `target` (`mmlib.checks.beat_target` with this lesson's hint); `problem`
    (`mmlib.checks.shares_parameters`) is a reason the run does not count."""
    return checks.beat_target(name, dev, target, hint=BEAT_HINT, problem=problem)
