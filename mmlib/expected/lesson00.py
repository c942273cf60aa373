"""Expected answers for lesson 00's exercises, each computed by a route of its own (math, PyTorch), and the
probes that run a learner's code against them.

- `probe_sigmoid`: a learner's `my_sigmoid(x: Value) -> Value` at several points: its value, the gradient it
  sends back (recovered as a local derivative and compared with the true one), and the same inside a graph
  that uses `x` twice (exercise 1).
- `probe_numerical_grad`: a learner's `numerical_grad(f, xs)` on functions whose gradients are known exactly
  (exercise 2).
- `probe_cross_entropy`: a learner's `my_cross_entropy(logits, target)` built from `Value`s, its loss and the
  gradients of the logits against PyTorch's `F.cross_entropy` (exercise 3).

Every probe runs the learner's code through `mmlib.checks.attempt`, so whatever it raises or returns becomes a
row that says what happened, and returns the same number of rows whatever the answer. A wrong row says what the
answer computes, measured on the probe's inputs: the local derivative it applies, the factor it is off by, the
class whose loss it returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from mmlib.checks import TODO, Result, attempt, check, describe_error, todo_rows

ATOL = 1e-8
"""How close is right for the engine's float64 arithmetic: a rule written out (s * (1 - s)) and one made of
the engine's own operations (1 / (1 + exp(-x))) agree to about 1e-16; every wrong answer of the catalogue is
off by more than 1e-2."""

SIGMOID_POINTS = (-3.0, -0.7, 0.0, 0.4, 1.3, 2.5)
UPSTREAM = 1.7     # the gradient the probe sends into my_sigmoid's output (not 1, so a missing * out.grad shows)
EARLIER = 0.25     # a gradient x already holds from another use (so a rule that replaces it, =, shows)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _backward_error(name: str, z) -> Result | None:
    """Run `z.backward()`; a row naming what it raised (a mistake in a learner's `_backward`), or None."""
    try:
        z.backward()
    except Exception as err:  # noqa: BLE001 - any exception in learner code is reported, not raised
        return Result(name, "error", f"backward() raised {describe_error(err)} (inside your _backward?)")
    return None


def _is_value(v, Value: type) -> bool:
    return isinstance(v, Value) or all(hasattr(v, a) for a in ("data", "grad", "_backward", "_prev"))


def _not_a_value(name: str, got, what: str) -> Result:
    return Result(name, "error", f"{what} returned {type(got).__name__}, not a Value: build the output as a Value "
                                 "(with x among its children), so that backward() can reach x")


def _rule_never_attached(out, Value: type) -> bool:
    """`out` still holds `Value`'s do-nothing default `_backward`: a rule was perhaps written, never attached."""
    default = getattr(getattr(Value(0.0), "_backward", None), "__code__", None)
    return default is not None and getattr(getattr(out, "_backward", None), "__code__", None) is default


NEVER_ATTACHED = ("your output's _backward is still Value's do-nothing default (lambda: None), so backward() runs "
                  "nothing for it and no gradient reaches x: the rule was defined but never attached; end with "
                  "out._backward = _backward")


def _local_derivative_cause(d: list[float], x: Sequence[float]) -> str:
    """What the local derivative `d` (recovered at the points `x`) is, when it is a function with a name."""
    s = [sigmoid(v) for v in x]
    named = [(s, "s, the output itself (the derivative of exp(x), not of sigmoid)"),
             ([1 - v * v for v in s], "1 - s^2 (tanh's rule, with s in place of tanh(x))"),
             ([v * (1 - v) for v in x], "x(1 - x): sigmoid's rule applied to the input x.data instead of the output s"),
             ([1 - v for v in s], "1 - s (the factor s missing)"),
             ([-v * (1 - v) for v in s], "-s(1 - s) (the sign flipped)"),
             ([1.0] * len(x), "1 everywhere (the rule of +, not of sigmoid)"),
             ([0.0] * len(x), "0 everywhere: no gradient reaches x")]
    for want, what in named:
        if all(abs(a - b) <= 1e-6 * (1 + abs(b)) for a, b in zip(d, want)):
            return f"the gradient your rule sends back is {what}, where sigmoid's is s(1 - s) with s = sigmoid(x)"
    return ""


def probe_sigmoid(fn: Callable, Value: type, points: Sequence[float] = SIGMOID_POINTS) -> list[Result]:
    """Three rows: `fn(Value(x)).data` against sigmoid(x); the gradient that reaches x through `fn` when x
    already holds a gradient and the output's is not 1; and x used twice in one graph, x made from a value u
    (so a rule that leaves x out of the output's children, or sets instead of adding, shows in u.grad).

    Each row probes all of `points`. The second row recovers the local derivative the rule applies,
    (x.grad - earlier) / upstream, and names it: a rule that replaces x.grad (= for +=), one that forgets
    the output's gradient (* out.grad), a flipped sign, or the derivative of another function.
    """
    names = ["my_sigmoid(x).data", "x.grad through my_sigmoid",
             "x used twice: dz/dx of z = my_sigmoid(x) + 3 * my_sigmoid(x)"]
    if fn is TODO:
        return todo_rows(names)
    rows = []
    got, want = [], []
    for p in points:
        out = attempt(names[0], fn, Value(p), what=f"my_sigmoid(Value({p}))")
        if not out.ok and out.row.status == "todo":
            return todo_rows(names)
        if not out.ok:
            return [out.row] + [Result(n, "error", "not checked: my_sigmoid must first run") for n in names[1:]]
        if not _is_value(out.value, Value):
            return [_not_a_value(n, out.value, f"my_sigmoid(Value({p}))") for n in names]
        got.append(out.value.data)
        want.append(sigmoid(p))
    rows.append(check(names[0], got, want, atol=ATOL, hint="sigmoid(x) = 1 / (1 + exp(-x)), computed from x.data"))

    grads, unattached = [], False
    for p in points:
        x = Value(p)
        x.grad = EARLIER
        out = attempt(names[1], fn, x, what=f"my_sigmoid(Value({p}))")
        if not out.ok:
            return rows + [out.row, Result(names[2], "error", "not checked: my_sigmoid must first run")]
        if err := _backward_error(names[1], out.value * UPSTREAM):
            return rows + [err, Result(names[2], "error", "not checked: backward() must first run")]
        grads.append(x.grad)
        unattached = unattached or _rule_never_attached(out.value, Value)
    true = [sigmoid(p) * (1 - sigmoid(p)) for p in points]
    want = [EARLIER + UPSTREAM * d for d in true]
    recovered = [(g - EARLIER) / UPSTREAM for g in grads]
    hint = "x.grad += s * (1 - s) * out.grad: add (+=), and multiply the local derivative by the output's gradient"
    if unattached and all(g == EARLIER for g in grads):
        hint = NEVER_ATTACHED
    elif all(abs(g - UPSTREAM * d) <= 1e-6 for g, d in zip(grads, true)):
        hint = ("x already held a gradient of 0.25 from another use, and after your rule it holds only this use's "
                "share: the rule replaces x.grad (=) where it must add to it (+=)")
    elif all(abs(g - d) <= 1e-6 for g, d in zip(grads, true)):
        hint = ("x.grad holds the local derivative s(1 - s) alone, and what x held before is gone: the rule must "
                "multiply by out.grad (the chain rule) and add (+=)")
    elif all(abs(g - EARLIER - d) <= 1e-6 for g, d in zip(grads, true)):
        hint = (f"the output's gradient was {UPSTREAM} and x received s(1 - s) times 1: the rule leaves out the "
                "factor out.grad (the chain rule: local derivative times the gradient arriving from above)")
    elif cause := _local_derivative_cause(recovered, points):
        hint = cause
    else:
        hint += ("; the local derivative your rule applies is " + ", ".join(f"{r:.4g}" for r in recovered[:3])
                 + f" at x = {', '.join(f'{p:g}' for p in points[:3])}; sigmoid's is "
                 + ", ".join(f"{t:.4g}" for t in true[:3]))
    rows.append(check(names[1], grads, want, atol=ATOL, hint=hint))

    twice = []
    for p in points:
        u = Value(p)
        x = u * 1.0       # x made from u, dz/dx read in u.grad: only an output that lists x among its children gets it
                          # there (backward() runs x's own rule only if x is in its order)
        first, second = fn(x), fn(x)
        if err := _backward_error(names[2], first + second * 3):
            return rows + [err]
        twice.append(u.grad)
    # The two uses send s(1 - s) and 3 s(1 - s): what arrives says which share was lost or how each was scaled
    causes = [(0.25, "only the first use's share reached x: a rule that sets x.grad (=) instead of adding (+=) lets "
                     "the last to run (the first use's) overwrite the other's"),
              (0.75, "only the second use's share reached x: a rule that sets x.grad (=) instead of adding (+=) lets "
                     "the last to run (the second use's) overwrite the other's"),
              (0.5, "each use sent s(1 - s), whatever its output's gradient (1 and 3): out.grad is left out")]
    hint = ("x feeds two sigmoids, so its gradient is the sum of both shares (4 s(1 - s) here): each rule must "
            "multiply by out.grad and add to x.grad (+=), never set it")
    if all(t == 0 for t in twice) and unattached:
        hint = NEVER_ATTACHED
    elif all(t == 0 for t in twice):
        hint = ("x's rule sent the gradient to x, but it went no further: the check makes x from another value "
                "(x = u * 1) and reads dz/dx where it arrives, in u.grad; x must be among the output's children "
                "(Value(s, (x,), ...)), or backward() never puts x in its order and never runs x's own rule")
    elif rows[1].status == "wrong" and all(abs(t - 4 * r) <= 1e-6 * (1 + abs(4 * r)) for t, r in zip(twice, recovered)):
        # both uses added up, each scaled by its output's gradient: the one thing wrong is the row above's
        causes = []
        hint = ("this follows from the local derivative of the row above: both shares arrive and add up (4 times "
                "your rule's local derivative), so with s(1 - s) in the rule this row is right too")
    rows.append(check(names[2], twice, [4 * d for d in true], atol=ATOL, causes=causes, hint=hint))
    return rows


# ---- exercise 2: a numerical gradient ----------------------------------------------------------------------

NUMERICAL_RTOL, NUMERICAL_ATOL = 1e-4, 1e-6
"""A numerical gradient is right when within 1e-4 of the true one, relatively: a central difference with h from
1e-6 to 1e-3 and a one-sided one with h near 1e-6 are; a one-sided difference with h = 1e-3 is off by about
h/2 times the second derivative (1e-3 relatively on these functions)."""

# (name, f, point, exact gradient): a polynomial, a mix of exp and tanh, one variable with a large second derivative
PROBES: tuple[tuple[str, Callable, list[float], Callable], ...] = (
    ("f(x) = x0^2 * x1 + 3 x1", lambda x: x[0] ** 2 * x[1] + 3 * x[1], [1.5, -2.0],
     lambda x: [2 * x[0] * x[1], x[0] ** 2 + 3]),
    ("f(x) = exp(x0) tanh(x1) + x2^3", lambda x: math.exp(x[0]) * math.tanh(x[1]) + x[2] ** 3, [0.3, -0.8, 1.2],
     lambda x: [math.exp(x[0]) * math.tanh(x[1]), math.exp(x[0]) * (1 - math.tanh(x[1]) ** 2), 3 * x[2] ** 2]),
    ("f(x) = x0^4", lambda x: x[0] ** 4, [2.0], lambda x: [4 * x[0] ** 3]),
)


def _step_cause(fn: Callable) -> str:
    """Whether `fn`, a numerical gradient that is close but not close enough, errs by truncation (h too big) or
    by rounding (h too small), measured on functions where the two errors are known exactly: on a line, where
    any h gives the slope up to rounding; on x^2, where a one-sided difference gives 2x + h (a central one 2x);
    on x^3, where a central difference gives 3x^2 + h^2. "" when neither shows."""
    def slope(f: Callable, x: float) -> float | None:
        try:
            return float(fn(f, [x])[0])
        except Exception:  # noqa: BLE001 - the probes' own rows report what the learner's function raises
            return None

    line = slope(lambda v: 3.0 * v[0] + 1.0, 1.3)
    if line is not None and abs(line - 3) > 1e-6 * 3:
        return (f"the error is rounding, h too small: on f(x) = 3x + 1, whose slope any h measures exactly but for "
                f"rounding, your function gives {line:.6g}, not 3. f(x + h) and f(x) agree in nearly all of a "
                "float's 16 digits, so their difference keeps only a few; that error is about 1e-16 |f| / h and "
                "grows as h shrinks: take a larger h, near 1e-6")
    square = slope(lambda v: v[0] ** 2, 1.0)
    if square is not None and abs(square - 2) > 1e-6 * 2:
        return (f"the error shrinks with h (truncation): h is too big. On f(x) = x^2 at x = 1 a one-sided difference "
                f"gives exactly 2 + h, and yours gives {square:.6g}, so your h is about {square - 2:.0e}; the error "
                "is about h/2 times f'' (the curvature): take h near 1e-6, or a central difference")
    cube = slope(lambda v: v[0] ** 3, 1.0)
    if cube is not None and cube - 3 > 1e-6 * 3:
        return (f"the error shrinks with h (truncation): h is too big. On f(x) = x^3 at x = 1 a central difference "
                f"gives exactly 3 + h^2, and yours gives {cube:.6g}, so your h is about {math.sqrt(cube - 3):.0e}; "
                "take h near 1e-6")
    return ""


def _numerical_cause(got: list[float], want: list[float], fn: Callable) -> str:
    """What `got` is, measured against the true gradient `want`, when it is something with a name."""
    if len(want) > 1 and all(abs(g - sum(want)) <= 1e-3 * (1 + abs(sum(want))) for g in got):
        return ("every entry is the sum of the true gradient's entries: your function nudges every coordinate at "
                "once (a directional derivative); nudge one coordinate at a time, the others as they were")
    ratios = [g / w for g, w in zip(got, want) if abs(w) > 1e-9]
    if ratios and max(ratios) - min(ratios) <= 1e-3 * max(abs(r) for r in ratios):
        c = sum(ratios) / len(ratios)
        if abs(c) < 1e-2:
            return (f"every entry is about {c:.1e} times the gradient: the difference f(x + h) - f(x) is the slope "
                    "times h, so divide it by h")
        if abs(c - 0.5) < 1e-3:
            return "every entry is half the gradient: a one-sided difference f(x + h) - f(x) is divided by h, not 2h"
        if abs(c - 2) < 1e-3:
            return "every entry is twice the gradient: a central difference f(x + h) - f(x - h) spans 2h, divide by 2h"
        if abs(c + 1) < 1e-3:
            return "every entry has the sign flipped: the slope is (f(x + h) - f(x)) / h, the later value first"
    rel = max(abs(g - w) / (abs(w) + 1e-12) for g, w in zip(got, want))
    if rel < 0.5 and (why := _step_cause(fn)):
        return f"off by up to {rel:.1e} relatively; {why}"
    return ""


def probe_numerical_grad(fn: Callable, probes=PROBES) -> list[Result]:
    """One row per probe function: `fn(f, xs)` against the exact gradient, tolerance `NUMERICAL_RTOL`.

    The row also fails (and says so) when `fn` changed `xs` in place: the caller's point would move.
    """
    names = [f"numerical_grad on {name} at {point}" for name, _, point, _ in probes]
    if fn is TODO:
        return todo_rows(names)
    rows = []
    for name, (_, f, point, exact) in zip(names, probes):
        xs = list(point)
        out = attempt(name, fn, f, xs, what=f"numerical_grad(f, {point})",
                      hint="f takes a list of floats and returns a float; return a list with one slope per entry")
        if not out.ok and out.row.status == "todo":
            return todo_rows(names)
        if not out.ok:
            rows.append(out.row)
            continue
        if xs != point:
            rows.append(Result(name, "wrong", f"after the call xs is {xs}, not {point}: your function changed the "
                                              "caller's list; nudge a copy (list(xs)), or put each entry back"))
            continue
        try:
            got = [float(v) for v in out.value]
        except (TypeError, ValueError):
            rows.append(Result(name, "error", f"expected a list of {len(point)} numbers (one slope per entry of xs), "
                                              f"got {type(out.value).__name__}"))
            continue
        want = exact(point)
        cause = _numerical_cause(got, want, fn) if len(got) == len(want) else ""
        rows.append(check(name, got, want, atol=NUMERICAL_ATOL, rtol=NUMERICAL_RTOL,
                          hint=cause or "for each i: (f(x with x[i] + h) - f(x)) / h, every other entry unchanged"))
    return rows


# ---- exercise 3: softmax and cross-entropy from Values ---------------------------------------------------

CE_CASES: tuple[tuple[tuple[float, ...], int], ...] = (
    ((1.0, -2.0, 0.5), 0),
    ((0.2, 3.0, -1.0, 0.0, 2.5), 3),
    ((-0.3, 0.8), 1),
    ((800.0, 802.0, 799.0), 2),     # large logits: exp(800) overflows a float, so the largest must be subtracted
)


OVERFLOW = ("exp of a logit this large overflows a float (the largest is about 1.8e308 = e^709.8). Softmax is "
            "unchanged when every logit is shifted by one number: subtract the largest logit, as a plain number "
            "(top = max(z.data for z in logits); z - top), before exp, so the largest exp is e^0 = 1")


def cross_entropy_reference(logits: Sequence[float], target: int) -> tuple[float, list[float]]:
    """PyTorch's `F.cross_entropy` of one row of logits (float64), and its gradient with respect to the logits."""
    z = torch.tensor([list(logits)], dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(z, torch.tensor([target]))
    loss.backward()
    return loss.item(), z.grad[0].tolist()


def _ce_cause(got: float, logits: Sequence[float], target: int) -> str:
    """Which quantity of the logits the loss `got` is, when it is not the target's -log p."""
    z = torch.tensor(list(logits), dtype=torch.float64)
    logp = torch.log_softmax(z, 0)

    def close(v: torch.Tensor) -> bool:
        return abs(got - float(v)) <= 1e-6 * (1 + abs(float(v)))

    if close(logp[target]):
        return "it is log p of the target, not -log p: the sign is missing"
    for j in range(len(z)):
        if j != target and close(-logp[j]):
            return f"it is -log p of class {j}, not of the target class {target}: index the probabilities with target"
    if close(torch.logsumexp(z, 0)):
        return "it is log(sum of exp(logits)): the target's logit is not subtracted (loss = logsumexp - logit[target])"
    if close(-logp.mean()):
        return "it is -log p averaged over every class: the loss is -log p of the target class only"
    if close(-z.softmax(0)[target]):
        return "it is -p of the target: the log is missing"
    return ""


def probe_cross_entropy(fn: Callable, Value: type, cases=CE_CASES) -> list[Result]:
    """Two rows per case: the loss `fn([Value(z) ...], target).data` against `F.cross_entropy`, and the logits'
    gradients after `loss.backward()` against PyTorch's. A gradient that is zero everywhere while the loss is
    right means the loss is not connected to the logits (a step went through `.data` or `math`)."""
    names = []
    for logits, target in cases:
        names += [f"loss of {list(logits)}, target {target}", f"d loss / d logits of {list(logits)}"]
    if fn is TODO:
        return todo_rows(names)
    rows = []
    for (logits, target), (n_loss, n_grad) in zip(cases, zip(names[::2], names[1::2])):
        xs = [Value(v) for v in logits]
        out = attempt(n_loss, fn, xs, target, what=f"my_cross_entropy(logits, {target})",
                      hint="a list of Values in, one Value out: exp each, divide by their sum, -log of the target's")
        if not out.ok and out.row.status == "todo":
            return todo_rows(names)
        if not out.ok:
            row = out.row
            if "OverflowError" in row.detail:
                row = Result(n_loss, "error", row.detail, OVERFLOW)
            rows += [row, Result(n_grad, "error", "not checked: the loss must first be computed")]
            continue
        if not _is_value(out.value, Value):
            rows += [_not_a_value(n, out.value, "my_cross_entropy(logits, target)") for n in (n_loss, n_grad)]
            continue
        want_loss, want_grad = cross_entropy_reference(logits, target)
        loss_row = check(n_loss, out.value.data, want_loss, atol=ATOL,
                         hint=_ce_cause(out.value.data, logits, target) or
                         "loss = -log(exp(z[target]) / sum of exp(z)): softmax, then -log of the target's probability")
        if err := _backward_error(n_grad, out.value):
            rows += [loss_row, err]
            continue
        got_grad = [x.grad for x in xs]
        grad_row = check(n_grad, got_grad, want_grad, atol=ATOL)
        if not loss_row.passed and not grad_row.passed:     # a wrong loss has a wrong gradient: one cause, named once
            worst = max(abs(g - w) for g, w in zip(got_grad, want_grad)) if len(got_grad) == len(want_grad) else None
            rows += [loss_row, Result(n_grad, "wrong", ("" if worst is None else f"max |difference| {worst:.4g}: ")
                                      + "this follows from the loss above, which is wrong",
                                      "fix the loss first; its gradient is then checked here")]
            continue
        if loss_row.passed and all(g == 0 for g in got_grad):
            hint = ("the loss is right but no gradient reaches the logits: a step went through .data or math.exp "
                    "(a float), which leaves the graph; use the Values' own operations (z.exp(), p.log())")
        elif loss_row.passed:
            hint = ("the loss is right but its gradient is not: part of it was computed from .data (a float, a "
                    "constant to backward()); only a shift of every logit by the same float is harmless")
        else:
            hint = ""
        rows += [loss_row, check(n_grad, got_grad, want_grad, atol=ATOL, hint=hint)]
    return rows
