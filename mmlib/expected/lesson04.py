"""Lesson 04 (backprop ninja): what the gradient checks compare against.

The lesson writes the forward pass of a 2-layer MLP with BatchNorm as small named steps and asks
for the gradient of the loss with respect to every one of them. The references here come from
autograd running its own copy of that forward pass (`forward_steps`), so a check never compares
the notebook's code with itself. `STEPS` is the table of those steps; `mmlib.gradcheck` turns it
into the hints a learner sees when a gradient is wrong.

`cross_entropy_grad` and `batchnorm_grad` are the closed forms of exercises 2 and 3, and
`manual_backward` the whole hand-written backward pass of exercise 4; the tests check all three
against autograd and against finite differences (`torch.autograd.gradcheck`) in float64.

`probe_backward` is exercise 4's guard: before a learner's `backward` trains a network, it runs once
on a batch of another size and its answer is inspected, so a missing or misshapen gradient, an
exception, or a `backward` that quietly uses the notebook's 32-example batch is explained in one
sentence instead of surfacing deep inside training.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from mmlib import checks
from mmlib.checks import TODO, Report
from mmlib.gradcheck import GradReport, Step, check_grads, tolerances

EPS = 1e-5
"""Added to the batch variance before the square root, as in `torch.nn.BatchNorm1d`."""

FLOAT32_MADE = ("a tensor made with torch.zeros(shape), torch.ones(shape), .float() or dtype=torch.float32 is float32 "
                "whatever the lesson's dtype; make it in the dtype of the tensors it meets: torch.zeros_like(x), "
                ".to(x.dtype) or dtype=x.dtype")
"""The fix for every answer that works in float32 only (the parameters cell's dtype = "float64" breaks it)."""

PARAMS = ("C", "W1", "b1", "bngain", "bnbias", "W2", "b2")

STEPS: tuple[Step, ...] = (
    Step(1, "emb", "emb = C[Xb]", ("C",)),
    Step(2, "embcat", "embcat = emb.view(emb.shape[0], -1)", ("emb",)),
    Step(3, "hprebn", "hprebn = embcat @ W1 + b1", ("embcat", "W1", "b1")),
    Step(4, "bnmeani", "bnmeani = hprebn.sum(0, keepdim=True) / n", ("hprebn",)),
    Step(5, "bndiff", "bndiff = hprebn - bnmeani", ("hprebn", "bnmeani")),
    Step(6, "bndiff2", "bndiff2 = bndiff**2", ("bndiff",)),
    Step(7, "bnvar", "bnvar = bndiff2.sum(0, keepdim=True) / (n - 1)", ("bndiff2",)),
    Step(8, "bnvar_inv", "bnvar_inv = (bnvar + eps)**-0.5", ("bnvar",)),
    Step(9, "bnraw", "bnraw = bndiff * bnvar_inv", ("bndiff", "bnvar_inv")),
    Step(10, "hpreact", "hpreact = bngain * bnraw + bnbias", ("bngain", "bnraw", "bnbias")),
    Step(11, "h", "h = torch.tanh(hpreact)", ("hpreact",)),
    Step(12, "logits", "logits = h @ W2 + b2", ("h", "W2", "b2")),
    Step(13, "logit_maxes", "logit_maxes = logits.max(1, keepdim=True).values", ("logits",)),
    Step(14, "norm_logits", "norm_logits = logits - logit_maxes", ("logits", "logit_maxes")),
    Step(15, "counts", "counts = norm_logits.exp()", ("norm_logits",)),
    Step(16, "counts_sum", "counts_sum = counts.sum(1, keepdim=True)", ("counts",)),
    Step(17, "counts_sum_inv", "counts_sum_inv = counts_sum**-1", ("counts_sum",)),
    Step(18, "probs", "probs = counts * counts_sum_inv", ("counts", "counts_sum_inv")),
    Step(19, "logprobs", "logprobs = probs.log()", ("probs",)),
    Step(20, "loss", "loss = -logprobs[range(n), Yb].mean()", ("logprobs",)),
)
"""The forward pass of the lesson, step by step; the notebook writes exactly these lines."""

INTERMEDIATES = tuple(s.out for s in STEPS if s.out != "loss")


def _check_batch(Xb: torch.Tensor, Yb: torch.Tensor) -> int:
    n = Xb.shape[0]
    if n < 2:
        raise ValueError(f"a batch needs at least 2 examples: BatchNorm's variance divides by n - 1, got n = {n}")
    if Yb.shape != (n,):
        raise ValueError(f"Yb must have shape ({n},) to match Xb, got {tuple(Yb.shape)}")
    return n


def forward_steps(params: dict[str, torch.Tensor], Xb: torch.Tensor, Yb: torch.Tensor,
                  eps: float = EPS) -> dict[str, torch.Tensor]:
    """Every intermediate of the lesson's forward pass, plus `loss`, as a dict keyed by name.

    Written independently of the notebook, in the same steps (the gradients are with respect to
    these very intermediates, so the steps themselves must match).
    """
    n = _check_batch(Xb, Yb)
    p = params
    v: dict[str, torch.Tensor] = {}
    v["emb"] = p["C"][Xb]                                        # (n, block_size, n_embd)
    v["embcat"] = v["emb"].reshape(n, -1)                         # (n, block_size * n_embd)
    v["hprebn"] = v["embcat"] @ p["W1"] + p["b1"]                 # (n, n_hidden)
    v["bnmeani"] = v["hprebn"].sum(0, keepdim=True) / n           # (1, n_hidden)
    v["bndiff"] = v["hprebn"] - v["bnmeani"]
    v["bndiff2"] = v["bndiff"] ** 2
    v["bnvar"] = v["bndiff2"].sum(0, keepdim=True) / (n - 1)      # Bessel's correction
    v["bnvar_inv"] = (v["bnvar"] + eps) ** -0.5
    v["bnraw"] = v["bndiff"] * v["bnvar_inv"]
    v["hpreact"] = p["bngain"] * v["bnraw"] + p["bnbias"]
    v["h"] = torch.tanh(v["hpreact"])
    v["logits"] = v["h"] @ p["W2"] + p["b2"]                      # (n, vocab_size)
    v["logit_maxes"] = v["logits"].max(1, keepdim=True).values
    v["norm_logits"] = v["logits"] - v["logit_maxes"]
    v["counts"] = v["norm_logits"].exp()
    v["counts_sum"] = v["counts"].sum(1, keepdim=True)
    v["counts_sum_inv"] = v["counts_sum"] ** -1
    v["probs"] = v["counts"] * v["counts_sum_inv"]
    v["logprobs"] = v["probs"].log()
    v["loss"] = -v["logprobs"][torch.arange(n), Yb].mean()
    return v


def factor_causes(n: int) -> dict[str, list[tuple[float, str]]]:
    """Constant factors that have one cause in this lesson's steps, by variable (batch size `n`).

    Step 7 divides by n - 1, so a dbndiff2 that is n times too large is n / (n - 1) where 1 / (n - 1)
    belongs (the Bessel factor of the variance, not of its derivative), not a missing division by n.
    """
    step7 = "step 7 `bnvar = bndiff2.sum(0, keepdim=True) / (n - 1)`: each entry's derivative is 1 / (n - 1)"
    return {"bndiff2": [(float(n), f"n / (n - 1) where 1 / (n - 1) belongs (n = {n}): Bessel's factor of the "
                                   f"variance, not its derivative; {step7}"),
                        (float((n - 1) ** 2), f"(n - 1) where 1 / (n - 1) belongs, a factor (n - 1)^2 = "
                                              f"{(n - 1) ** 2}; {step7}"),
                        ((n - 1) / n, f"1 / n where 1 / (n - 1) belongs (n = {n}); {step7}")]}


class References(dict):
    """name -> autograd's gradient, remembering what it was computed from: the batch `X`, `Y`, its
    size `n` and the `loss`, and `causes`, the factors with one cause in this lesson (`factor_causes`).
    `mmlib.gradcheck.check_grads` reads them to name a constant-factor error and to notice references
    left over from an earlier minibatch or forward pass."""

    def __init__(self, grads: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor, loss: torch.Tensor,
                 values: Mapping[str, torch.Tensor] | None = None, eps: float = EPS):
        super().__init__(grads)
        self.X, self.Y, self.loss, self.n = X.detach().cpu(), Y.detach().cpu(), float(loss), int(X.shape[0])
        self.causes = factor_causes(self.n)
        self.eps = eps
        self.values = {k: t.detach() for k, t in (values or {}).items()}   # forward values and parameters
        self.params = {k: self.values[k] for k in PARAMS if k in self.values}
        self._copies = {k: t.detach().clone() for k, t in grads.items()}

    def tampered(self) -> str:
        """Which references an answer cell changed in place (e.g. `g = dhpreact_given; g *= bngain`, where
        `dhpreact_given` is `ref["hpreact"]`), restored to autograd's values before anything is compared with them;
        "" when none changed. Without this, every later check and every re-run of the cell would read the changed
        values."""
        hit = checks.changed(self._copies, **self)
        with torch.no_grad():
            for k in hit:
                if self[k].shape == self._copies[k].shape:
                    self[k].copy_(self._copies[k])
                else:
                    self[k] = self._copies[k].clone()
        if not hit:
            return ""
        names = ", ".join(f'ref["{k}"]' for k in hit)
        return (f"your cell changed {names} in place: a name given to you (dhpreact_given is ref[\"hpreact\"]) is "
                "the reference tensor itself, so an in-place *=, += or indexing assignment on it changes autograd's "
                "gradient for every later check and every re-run (restored now); compute new tensors "
                "(g = bngain * dhpreact_given, not g *= bngain)")

    def diagnose(self, got: Mapping[str, Any], results: Sequence[checks.Result], *, atol: float, rtol: float,
                 cell: str = "", upstream: Mapping[str, Any] | None = None,
                 names: Mapping[str, str] | None = None) -> list[checks.Result]:
        """The rows of `check_grads`, each wrong one told what the answer computes (see `diagnose`)."""
        return diagnose(self, got, results, atol=atol, rtol=rtol, cell=cell, upstream=upstream, names=names)

    def stale(self, batch: tuple[torch.Tensor, torch.Tensor] | None = None,
              loss: torch.Tensor | float | None = None) -> str:
        """Why these references do not belong to the forward pass of `batch` and `loss` ("" if they do).

        When a learner re-runs the minibatch cell or the forward pass after the references were computed,
        every answer is compared with gradients of another batch: say so, and which cells to re-run,
        instead of reporting "wrong" rows.
        """
        X, Y, ref_loss = self.X, self.Y, self.loss
        same_loss = None
        if loss is not None and ref_loss is not None:
            a = float(loss.detach()) if torch.is_tensor(loss) else float(loss)
            b = float(ref_loss)
            same_loss = abs(a - b) <= 1e-5 * max(1.0, abs(b))
        if batch is not None and X is not None:
            Xb, Yb = batch
            same_batch = (tuple(Xb.shape) == tuple(X.shape) and tuple(Yb.shape) == tuple(Y.shape)
                          and torch.equal(Xb.detach().cpu(), X.cpu()) and torch.equal(Yb.detach().cpu(), Y.cpu()))
            if not same_batch:
                if same_loss is False:
                    return ("the references (ref) belong to an earlier minibatch than the forward pass: re-run the "
                            "cell `ref = autograd_grads(...)` (section 2), then this exercise")
                return ("the minibatch (Xb, Yb) changed after the forward pass and the references were computed: "
                        "re-run the forward-pass cell and the cell `ref = autograd_grads(...)` (section 2), then this "
                        "exercise")
        if same_loss is False:
            return (f"the forward pass's loss ({a:.6f}) is not the references' ({b:.6f}): the "
                    "parameters or the batch changed in between; re-run the forward-pass cell and the cell "
                    "`ref = autograd_grads(...)` (section 2), then this exercise")
        return ""


FUSED_HINTS = {
    "logits": "softmax along dim 1 (each row of logits is one example), minus 1 at each row's target "
              "(F.one_hot(Yb, vocab_size)), all divided by n because the loss is a mean over the batch",
    "hprebn": "the bracket has three terms - n * dhpreact, its sum over the batch (dim 0), and n / (n - 1) times bnraw "
              "times the batch sum of dhpreact * bnraw - and the prefactor bngain * bnvar_inv / n multiplies "
              "all three; "
              "compare each with the formula above (n / (n - 1) is Bessel's correction of step 7)",
}
"""Hints for the fused exercises 2 and 3: what the one expression is made of (the step-by-step hints
name forward steps 13-20 and 4-10, which the fused expressions skip)."""


def autograd_grads(params: dict[str, torch.Tensor], Xb: torch.Tensor, Yb: torch.Tensor,
                   eps: float = EPS) -> References:
    """Autograd's gradient of the loss with respect to every intermediate and every parameter.

    The parameters are copied, so the caller's tensors and their `.grad` are left alone, and the
    computation runs with gradients on even when called inside `torch.no_grad()`. The result is a
    dict that also remembers the batch, its size and the loss (`References`).
    """
    with torch.enable_grad():
        leaves = {k: params[k].detach().clone().requires_grad_(True) for k in PARAMS}
        v = forward_steps(leaves, Xb, Yb, eps)
        names = list(INTERMEDIATES) + list(PARAMS)
        tensors = [v[k] for k in INTERMEDIATES] + [leaves[k] for k in PARAMS]
        grads = torch.autograd.grad(v["loss"], tensors)
    values = {**{k: t.detach() for k, t in v.items()}, **{k: leaves[k].detach() for k in PARAMS}}
    return References({k: g.detach() for k, g in zip(names, grads)}, Xb, Yb, v["loss"].detach(), values, eps)


def cross_entropy_grad(logits: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """d(mean cross-entropy)/d(logits) in closed form: (softmax(logits) - one_hot(Y)) / n (exercise 2)."""
    n = logits.shape[0]
    return (F.softmax(logits, dim=1) - F.one_hot(Y, logits.shape[1]).to(logits.dtype)) / n


def batchnorm_grad(dhpreact: torch.Tensor, hprebn: torch.Tensor, bngain: torch.Tensor,
                   eps: float = EPS) -> torch.Tensor:
    """d(loss)/d(hprebn) through training-mode BatchNorm with Bessel's correction (exercise 3).

    With xhat the normalised batch, dy = bngain * dhpreact and s = (var + eps)**-0.5:
        dx = s * (dy - mean(dy) - xhat * sum(dy * xhat) / (n - 1))
    computed here from the batch statistics rather than copied from the lesson's expression.
    """
    n = hprebn.shape[0]
    mean = hprebn.mean(0, keepdim=True)
    var = hprebn.var(0, keepdim=True, unbiased=True)
    s = (var + eps).rsqrt()
    xhat = (hprebn - mean) * s
    dy = bngain * dhpreact
    return s * (dy - dy.mean(0, keepdim=True) - xhat * (dy * xhat).sum(0, keepdim=True) / (n - 1))


def manual_backward(params: dict[str, torch.Tensor], Xb: torch.Tensor, Yb: torch.Tensor,
                    eps: float = EPS) -> dict[str, torch.Tensor]:
    """Every parameter's gradient by hand, using the two closed forms (the answer to exercise 4).

    Used by the tests to check that the closed forms assemble into a full backward pass.
    """
    n = _check_batch(Xb, Yb)
    p = params
    with torch.no_grad():
        emb = p["C"][Xb]
        embcat = emb.reshape(n, -1)
        hprebn = embcat @ p["W1"] + p["b1"]
        mean = hprebn.mean(0, keepdim=True)
        var = hprebn.var(0, keepdim=True, unbiased=True)
        bnraw = (hprebn - mean) * (var + eps).rsqrt()
        h = torch.tanh(p["bngain"] * bnraw + p["bnbias"])
        logits = h @ p["W2"] + p["b2"]
        dlogits = cross_entropy_grad(logits, Yb)
        dh = dlogits @ p["W2"].T
        dhpreact = (1 - h**2) * dh
        dhprebn = batchnorm_grad(dhpreact, hprebn, p["bngain"], eps)
        dembcat = dhprebn @ p["W1"].T
        dC = torch.zeros_like(p["C"]).index_add_(0, Xb.reshape(-1), dembcat.reshape(-1, p["C"].shape[1]))
        return {
            "C": dC,
            "W1": embcat.T @ dhprebn,
            "b1": dhprebn.sum(0),
            "bngain": (bnraw * dhpreact).sum(0, keepdim=True),
            "bnbias": dhpreact.sum(0, keepdim=True),
            "W2": h.T @ dlogits,
            "b2": dlogits.sum(0),
        }


# ---- exercise 4's probe: a learner's backward, run once on a batch of another size before it trains ----

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
    attempted_nothing: bool = False   # backward was not run (earlier answers TODO) or still returns TODO
    values: Mapping[str, Any] | None = None   # the probe batch's forward values, for `diagnose_backward`
    changed: tuple[str, ...] = ()   # the params and cache entries backward changed in place
    float64: tuple[str, ...] = ()   # what backward does wrong on float64 parameters, and which gradients it concerns
    context: tuple[str, ...] = ()   # the same for the other worlds of `_worlds_problem`
    state: tuple[str, ...] = ()     # the same for what it does besides returning (`_state_problem`): said first

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
        compare what there is on the probe batch, so a learner sees which gradient is missing or misshapen.

        A gradient wrong on the probe batch only, right on every training batch, is named as such: it
        depends on the notebook's batch size or batch instead of its input's. A key `backward`
        returned that is not a parameter (`"db1"` for `"b1"`) is named in the row of the missing one.
        """
        absent: dict[str, str] = {}
        if self.ready:
            got = {k: torch.stack([self.got[k], *(s[k] for s in steps_got)]) for k in self.names}
            want = {k: torch.stack([self.want[k], *(s[k] for s in steps_want)]) for k in self.names}
            where = f"the probe batch and the first {len(steps_got)} training steps" if steps_got else "the probe batch"
            title = f"{title}: your backward vs autograd on {where}"
        elif isinstance(self.got, Mapping):
            got, want = {k: self.got.get(k, TODO) for k in self.names}, self.want
            title = f"{title}: your backward vs autograd on the probe batch of {self.batch}"
            extra = [k for k in self.got if k not in self.names]
            for k in self.names:
                if k not in self.got:
                    near = [e for e in extra if str(e).lstrip("d") == k or str(e).lower() == k.lower()]
                    absent[k] = (f"backward returned no {k!r}" + (
                        f" but {near[0]!r}, which is not a parameter name: the keys are the names in params, "
                        f"{k!r} and not 'd{k}'" if near else
                        f" (it returned {', '.join(map(repr, extra))}, which are not parameter names)"
                        if extra else ""))
        else:
            got, want = {k: TODO for k in self.names}, self.want
            title = f"{title}: your backward vs autograd"
        rep = check_grads(got, want, atol=atol, rtol=rtol, hints=hints, title=title, show=False)
        results = list(rep.results)
        if not self.ready and not self.attempted_nothing and not isinstance(self.got, Mapping):
            # backward raised or returned no dict: an answer was given, so every row says what it did
            results = [checks.Result(f"d{k}", "error", self.problem) for k in self.names]
        for i, k in enumerate(self.names):
            if k in absent:
                results[i] = checks.Result(f"d{k}", "error", absent[k])
            elif self.ready and steps_got and results[i].status == "wrong" and (why := self._per_batch_factor(
                    got[k], want[k], [self.batch, *(getattr(s, "n", None) for s in steps_want)], atol, rtol)):
                results[i] = checks.Result(f"d{k}", "wrong", why, results[i].hint)
            elif self.ready and steps_got and results[i].status == "wrong":
                ok = [bool((checks.as_tensor(got[k][j]) - checks.as_tensor(want[k][j])).abs().le(
                      atol + rtol * checks.as_tensor(want[k][j]).abs()).all()) for j in range(len(got[k]))]
                if not ok[0] and all(ok[1:]):
                    c = checks.scale_factor(checks.as_tensor(got[k][0]), checks.as_tensor(want[k][0]), atol, rtol)
                    results[i] = checks.Result(
                        f"d{k}", "wrong",
                        f"wrong only on the probe batch of {self.batch} (index 0)"
                        + (f", where it is {c:.6g} x autograd's" if c is not None else "")
                        + f", right on all {len(steps_got)} "
                        f"training batches: your gradient depends on a global batch size or batch (n, Xb, Yb "
                        f"of the exercises above) instead of the batch backward is given",
                        "take the batch from cache['X'] and the batch size from n = X.shape[0], never from the "
                        "notebook's globals")
        if self.state and isinstance(self.got, Mapping):   # it explains the rows: a probe-batch reading would not
            why, *which = self.state
            for i, k in enumerate(self.names):
                if k in which or (i == 0 and not any(n in which for n in self.names)):
                    results[i] = checks.Result(results[i].name, "wrong", why, "")
        elif self.ready and self.values is not None and isinstance(self.got, Mapping):
            why = diagnose_backward(self.got, self.values, self.changed)
            for i, k in enumerate(self.names):
                if results[i].status == "wrong" and why.get(k):
                    r = results[i]
                    results[i] = checks.Result(r.name, "wrong", f"{r.detail}; on the probe batch: {why[k]}", r.hint)
        for found in (self.float64, self.context):
            if found and isinstance(self.got, Mapping):
                why, *which = found
                i = next((i for i, k in enumerate(self.names) if k in which), 0)
                r = results[i]
                results[i] = checks.Result(r.name, "wrong", why if r.passed else f"{r.detail}; {why}", "")
        rep = GradReport(results, rep.title, max_abs_diff=rep.max_abs_diff)
        if show:
            checks.show(rep)
        return rep


    @staticmethod
    def _per_batch_factor(got: torch.Tensor, want: torch.Tensor, sizes: Sequence[int | None], atol: float,
                          rtol: float) -> str:
        """The cause when each stacked batch's gradient is autograd's times one constant ("" otherwise):
        the batch's own size on every batch (a missing division by n), or one factor on all of them."""
        factors = [checks.scale_factor(checks.as_tensor(g), checks.as_tensor(w), atol, rtol) for g, w in zip(got, want)]
        if any(c is None for c in factors) or len(factors) < 2:
            return ""
        if all(m and abs(c - m) <= 1e-3 * m for c, m in zip(factors, sizes)):
            return (f"{sizes[0]} x autograd's on the probe batch of {sizes[0]}, {sizes[1]} x on the training batches "
                    f"of {sizes[1]}: a missing division by the batch size n (the loss is a mean over the batch)")
        if all(abs(c - factors[0]) <= 1e-3 * abs(factors[0]) for c in factors):
            return (f"got {factors[0]:.6g} x autograd's on every batch: "
                    f"{checks.factor_cause(factors[0], sizes[1])}")
        return ""


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
                     unanswered, attempted_nothing=True)
    try:
        with torch.no_grad():
            cache = forward(params, X)[1]
            before = {**{f"params[{k!r}]": params[k].clone() for k in params if torch.is_tensor(params[k])},
                      **{f"cache[{k!r}]": t.clone() for k, t in cache.items() if torch.is_tensor(t)}}
            got = backward(params, cache, Y)
            now = {**{f"params[{k!r}]": params[k] for k in params}, **{f"cache[{k!r}]": t for k, t in cache.items()}}
            changed = tuple(k for k, t in before.items() if not (torch.is_tensor(now.get(k)) and now[k].shape == t.shape
                                                                 and torch.equal(now[k], t)))
            for k, t in before.items():   # the probe must not change the lesson's parameters
                if k.startswith("params") and k in changed:
                    params[k[8:-2]].copy_(t)
    except Exception as err:  # a learner's bug: explain it here rather than deep inside training
        return Probe(None, want, names, len(X),
                     f"Exercise 4: backward raised {checks.describe_error(err)} (call backward on a batch of "
                     f"{len(X)} in a new cell to see where)" + _raises_for_targets(backward, forward, params, X, Y))
    if got is TODO:
        return Probe(TODO, want, names, len(X),
                     "Exercise 4: `backward` still returns TODO. Fill it in (cell above) and run again.",
                     attempted_nothing=True)
    if got is None:
        problem = "Exercise 4: `backward` returned None: does it end with `return grads`?"
    elif not isinstance(got, Mapping):
        problem = f"Exercise 4: `backward` must return a dict name -> gradient, got {type(got).__name__}."
    else:
        missing = [k for k in names if k not in got]
        misshapen = [f"d{k} {tuple(got[k].shape) if torch.is_tensor(got[k]) else type(got[k]).__name__} "
                     f"(want {tuple(params[k].shape)})" for k in names
                     if k in got and not (torch.is_tensor(got[k]) and got[k].shape == params[k].shape)]
        unexpected = [repr(k) for k in got if k not in names]
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"wrong shape: {', '.join(misshapen)}"] if misshapen else []) + (
            [f"unexpected key{'s' if len(unexpected) > 1 else ''} {', '.join(unexpected)} (the keys are the "
             f"parameter names: {', '.join(names)}, without a 'd')"] if unexpected and missing else [])
        problem = (f"Exercise 4: backward's gradients do not fit the parameters on a batch of {len(X)}: "
                   + "; ".join(parts)) if parts else ""
    state = _state_problem(backward, forward, params, X, Y, names, got, changed) if not problem else ()
    float64 = _float64_problem(backward, forward, params, X, Y, names) if not problem and not state else ()
    raised, context = (_worlds_problem(backward, forward, params, X, Y, names, got, want)
                       if not problem and not float64 and not state else (False, ()))
    if raised:   # it would raise on one of the training batches too: say so here, not in a traceback from training
        problem = f"Exercise 4: {context[0]}"
    values = None
    if not problem:
        try:
            values = {**{k: t.detach() for k, t in forward_steps(dict(params), X, Y).items()},
                      **{k: params[k].detach() for k in PARAMS}, "n": len(X), "Xb": X, "Yb": Y, "eps": EPS}
        except Exception:  # noqa: BLE001 - parameters of another network: no diagnosis, the rows still compare
            values = None
    return Probe(got, want, names, len(X), problem, values=values, changed=changed, float64=float64, context=context,
                 state=state)


def _state_problem(backward: Callable, forward: Callable, params: Mapping[str, torch.Tensor], X: torch.Tensor,
                   Y: torch.Tensor, names: Sequence[str], got: Any, changed: Sequence[str]) -> tuple[str, ...]:
    """What `backward` does besides returning gradients, which a training loop would meet on its next step:
    parameters it changed in place (among `changed`; a cache changed in place is gone after the step), or other
    gradients from a second call on the same batch (state kept between calls). (sentence, the gradients
    concerned...), or () when neither."""
    if params_changed := [k for k in changed if k.startswith("params")]:
        return (f"backward changes {', '.join(params_changed)} in place (an in-place operation such as *=, += or "
                "square_() on a parameter it is given): every training step would then start from changed "
                "parameters; compute new tensors (x = x * y, not x *= y)",)
    if not isinstance(got, Mapping):
        return ()
    got = {k: t.clone() for k, t in got.items() if torch.is_tensor(t)}   # a buffer it returns may change in the call
    try:
        with torch.no_grad():
            again = backward(params, forward(params, X)[1], Y)
    except Exception as err:  # noqa: BLE001 - the learner's error is the finding
        return (f"backward runs once on the probe batch, but a second call on the same batch raises "
                f"{checks.describe_error(err)}: it keeps something between calls",)
    off = [k for k in names if torch.is_tensor(got.get(k)) and not (
        isinstance(again, Mapping) and torch.is_tensor(again.get(k)) and again[k].shape == got[k].shape
        and torch.allclose(again[k], got[k], rtol=1e-6, atol=1e-9))]
    if not off:
        return ()
    return (f"backward gives another {', '.join(f'd{k}' for k in off)} when called a second time on the same batch: "
            f"it keeps something between calls (a buffer made once, outside the function or on first use, and added "
            f"into without being zeroed): make every tensor it fills inside backward, on each call", *off)


ONE_HOT_WIDTH = ("the one-hot of the targets must be as wide as the vocabulary (C.shape[0] or logits.shape[1]), not as "
                 "the largest target in the batch: F.one_hot(Y, num_classes)")


def _raises_for_targets(backward: Callable, forward: Callable, params: Mapping[str, torch.Tensor], X: torch.Tensor,
                        Y: torch.Tensor) -> str:
    """When `backward` raised on (X, Y): "" unless it runs on the same inputs with targets that hold every character
    once (0, 1, ..., V-1, ...), which says that a size in it follows the largest target of the batch."""
    V = params["C"].shape[0]
    if len(X) < V or int(Y.max()) == V - 1:
        return ""
    try:
        with torch.no_grad():
            backward({k: t.clone() for k, t in params.items()}, forward(params, X)[1], torch.arange(len(X)).to(Y) % V)
    except Exception:  # noqa: BLE001 - it raises whatever the targets: the first message stands alone
        return ""
    return (f". It runs when the batch's targets include the last character ({V - 1}), which this batch's do not: "
            + ONE_HOT_WIDTH)


def _float64_problem(backward: Callable, forward: Callable, params: Mapping[str, torch.Tensor], X: torch.Tensor,
                     Y: torch.Tensor, names: Sequence[str]) -> tuple[str, ...]:
    """`backward` once more on float64 copies of the parameters (dtype = "float64" in the parameters cell): it must
    run and hand back float64 gradients. (sentence, the gradients concerned...), or () when it does, or when the
    parameters are float64 already."""
    if all(not torch.is_tensor(t) or t.dtype == torch.float64 for t in params.values()):
        return ()
    p64 = {k: (t.detach().double() if torch.is_tensor(t) and t.is_floating_point() else t) for k, t in params.items()}
    try:
        with torch.no_grad():
            got = backward(p64, forward(p64, X)[1], Y)
    except Exception as err:  # noqa: BLE001 - the learner's error is the finding
        return (f"backward runs in float32 but raises when the parameters are float64 (dtype = \"float64\" in the "
                f"parameters cell): {checks.describe_error(err)}; {FLOAT32_MADE}",)
    off = [k for k in names if isinstance(got, Mapping) and torch.is_tensor(got.get(k))
           and got[k].dtype != torch.float64]
    return ((f"with float64 parameters backward returns {', '.join(f'd{k} in {got[k].dtype}' for k in off)}: "
             f"{FLOAT32_MADE}",
             *off) if off else ())


def _worlds_problem(backward: Callable, forward: Callable, params: Mapping[str, torch.Tensor], X: torch.Tensor,
                    Y: torch.Tensor, names: Sequence[str], got: Any, want: Mapping[str, torch.Tensor]
                    ) -> tuple[bool, tuple[str, ...]]:
    """`backward` once more in four other worlds, when its gradients are right on the probe batch: a network that
    reads one more character (a context length typed in), hidden units whose batch variance is about eps (eps left
    out where bnvar_inv is recomputed), a batch whose targets are characters 0 to 4 only (a one-hot as wide as the
    largest target, not the vocabulary), and a vocabulary of three more characters (its size typed in). Returns
    (whether backward raised there, (sentence, gradients concerned...)), or (False, ()) when backward follows, or
    when there is nothing to compare (a wrong answer on the probe)."""
    def close(a: Any, b: torch.Tensor) -> bool:
        return (torch.is_tensor(a) and a.shape == b.shape
                and torch.allclose(a.to(b.dtype), b, **tolerances(b.dtype)))

    if not isinstance(got, Mapping) or not all(close(got.get(k), want[k]) for k in names):
        return False, ()
    if not all(close(autograd_grads(dict(params), X, Y)[k], want[k]) for k in names):
        return False, ()   # the notebook's eps is not EPS: autograd_grads below would not be the reference
    # float64 (where float32 round-off would hide nothing and flag much: eps-sized variances make large gradients),
    # unless backward fails there, which `_float64_problem` says already
    p64 = {k: (t.detach().double() if torch.is_tensor(t) and t.is_floating_point() else t) for k, t in params.items()}
    for where, hint, p, Xw, Yw in _probe_worlds(p64, X, Y):
        try:
            with torch.no_grad():
                cache = forward(p, Xw)[1]
        except Exception:  # noqa: BLE001 - the notebook's forward does not fit this world: nothing to compare
            continue
        try:
            with torch.no_grad():
                got_w = backward(p, cache, Yw)
        except Exception as err:  # noqa: BLE001 - the learner's error is the finding
            return True, (f"backward is right on the probe batch but raises {where}: {checks.describe_error(err)}; "
                          f"{hint}", *names)
        want_w = autograd_grads(p, Xw, Yw)
        off = [k for k in names if not (isinstance(got_w, Mapping) and close(got_w.get(k), want_w[k]))]
        if off:
            return False, (f"backward is right on the probe batch, but {where} its "
                           f"{', '.join(f'd{k}' for k in off)} differ{'s' if len(off) == 1 else ''} from autograd's: "
                           f"{hint}", *off)
    return False, ()


def _probe_worlds(params: Mapping[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor
                  ) -> list[tuple[str, str, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]]:
    """(where, what to look at, params, X, Y) of each world `_worlds_problem` tries, all valid inputs of the
    network: what differs from the probe is one size or one property of the batch."""
    g = torch.Generator().manual_seed(0)
    W1, C = params["W1"], params["C"]
    block = W1.shape[0] // C.shape[1] + 1
    wider = {**params, "W1": torch.cat([W1, torch.randn(C.shape[1], W1.shape[1], generator=g).to(W1) * W1.std()], 0)}
    # scale the first layer so each hidden unit's batch variance is about eps: eps then changes bnvar_inv by a lot
    var = forward_steps(dict(params), X, Y)["bnvar"]
    k = (EPS / var.mean()).sqrt().to(W1.dtype)
    quiet = {**params, "W1": W1 * k, "b1": params["b1"] * k}
    few = min(5, len(X))
    V, new = C.shape[0], min(3, len(X))
    larger = {**params, "C": torch.cat([C, torch.randn(new, C.shape[1], generator=g).to(C) * C.std()], 0),
              "W2": torch.cat([params["W2"], torch.randn(params["W2"].shape[0], new, generator=g).to(W1)
                               * params["W2"].std()], 1),
              "b2": torch.cat([params["b2"], torch.zeros(new).to(params["b2"])])}
    X_new, Y_new = X.clone(), Y.clone()
    X_new[:new, -1] = Y_new[:new] = torch.arange(V, V + new).to(Y)   # the new characters are read and predicted
    # the order matters: the first world that finds something names it, and in float64 a missing eps shows (a
    # little) in every world, so the world built to show it comes first
    return [(f"where the hidden units' batch variance is about eps = {EPS:g}", "where bnvar_inv is computed again, "
             "is eps inside the square root as in the forward pass, bnvar_inv = (bnvar + eps)**-0.5?", quiet, X, Y),
            (f"on a batch of {few} whose targets are the characters 0 to {few - 1} only", ONE_HOT_WIDTH, params,
             X[:few], torch.arange(few).to(Y)),
            (f"on a network that reads {block} characters instead of this notebook's context of {block - 1} "
             f"characters (W1 of shape {tuple(wider['W1'].shape)}, X of {block} "
             "columns)", "is the context length typed in? Read it from the tensors (X.shape[1], or "
             "W1.shape[0] // C.shape[1])", wider, torch.cat([X[:, :1], X], 1), Y),
            (f"on a network with a vocabulary of {V + new} characters instead of this notebook's {V} (C, W2 and b2 "
             f"larger, the new characters in X and Y)", "is the vocabulary's size typed in? Read it from the tensors "
             "(logits.shape[1], or C.shape[0])", larger, X_new, Y_new)]


# ---- exercises 1-3: diagnosing an answer from what it computes ----------------------------------------------
#
# A wrong gradient is diagnosed in four ways, none of which knows a list of mistakes:
# 1. locally: each step's local derivative (`local_backward`) applied to the learner's OWN upstream gradient. A row
#    that equals it follows from a wrong row above ("follows from dX"); only the root step is blamed.
# 2. by replaying the learner's cell on other batches (`replay_worlds`), with a random gradient arriving from the
#    cell above and every other gradient consistent with it: a batch of another size (a number written for n = 32),
#    hidden units whose variance is comparable to eps (eps left out), logits shifted by 1000 (an exp that overflows).
# 3. by replaying each answer on its own (`replay_target`), every gradient it reads replaced by a random one: what
#    each step contributes to it (missing, sign, factor, the wrong gradient read), also where the true value is zero
#    up to round-off on every batch (dlogit_maxes, step 13's share of dlogits).
# 4. memory: two gradients that are one tensor (an assignment without .clone(), then += on one of them).

REPLAY_N = 7
"""The batch size of the replays: not 32, so a number written for n = 32 (32, 31, 32/31) shows, and small enough
that n, n - 1, n / (n - 1) = 7/6, (n - 1)^2 = 36, 2 and 1/2 are all different factors (no two causes coincide)."""
SHIFT = 1000.0
"""The logits' shift in the third replay world: exp(1000) overflows even float64, yet no probability changes."""
VIEWS = {frozenset(("emb", "embcat"))}
"""Gradients that may share memory: step 2 only reshapes, so demb may be a view of dembcat."""


def local_backward(number: int, v: Mapping[str, Any], d: torch.Tensor) -> dict[str, torch.Tensor]:
    """Step `number`'s contribution to the gradient of each of its inputs, given the gradient `d` of its output.

    `v` holds the forward values (`forward_steps`), the parameters, `n`, `Xb`, `Yb` and `eps`. Written from the
    derivatives, independently of the notebook's answers.
    """
    n = v["n"]
    if number == 1:
        C = v["C"]
        return {"C": torch.zeros_like(C).index_add_(0, v["Xb"].reshape(-1), d.reshape(-1, C.shape[1]))}
    if number == 2:
        return {"emb": d.reshape(v["emb"].shape)}
    if number == 3:
        return {"embcat": d @ v["W1"].T, "W1": v["embcat"].T @ d, "b1": d.sum(0)}
    if number == 4:
        return {"hprebn": d.expand_as(v["hprebn"]) / n}
    if number == 5:
        return {"hprebn": d, "bnmeani": -d.sum(0, keepdim=True)}
    if number == 6:
        return {"bndiff": 2 * v["bndiff"] * d}
    if number == 7:
        return {"bndiff2": d.expand_as(v["bndiff2"]) / (n - 1)}
    if number == 8:
        return {"bnvar": -0.5 * (v["bnvar"] + v["eps"]) ** -1.5 * d}
    if number == 9:
        return {"bndiff": v["bnvar_inv"] * d, "bnvar_inv": (v["bndiff"] * d).sum(0, keepdim=True)}
    if number == 10:
        return {"bngain": (v["bnraw"] * d).sum(0, keepdim=True), "bnraw": v["bngain"] * d,
                "bnbias": d.sum(0, keepdim=True)}
    if number == 11:
        return {"hpreact": (1 - v["h"] ** 2) * d}
    if number == 12:
        return {"h": d @ v["W2"].T, "W2": v["h"].T @ d, "b2": d.sum(0)}
    if number == 13:
        logits = v["logits"]
        return {"logits": F.one_hot(logits.max(1).indices, logits.shape[1]).to(d.dtype) * d}
    if number == 14:
        return {"logits": d, "logit_maxes": -d.sum(1, keepdim=True)}
    if number == 15:
        return {"norm_logits": v["counts"] * d}
    if number == 16:
        return {"counts": d.expand_as(v["counts"])}
    if number == 17:
        return {"counts_sum": -v["counts_sum"] ** -2 * d}
    if number == 18:
        return {"counts": v["counts_sum_inv"] * d, "counts_sum_inv": (v["counts"] * d).sum(1, keepdim=True)}
    if number == 19:
        return {"probs": d / v["probs"]}
    dlogprobs = torch.zeros_like(v["logprobs"])
    dlogprobs[torch.arange(n), v["Yb"]] = -d / n
    return {"logprobs": dlogprobs}


STEP = {s.number: s for s in STEPS}
USERS = {name: [s for s in STEPS if name in s.inputs] for name in INTERMEDIATES + PARAMS}
"""name -> the steps that use it: its gradient is the sum of their contributions."""


def chain(v: Mapping[str, Any], top: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every gradient below the given ones (`top`: name -> gradient), by the local rules, in reverse step order."""
    grads = dict(top)
    for s in reversed(STEPS):
        if s.out in grads:
            for name, c in local_backward(s.number, v, grads[s.out]).items():
                if name not in top:
                    grads[name] = grads[name] + c if name in grads else c
    return grads


def _world(params: Mapping[str, torch.Tensor], n: int, seed: int, *, eps: float = EPS, small_variance: bool = False,
           shift: float = 0.0, extra_characters: int = 0) -> dict[str, Any]:
    """The forward values of a replay batch of `n` in float64 (the notebook's parameters; with `extra_characters`,
    a vocabulary that many characters larger: C, W2 and b2 get random rows or columns for them)."""
    g = torch.Generator().manual_seed(seed)
    p = {k: params[k].detach().to("cpu", torch.float64).clone() for k in PARAMS}
    if extra_characters:
        more = lambda t, dim: torch.randn(t.shape[:dim] + (extra_characters,) + t.shape[dim + 1:], generator=g,  # noqa: E731
                                          dtype=torch.float64) * t.std()
        p["C"], p["W2"], p["b2"] = (torch.cat([p["C"], more(p["C"], 0)]), torch.cat([p["W2"], more(p["W2"], 1)], 1),
                                    torch.cat([p["b2"], more(p["b2"], 0)]))
    V, block = p["C"].shape[0], params["W1"].shape[0] // p["C"].shape[1]
    Xb, Yb = torch.randint(0, V, (n, block), generator=g), torch.randint(0, V, (n,), generator=g)
    if small_variance:   # scale the first layer so each unit's batch variance is about eps: eps then matters
        var = forward_steps(p, Xb, Yb, eps)["bnvar"]
        k = (eps / var.mean()).sqrt()
        p["W1"], p["b1"] = p["W1"] * k, p["b1"] * k
    p["b2"] = p["b2"] + shift
    v = {k: t.detach() for k, t in forward_steps(p, Xb, Yb, eps).items()}
    return {**p, **v, "n": n, "Xb": Xb, "Yb": Yb, "eps": eps}


def _allclose(a: Any, b: torch.Tensor, rtol: float = 1e-4, scale: float = 0.0) -> bool:
    """`a` equals `b` up to float32 round-off relative to `b`'s size, or to `scale` (the size of the gradients it is
    computed from, where `b` is zero up to round-off); a learner's cell may make float32 tensors."""
    if not torch.is_tensor(a) or a.shape != b.shape:
        return False
    a = a.detach().to("cpu", torch.float64)
    if not torch.isfinite(a).all() or not torch.isfinite(b).all():
        return False
    scale = max(scale, float(b.abs().max()) if b.numel() else 0.0)
    return bool(((a - b).abs() <= 1e-6 * scale + 1e-300 + rtol * b.abs()).all())


def _namespace(v: Mapping[str, Any], grads: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """What an answer cell of exercises 1-3 sees, for a replay world: copies, so a cell that changes a tensor in
    place cannot change the world's own values."""
    ns = {"torch": torch, "F": F, "math": math, "nn": torch.nn}
    ns.update({k: (t.clone() if torch.is_tensor(t) else t) for k, t in v.items()})
    ns.update({f"d{k}": g.clone() for k, g in grads.items()})
    V = v["C"].shape[0]
    ns.update(vocab_size=V, batch_size=v["n"], block_size=v["Xb"].shape[1], n_embd=v["C"].shape[1],
              n_hidden_check=v["W1"].shape[1], n_hidden=v["W1"].shape[1], dt=torch.float64, device="cpu",
              ref={k: g.clone() for k, g in grads.items()},
              PARAMS=PARAMS, TODO=TODO)
    if "hpreact" in grads:
        ns["dhpreact_given"] = grads["hpreact"].clone()
    return ns


def _run(code: Any, ns: dict) -> None:
    """Run a learner's cell (source or compiled) in `ns`, quietly and without autograd; its errors propagate."""
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        exec(compile(code, "<your cell>", "exec") if isinstance(code, str) else code, ns)   # noqa: S102 - the learner's own cell, replayed


def _exec(code: Any, ns: dict) -> bool:
    """`_run`, False when the cell raises (a replay then says nothing)."""
    try:
        _run(code, ns)
    except Exception:  # noqa: BLE001 - a replay that cannot run diagnoses nothing
        return False
    return True


def _grad_names() -> set[str]:
    return {f"d{k}" for k in INTERMEDIATES + PARAMS}


def replay_target(code: str, v: Mapping[str, Any], target: str, given: Mapping[str, torch.Tensor]) -> Any:
    """Run `code` one top-level statement at a time; after each, every gradient name other than `target` is set
    back to a copy of `given`'s value (name -> tensor, names like 'dprobs'): `target` is then computed from the
    given gradients alone, whatever the cell computes for the others. None when the cell cannot be replayed."""
    statements = _statements(code)
    if statements is None:
        return None
    ns = _namespace(v, {k[1:]: t for k, t in given.items()})
    for stmt in statements:
        if not _exec(stmt, ns):
            return None
        for k, t in given.items():
            if k != target:
                ns[k] = t.clone()
    return ns.get(target)


@functools.lru_cache(maxsize=64)
def _statements(code: str) -> tuple | None:
    """The top-level statements of a cell, each compiled on its own (None when it does not parse)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    return tuple(compile(ast.Module([stmt], []), "<your cell>", "exec") for stmt in tree.body)


def _reads(code: str) -> set[str]:
    try:
        return {node.id for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Name)}
    except SyntaxError:
        return set()


def _tensor(x: Any) -> torch.Tensor | None:
    return x.detach().to("cpu", torch.float64) if torch.is_tensor(x) else None


def _factor(got: torch.Tensor, want: torch.Tensor) -> float | None:
    return checks.scale_factor(got, want, 1e-9 * float(want.abs().max()), 1e-4) if want.numel() else None


DERIVED = {"1 - h**2": lambda v: 1 - v["h"] ** 2, "bnvar + eps": lambda v: v["bnvar"] + v["eps"]}


def _times_what(part: torch.Tensor, right: torch.Tensor, v: Mapping[str, Any]) -> str:
    """'times counts_sum_inv' when `part` is `right` times a forward value (or its inverse, square), else ''."""
    if not _allclose(right, right) or float(right.abs().max()) == 0:
        return ""
    tensors = {k: t for k, t in v.items() if torch.is_tensor(t) and t.is_floating_point()}
    tensors.update({k: f(v) for k, f in DERIVED.items()})
    for p, word in ((1, "times {}"), (-1, "divided by {}"), (2, "times ({})**2")):
        for name, t in tensors.items():
            try:
                cand = right * t.to(torch.float64) ** p
            except RuntimeError:   # shapes that do not broadcast
                continue
            if cand.shape == part.shape and _allclose(part, cand):
                return word.format(name)
    return ""


def _describe_part(s: Step, x: str, part: torch.Tensor | None, right: torch.Tensor, v: Mapping[str, Any],
                   n: int, notebook_n: int | None = None) -> str:
    """What the answer's contribution of step `s` to d`x` is, next to the right one ('' when they agree)."""
    what = f"step {s.number} `{s.code}`"
    if part is None or part.shape != right.shape or _allclose(part, right):
        return ""
    if float(part.abs().max()) <= 1e-9 * max(float(right.abs().max()), 1e-300):
        return f"the contribution of {what} is missing"
    c = _factor(part, right)
    if c is not None:
        N = notebook_n or n
        fixed = [(n / N, f"{N} written as a number where n belongs (n = {n} here)"),
                 ((n - 1) / (N - 1), f"{N - 1} written as a number where n - 1 belongs (n = {n} here)"),
                 (N / n, f"{N} written as a number where 1 / n belongs (n = {n} here)"),
                 ((N - 1) / (n - 1), f"{N - 1} written as a number where 1 / (n - 1) belongs (n = {n} here)")
                 ] if N != n else []
        why = checks.factor_cause(c, n, [*fixed, *factor_causes(n).get(x, ())])
        return f"the contribution of {what} is {c:.4g} x the right one: {why}"
    times = _times_what(part, right, v)
    if times:
        return f"the contribution of {what} is the right one {times}: its local derivative is off by that factor"
    return f"the contribution of {what} is not d{s.out} times that step's local derivative"


def _positions(got: torch.Tensor, want: torch.Tensor, x: str, v: Mapping[str, Any]) -> str:
    """Where a wrong answer differs, when that has a structure: extra non-zero entries where the right one is
    zero, or (for dC) exactly the rows of characters that occur more than once in the batch."""
    bad = ~((got - want).abs() <= 1e-6 * float(want.abs().max()) + 1e-4 * want.abs())
    if x == "C" and bad.any():
        uses = torch.bincount(v["Xb"].reshape(-1), minlength=got.shape[0])
        wrong_rows = bad.any(1)
        if bool((wrong_rows <= (uses > 1)).all()):
            return (f"only rows of characters that occur more than once in the batch are wrong ({int(wrong_rows.sum())}"
                    f" of {int((uses > 1).sum())} such rows; every row used once is right): repeated indices are not "
                    "added up - an indexed assignment (dC[ix] = ..., dC[ix] += ... with repeated ix, index_put_ "
                    "without accumulate=True) keeps one of them; the loop with +=, index_add_ or a one-hot matrix "
                    "product adds all")
    if bad.any() and torch.allclose(got.reshape(-1).sort().values, want.reshape(-1).sort().values, rtol=1e-4,
                                    atol=1e-6 * float(want.abs().max())):
        return ("it holds exactly the right numbers in the wrong places: a reshape or transpose that reorders the "
                "entries (view/reshape back to the forward shape keeps their order)")
    zero = want == 0
    extra = bad & zero
    if zero.any() and extra.any():
        i = tuple(int(k) for k in extra.nonzero()[0])
        return (f"non-zero at {int(extra.sum())} entries where the right one is exactly zero "
                f"(e.g. [{', '.join(map(str, i))}]);"
                f" the right one is non-zero at {int((~zero).sum())} entries")
    return ""


class _Replay:
    """A learner's cell replayed on one world (batch): its values, which answers it gets wrong there, and why."""

    def __init__(self, code: str, v: dict[str, Any], top: str, names: Mapping[str, str], seed: int,
                 notebook_n: int | None = None):
        g = torch.Generator().manual_seed(seed)
        self.code, self.v, self.names, self.notebook_n = code, v, names, notebook_n
        if top == "loss":
            start = {"loss": torch.tensor(1.0, dtype=torch.float64)}
        else:
            like = forward_steps({k: v[k] for k in PARAMS}, v["Xb"], v["Yb"], v["eps"])[top] if top not in v else v[top]
            start = {top: torch.randn(like.shape, generator=g, dtype=torch.float64) / v["n"]}
        self.grads = chain(v, start)
        self.grads.pop("loss", None)
        ns = _namespace(v, self.grads)
        self.ran = _exec(code, ns)
        self.ns = ns
        self.changed = [k for k in (*INTERMEDIATES, *PARAMS) if self.ran and torch.is_tensor(ns.get(k))
                        and ns[k].shape == v[k].shape and not torch.equal(ns[k].to(torch.float64), v[k])]

    def value(self, x: str) -> Any:
        return self.ns.get(self.names.get(x, f"d{x}"))

    def dtype_problem(self, x: str) -> str:
        """The sentence for an answer that is not float64 on this float64 batch ("" when it is, or is no tensor)."""
        val = self.value(x)
        if not (self.ran and torch.is_tensor(val) and val.is_floating_point()) or val.dtype == torch.float64:
            return ""
        return (f"on a float64 batch (dtype = \"float64\" in the parameters cell; the check replays your cell that "
                f"way) your {self.names.get(x, f'd{x}')} is {val.dtype}, with float32's precision: {FLOAT32_MADE}")

    def wrong(self, x: str) -> bool:
        return self.ran and x in self.grads and not _allclose(self.value(x), self.grads[x], scale=self._scale(x))

    def _scale(self, x: str) -> float:
        return max([float(self.grads[s.out].abs().max()) for s in USERS.get(x, []) if s.out in self.grads] + [0.0])

    def float32_made(self, x: str) -> str:
        """The sentence for an answer that is float64 on this float64 batch and right to float32's precision, but not
        to float64's ("" otherwise): a tensor made in float32 inside the cell (torch.ones(shape) without dtype=) took
        part, so with dtype = "float64" the gradient keeps only float32's digits."""
        val = _tensor(self.value(x))
        if not self.ran or x not in self.grads or val is None or val.dtype != torch.float64 or self.wrong(x):
            return ""
        want = self.grads[x]
        scale = max(self._scale(x), float(want.abs().max()) if want.numel() else 0.0)
        if bool(((val - want).abs() <= 1e-11 * scale + 1e-9 * want.abs()).all()):
            return ""
        off = float(((val - want).abs() / want.abs().clamp_min(1e-300)).max())
        return (f"on a float64 batch (dtype = \"float64\" in the parameters cell; the check replays your cell that "
                f"way) your {self.names.get(x, f'd{x}')} is float64 but right only to float32's precision (relative "
                f"error up to {off:.1g}): {FLOAT32_MADE}")

    def follows(self, x: str, keys: Sequence[str]) -> list[str]:
        """The answers above d`x` (among `keys`) that are wrong on this batch and from which the replayed d`x`
        follows by the right local step ([] when it does not, or none is wrong)."""
        own, wrong_up = {}, []
        for s in USERS.get(x, []):
            u = _tensor(self.value(s.out)) if s.out in keys else None
            if u is None or s.out not in self.grads or u.shape != self.grads[s.out].shape:
                u = self.grads.get(s.out)
            elif not _allclose(u, self.grads[s.out], rtol=1e-9):
                wrong_up.append(f"d{s.out}")
            if u is None:
                return []
            own[s.out] = u
        local = sum(local_backward(s.number, self.v, own[s.out])[x] for s in USERS.get(x, []))
        return list(dict.fromkeys(wrong_up)) if wrong_up and _allclose(self.value(x), local) else []

    def parts(self, x: str) -> str:
        """Replay d`x` alone with random gradients everywhere else: which step's contribution is off, and how."""
        g = torch.Generator().manual_seed(1)
        given = {f"d{k}": torch.randn(self.grads[k].shape if k in self.grads else self.v[k].shape, generator=g,
                                      dtype=torch.float64) for k in INTERMEDIATES + PARAMS if k in self.v}
        target = f"d{x}"
        if x == "logprobs":   # computed from the loss alone: nothing to replace
            return ""
        full = replay_target(self.code, self.v, target, given)
        if not torch.is_tensor(full):
            return ""
        full = full.detach().to(torch.float64)
        zero = {k: torch.zeros_like(t) for k, t in given.items()}
        base = replay_target(self.code, self.v, target, {**zero, target: given[target]})
        ups = [s for s in USERS[x]]
        if torch.is_tensor(base) and base.shape == full.shape and float(base.abs().max()) > 1e-9 * float(
                full.abs().max()):
            return (f"d{x} is not zero when every gradient it is computed from is zero: it does not multiply by the "
                    f"gradient arriving from above (d{ups[0].out}, the chain rule)" if ups else "")
        said, seen = [], set()
        for s in ups:
            if s.out in seen or f"d{s.out}" not in given:
                continue
            seen.add(s.out)
            without = replay_target(self.code, self.v, target, {**given, f"d{s.out}": zero[f"d{s.out}"]})
            fits = torch.is_tensor(without) and without.shape == full.shape
            part = full - without.detach().to(torch.float64) if fits else None
            right = sum(local_backward(t.number, self.v, given[f"d{t.out}"])[x] for t in ups if t.out == s.out)
            why = _describe_part(s, x, part, right, self.v, self.v["n"], self.notebook_n)
            if why.endswith("times that step's local derivative"):
                why += self._forward_reads(x, s, given)
            if why:
                said.append(why)
        reads = _reads(self.code) & set(given)
        for w in sorted(reads - {f"d{s.out}" for s in ups} - {target}):
            without = replay_target(self.code, self.v, target, {**given, w: zero[w]})
            if torch.is_tensor(without) and without.shape == full.shape and not _allclose(without, full):
                into = " and ".join(f"d{s.out}" for s in ups) or "no gradient"
                said.append(f"d{x} is computed from {w}, but {x} is used only in "
                            + "; ".join(f"step {s.number} `{s.code}`" for s in ups)
                            + f", so it comes from {into} alone")
        return "; ".join(said)


    def _forward_reads(self, x: str, s: Step, given: Mapping[str, torch.Tensor]) -> str:
        """Which forward values d`x` depends on, next to those step `s`'s local derivative depends on: each
        forward tensor the cell names is perturbed in turn (e.g. 'it uses hpreact where the step uses h')."""
        g = torch.Generator().manual_seed(2)
        target, named = f"d{x}", _reads(self.code)
        base = replay_target(self.code, self.v, target, given)
        right = local_backward(s.number, self.v, given[f"d{s.out}"])[x]
        mine, theirs = [], []
        for k in (*INTERMEDIATES, *PARAMS):
            t = self.v.get(k)
            if not torch.is_tensor(t) or not t.is_floating_point():
                continue
            v2 = {**self.v, k: t * (1 + 0.5 * torch.rand(t.shape, generator=g, dtype=t.dtype))}
            if not _allclose(local_backward(s.number, v2, given[f"d{s.out}"])[x], right):
                theirs.append(k)
            if k in named and torch.is_tensor(base):
                out = replay_target(self.code, v2, target, given)
                if torch.is_tensor(out) and out.shape == base.shape and not _allclose(out, base.detach().double()):
                    mine.append(k)
        extra, missing = [k for k in mine if k not in theirs], [k for k in theirs if k not in mine]
        if not extra and not missing:
            return ""
        return (": it uses " + (", ".join(extra) or "no forward value") + " where the local derivative uses "
                + (", ".join(missing) or "none of them"))


def replay_failure(rep: _Replay, label: str) -> tuple[set[str], str]:
    """Why a cell that ran in the notebook raises when replayed on the world `rep` was built on (`label`): the names
    the failing statement assigns and a sentence with the error. A dtype error is named as such: every replay
    world is float64, as the parameters cell's dtype = "float64" makes the notebook's."""
    try:
        tree = ast.parse(rep.code)
    except SyntaxError:
        return set(), ""
    ns = _namespace(rep.v, rep.grads)
    for stmt in tree.body:
        try:
            _run(compile(ast.Module([stmt], []), "<your cell>", "exec"), ns)
        except Exception as err:  # noqa: BLE001 - the learner's error is what is reported
            assigned = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            line = ast.get_source_segment(rep.code, stmt) or ""
            line = line.splitlines()[0] if line else ""
            error = checks.describe_error(err)
            dtype = any(w in error for w in ("Double", "Float", "dtype", "scalar type"))
            why = (f"your cell ran on the notebook's float32 batch but raises on a float64 one (dtype = \"float64\" in "
                   f"the parameters cell; the check replays your cell that way): `{line}` gives {error} - "
                   f"{FLOAT32_MADE}" if dtype else
                   f"your cell ran on the notebook's batch but raises on {label}: `{line}` gives {error} - a size or "
                   "number written for the notebook's batch?")
            return assigned, why
    return set(), ""


def _top(code: str, keys: Sequence[str]) -> str:
    """The gradient arriving at the cell from above: the highest gradient the cell reads but does not answer."""
    read = _reads(code)
    order = list(INTERMEDIATES)
    tops = [k for k in order if f"d{k}" in read and k not in keys]
    if "dhpreact_given" in read or "ref" in read:
        tops.append("hpreact")
    return max(tops, key=order.index) if tops else "loss"


def worlds(ref: References) -> list[tuple[str, dict[str, Any]]]:
    """The replay batches, each named by what it changes (see `REPLAY_N` and `SHIFT` for the sizes)."""
    if getattr(ref, "_worlds", None) is None:
        ref._worlds = _worlds(ref)
    return ref._worlds


def _worlds(ref: References) -> list[tuple[str, dict[str, Any]]]:
    p = ref.params
    return [(f"a batch of {REPLAY_N} instead of {ref.n}", _world(p, REPLAY_N, 11, eps=ref.eps)),
            (f"a batch of {REPLAY_N} whose hidden units have a batch variance about eps = {ref.eps:g}",
             _world(p, REPLAY_N, 12, eps=ref.eps, small_variance=True)),
            (f"logits all shifted by {SHIFT:g} (which changes no probability)",
             _world(p, REPLAY_N, 13, eps=ref.eps, shift=SHIFT)),
            (f"a vocabulary of {p['C'].shape[0] + 3} characters instead of {p['C'].shape[0]}",
             _world(p, REPLAY_N, 14, eps=ref.eps, extra_characters=3))]


def _same_memory(a: Any, b: Any) -> bool:
    return (torch.is_tensor(a) and torch.is_tensor(b) and a.numel() > 0 and b.numel() > 0
            and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    return a.shape == b.shape and bool(((a - b).abs() <= atol + rtol * b.abs()).all())


def diagnose(ref: References, got: Mapping[str, Any], results: Sequence[checks.Result], *, atol: float, rtol: float,
             cell: str = "", upstream: Mapping[str, Any] | None = None,
             names: Mapping[str, str] | None = None) -> list[checks.Result]:
    """Each row of a check of exercises 1-3 told what the answer computes (the four ways at the top of this part).

    `got` and `results` are `check_grads`'s answers and rows (in the same order), `cell` the source of the answer
    cell ('' when unknown: then nothing is replayed), `upstream` the learner's gradients from the cells above
    (name -> tensor, e.g. {"logits": dlogits} for exercise 1b), `names` the variable of each answer where it is not
    d<name> (`dlogits_fused`): those are the fused answers of exercises 2 and 3.
    """
    keys, rows = list(got), list(results)
    names = {k: (names or {}).get(k, f"d{k}") for k in keys}
    upstream = {k: u for k, u in (upstream or {}).items() if torch.is_tensor(u)}
    if not ref.values:
        return rows
    if any(names[k] != f"d{k}" for k in keys):
        return _diagnose_fused(ref, got, rows, atol=atol, rtol=rtol, cell=cell, names=names)
    idx = {k: i for i, k in enumerate(keys)}

    def mark(k: str, why: str, *, replace: bool = False, hint: str | None = None) -> None:
        r = rows[idx[k]]
        if not replace and why in r.detail:   # the same finding in another replay world: said once
            return
        detail = why if replace or r.passed or not r.detail else f"{r.detail}; {why}"
        rows[idx[k]] = checks.Result(r.name, "wrong" if r.passed else r.status, detail,
                                     r.hint if hint is None else hint)

    # 4. memory: gradients that are one tensor
    pool = {**{k: u for k, u in upstream.items() if k not in got}, **{k: got[k] for k in keys}}
    aliased: set[str] = set()
    for a in keys:
        for b in pool:
            if a != b and frozenset((a, b)) not in VIEWS and _same_memory(got[a], pool[b]) and (b not in idx or
                                                                                               idx[b] > idx[a]):
                why = (f"d{a} and d{b} are one tensor in memory (one was assigned from the other without .clone()), so "
                       f"an in-place +=, -= or *= on one changes the other too")
                mark(a, why)
                aliased.add(a)
                if b in idx:
                    mark(b, why)
                    aliased.add(b)
    # 1. locally, on the notebook's batch: each wrong row against its own step applied to the learner's upstream
    v = {**ref.values, "n": ref.n, "Xb": ref.X.to(ref.values["C"].device), "Yb": ref.Y.to(ref.values["C"].device),
         "eps": ref.eps}
    roots = []
    for k in keys:
        r = rows[idx[k]]
        g = _tensor(got[k])
        if r.status != "wrong" or g is None or k not in USERS or not USERS[k]:
            if r.status == "wrong":
                roots.append(k)
            continue
        own, wrong_up = {}, []
        for s in USERS[k]:
            u = got.get(s.out) if s.out in got else upstream.get(s.out)
            ut = _tensor(u)
            want = ref[s.out].to("cpu", torch.float64) if s.out in ref else torch.tensor(1.0, dtype=torch.float64)
            if ut is None:
                ut = want
            elif ut.shape != want.shape or not _close(ut, want, atol, rtol):
                wrong_up.append(s)   # a misshapen one too: the learner's next step broadcasts what it gets
            own[s.out] = ut
        vv = {kk: (t.to("cpu", torch.float64) if torch.is_tensor(t) and t.is_floating_point() else
                   t.cpu() if torch.is_tensor(t) else t) for kk, t in v.items()}
        try:
            local = sum(local_backward(s.number, vv, own[s.out])[k] for s in USERS[k])
        except RuntimeError:   # a misshapen upstream that the step cannot use
            local = None
        if wrong_up and local is not None and _close(g, local, atol, rtol):
            steps = " and ".join(f"d{s.out} (step {s.number})" for s in dict.fromkeys(wrong_up))
            mark(k, f"{r.detail.split(';')[0]}; follows from your {steps}, wrong above: your step applied to it gives "
                    f"exactly this, so fix that first", replace=True, hint="")
        else:
            roots.append(k)
    for k in keys:   # a misshapen answer: which sum it is, when it is one
        if rows[idx[k]].status == "shape" and k in USERS:
            why = _which_sum(_tensor(got[k]), k, v, {s.out: _tensor(got[s.out]) if s.out in got else
                                                     _tensor(upstream.get(s.out)) for s in USERS[k]}, ref)
            if why:
                mark(k, why)
    if not cell:
        for k in roots:
            g, w = _tensor(got[k]), ref[k].to("cpu", torch.float64)
            if g is not None and g.shape == w.shape and "x the expected value" not in rows[idx[k]].detail:
                where = _positions(g, w, k, {**v, "Xb": ref.X})
                if where:
                    mark(k, where)
        return rows
    # 2. replayed on other batches: right here, wrong there; 3. each answer alone: which contribution is off
    # where the replay's random gradient enters: the highest the cell reads, or the one the cell above hands down
    # (exercises 1b-1d), whichever is higher: a cell that computes that one itself must not get it for free
    top = _top(cell, keys)
    if upstream:
        given = max(upstream, key=list(INTERMEDIATES).index)
        top = given if top == "loss" else max(top, given, key=list(INTERMEDIATES).index)
    done, first = set(), None
    for i, (label, w) in enumerate(worlds(ref)):
        rep = _Replay(cell, w, top, names, seed=21 + i, notebook_n=ref.n)
        if not rep.ran:
            assigned, why = replay_failure(rep, label)
            if why:
                hit = ([k for k in keys if names[k] in assigned] or [k for k in keys if rows[idx[k]].passed]
                       or keys[-1:])
                mark(hit[0], why, hint="")
            break
        if i == 0 and top in upstream and not _allclose(_tensor(rep.ns.get(f"d{top}")), rep.grads[top], rtol=1e-9):
            wrong = [k for k in keys if rep.wrong(k)] or keys[:1]
            mark(wrong[0], f"your cell replaces d{top}, the gradient the cell above hands it, with one it computes "
                           f"itself: right only while that is the true d{top}. Replayed with another d{top} handed "
                           f"down, your d{wrong[0]} does not follow it: start from the given d{top}", hint="")
            done.update(keys)
            break
        first = first or rep
        for k in keys:
            if i == 0 and (why := rep.dtype_problem(k)):
                mark(k, why)
        if rep.changed:
            for k in keys:
                if not rows[idx[k]].passed or k == keys[-1]:
                    mark(k, f"your cell changes {', '.join(rep.changed)} in place (an in-place operation such as "
                            f"square_() or += on a forward tensor): every later use of it reads the changed values")
                    break
        for k in keys:
            if k in done or not rep.wrong(k):
                continue
            done.add(k)
            if k in roots and k not in aliased:
                g, wt = _tensor(got[k]), ref[k].to("cpu", torch.float64)
                if "x the expected value" not in rows[idx[k]].detail:
                    why = rep.parts(k) if i == 0 else ""
                    where = _positions(g, wt, k, {**v, "Xb": ref.X}) if g is not None and g.shape == wt.shape else ""
                    if why or where:
                        mark(k, "; ".join(x for x in (why, where) if x))
                continue
            if not rows[idx[k]].passed:
                continue
            above = rep.follows(k, keys)
            if above:
                mark(k, f"right on the notebook's batch, wrong on {label}, where it follows from your "
                        f"{' and '.join(above)} (wrong there too, see above)")
                continue
            val = _tensor(rep.value(k))
            if i == 2 and val is not None and not torch.isfinite(val).all():
                why = ("inf or NaN there: exp overflows on large logits; subtract each row's maximum before exp "
                       "(steps 13-14), as F.softmax does")
            elif i == 1:
                why = ("wrong there and right where the variance is large: eps (added to the variance in step 8) is "
                       "left out somewhere, or used where it does not belong")
            elif i == 3:
                why = (f"wrong with a vocabulary of another size: is the notebook's vocab_size "
                       f"({ref.params['C'].shape[0]}) typed in? Read it from the tensors (logits.shape[1])")
            else:
                c = _factor(val, rep.grads[k]) if val is not None and val.shape == rep.grads[k].shape else None
                why = (f"there yours is {c:.4g} x the right one: a number written for n = {ref.n} (such as {ref.n} or "
                       f"{ref.n - 1}) where n or n - 1 belongs" if c is not None and i == 0 else
                       "your formula gives the right number on the notebook's batch only")
            parts = rep.parts(k)
            mark(k, f"right on the notebook's batch, wrong on {label}: {why}" + (f" ({parts})" if parts else ""))
    if first is not None:
        for k in keys:
            if k not in done and rows[idx[k]].passed and (why := first.float32_made(k)):
                done.add(k)
                mark(k, why)
    if first is None:
        return rows
    for k in _follows_ref(first, [k for k in keys if k not in done and rows[idx[k]].passed]):
        done.add(k)
        mark(k, f"right values, but your cell reads `ref`, autograd's own gradients, which the notebook keeps to check "
                f"yours: replayed with other values in `ref`, your d{k} changed. Compute it from the gradient the cell "
                f"above hands down and the forward pass's tensors", hint="")
    # 3. where a step's true contribution is zero up to round-off on every batch (step 13's, whose max cancels)
    rep, w = first, first.v
    for k in keys:
        if k in done or not rows[idx[k]].passed or k not in rep.grads:
            continue
        scale = max([float(rep.grads[k].abs().max())] + [float(rep.grads[s.out].abs().max()) for s in USERS[k]
                                                          if s.out in rep.grads])
        hidden = [s for s in USERS[k] if s.out in rep.grads and float(local_backward(s.number, w, rep.grads[s.out])[k]
                  .abs().max()) <= 1e-9 * scale]
        if not hidden:
            continue
        parts = rep.parts(k)
        if parts and "is computed from" not in parts:
            mark(k, f"right on this batch only because step {hidden[0].number}'s true contribution is zero up to "
                    f"round-off on every batch (the max cancels out of the softmax), so the check cannot see the "
                    f"formula; replayed with a random d{hidden[0].out}: {parts}")
    return rows


def _fit(got: torch.Tensor, terms: Sequence[torch.Tensor], dim: int | None = None,
         tol: float = 1e-5) -> torch.Tensor | None:
    """Coefficients a with got = sum_k a_k terms_k (per slice along `dim` when given: a per column), or None
    when no such combination reproduces `got` to round-off."""
    T = torch.stack([t.expand_as(got) for t in terms], -1).to(torch.float64)   # (..., k)
    y = got.to(torch.float64)
    if dim is None:
        A, b = T.reshape(-1, len(terms)), y.reshape(-1, 1)
    else:   # one small least-squares problem per column: (columns, rows, k)
        A, b = T.movedim(dim, 0).reshape(T.shape[dim], -1, len(terms)), y.movedim(dim, 0).reshape(T.shape[dim], -1, 1)
    coef = torch.linalg.lstsq(A, b, driver="gelsd").solution
    resid = (A @ coef - b).abs().max()
    if not torch.isfinite(resid) or resid > tol * float(b.abs().max()) + 1e-12:
        return None
    return coef.squeeze(-1)


def _coef_words(c: float, what: str, n: int, causes: Sequence[tuple[float, str]] = ()) -> str:
    if abs(c - 1) < 1e-3:
        return ""
    if abs(c) < 1e-6:
        return f"{what} is missing"
    if abs(c + 1) < 1e-3:
        return f"{what} has its sign flipped"
    return f"{what} is {c:.4g} x what the formula has: {checks.factor_cause(c, n, causes)}"


def _fused_logits(got: torch.Tensor, logits: torch.Tensor, Y: torch.Tensor, tol: float = 1e-5,
                  project: Callable[[torch.Tensor], torch.Tensor] | None = None) -> str:
    """Exercise 2's answer as a combination of the formula's two terms, softmax and one-hot (or their look-alikes)."""
    n, V = logits.shape
    logits = logits.to(torch.float64)
    softmaxes = {"softmax(logits, 1)": F.softmax(logits, 1), "softmax along dim 0 (over the batch, a column's "
                 "softmax where each row's belongs)": F.softmax(logits, 0),
                 "exp(logits) without dividing by each row's sum (not a softmax)": logits.exp(),
                 "log_softmax where softmax belongs": F.log_softmax(logits, 1)}
    hots = {"one_hot(Yb)": F.one_hot(Y.cpu(), V).to(torch.float64),
            "the one-hot of each row's largest logit (the prediction) where the target's belongs":
                F.one_hot(logits.argmax(1).cpu(), V).to(torch.float64)}
    for sname, P in softmaxes.items():
        for hname, H in hots.items():
            terms = [P.cpu(), H] if project is None else [project(P.cpu()), project(H)]
            coef = _fit(got, terms, tol=tol)
            if coef is None:
                continue
            a, b = float(coef[0]) * n, -float(coef[1]) * n
            said = [x for x in (sname, hname) if x not in ("softmax(logits, 1)", "one_hot(Yb)")]
            if abs(a - b) < 1e-3 * max(abs(a), 1e-9) and abs(a - 1) > 1e-3 and abs(a) > 1e-6:
                d = n / a
                named = f"vocab_size = {V}" if abs(d - V) < 1e-3 * V else f"{d:.4g}"
                said.append("both terms have their sign flipped" if abs(a + 1) < 1e-3 else
                            f"both terms are not divided by the batch size n = {n}" if abs(d - 1) < 1e-3 else
                            f"both terms are divided by {named} where the batch size n = {n} belongs")
            else:
                said += [x for x in (_coef_words(a, "the softmax term", n), _coef_words(
                    b, "the one-hot term (minus 1 at each row's target)", n)) if x]
            return "your answer is " + ("; ".join(said) if said else "the formula") if said else ""
    if project is not None:
        return "it is no combination of a softmax and a one-hot"
    rows = got.sum(1)
    return (f"it is no combination of a softmax and a one-hot; its rows sum to {float(rows.abs().max()):.3g} at most "
            f"where the right one's sum to 0 (each row's probabilities sum to 1, the one-hot to 1)")


def _fused_hprebn(got: torch.Tensor, v: Mapping[str, Any], dy: torch.Tensor, notebook_n: int | None = None,
                  project: Callable[[torch.Tensor], torch.Tensor] | None = None, tol: float = 1e-5) -> str:
    """Exercise 3's answer as a combination of its three terms, fitted per hidden unit: which term is off.
    `notebook_n`: on a replay batch, the notebook's batch size, so a factor written for it is named."""
    n = v["n"]
    N = notebook_n or n
    fixed = ([((N / (N - 1)) / (n / (n - 1)), f"{N}/{N - 1} written as a number where n / (n - 1) belongs")]
             if N != n else [])
    f64 = {k: v[k].to("cpu", torch.float64) for k in ("bngain", "bnvar_inv", "bnraw")}
    g, s, xhat, dy = f64["bngain"], f64["bnvar_inv"], f64["bnraw"], dy.to("cpu", torch.float64)
    names = ("the first term (n * dhpreact)", "the second term (- the batch sum of dhpreact)",
             "the third term (- n / (n - 1) * bnraw * the batch sum of dhpreact * bnraw)")
    for dim_words, dim in (("", 0), ("the sums run over dim 1 (each example's hidden units) where they run over the "
                                     "batch (dim 0); ", 1)):
        T = [g * s * dy, g * s * dy.sum(dim, keepdim=True) / n,
             g * s * xhat * (dy * xhat).sum(dim, keepdim=True) / (n - 1)]
        if project is not None:   # the answer is seen through a product (exercise 4: dW1 = embcat.T @ dhprebn)
            T = [project(t.expand_as(T[0])) for t in T]
        coef = _fit(got, T, dim=1, tol=tol)
        if coef is None:
            continue
        coef = coef * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)   # the formula's signs: all three are 1
        spread = (coef - coef.mean(0)).abs().max(0).values
        if bool((spread <= 1e-3 * coef.abs().mean(0).clamp_min(1.0)).all()):
            c = coef.mean(0).tolist()
            if max(c) - min(c) < 1e-3 * max(abs(x) for x in c) and abs(c[0] - 1) > 1e-3:
                why = checks.factor_cause(c[0], n)
                return dim_words + f"all three terms are {c[0]:.4g} x what the formula has: {why}"
            bessel = [((n - 1) / n, f"the third term lacks Bessel's factor n / (n - 1) (the biased variance's formula, "
                                    f"n = {n})"),
                      (((n - 1) / n) ** 2,
                       f"Bessel's factor upside down: (n - 1) / n where n / (n - 1) belongs (n = {n})")]
            said = [x for x in (_coef_words(c[0], names[0], n), _coef_words(c[1], names[1], n),
                                _coef_words(c[2], names[2], n, [*bessel, *fixed])) if x]
            return (dim_words + "; ".join(said)).rstrip("; ")
        # each unit's terms off by one factor that varies per unit: which per-unit quantity it is
        f = coef[:, 0]
        if bool(((coef - f[:, None]).abs() <= 1e-3 * f.abs()[:, None]).all()):
            for p in (-1, 1, 2, -2):
                for q in (0, -1, 1, 2, -2):
                    for pp in ((p, q), (0, p)):
                        cand = g.reshape(-1) ** pp[0] * s.reshape(-1) ** pp[1]
                        if torch.allclose(f, cand, rtol=1e-3):
                            parts = [f"bngain**{pp[0]}" if pp[0] else "", f"bnvar_inv**{pp[1]}" if pp[1] else ""]
                            what = " * ".join(x for x in parts if x)
                            miss = {"bngain**-1": "bngain is missing from the prefactor",
                                    "bnvar_inv**-1": "bnvar_inv is missing from the prefactor",
                                    "bnvar_inv**1": "bnvar_inv appears twice", "bngain**1": "bngain appears twice"}
                            return dim_words + f"every term of each hidden unit is off by {what}" + (
                                f": {miss[what]}" if what in miss else "")
            return dim_words + "each hidden unit's three terms are off by one factor that differs from unit to unit"
    if project is not None:
        return ""
    cols = got.sum(0).abs().max()
    return (f"it is no combination of the three terms; its columns sum to {float(cols):.3g} at most where the "
            f"right one's sum to 0 (the second term makes them)")


def _which_sum(g: torch.Tensor | None, x: str, v: Mapping[str, Any], own: Mapping[str, torch.Tensor | None],
               ref: References) -> str:
    """For an answer of the wrong shape: the sum over which dimension of its step's upstream gradient (or of the
    upstream times one forward value) it is, e.g. 'it is dlogits.sum(1): a sum over dim 1 where the right one sums
    over dim 0'."""
    if g is None:
        return ""
    for s in USERS[x]:
        u = own.get(s.out)
        u = ref[s.out].to("cpu", torch.float64) if u is None or s.out not in ref or u.shape != ref[s.out].shape else u
        factors = {"": None, **{f" * {k}": v[k].to("cpu", torch.float64) for k in (*s.inputs, s.out)
                                if k != x and torch.is_tensor(v.get(k)) and v[k].shape == u.shape}}
        for fname, f in factors.items():
            body = u if f is None else u * f
            for sign, sname in ((1, ""), (-1, "-")):
                for dims, how in (((0,), "dim 0"), ((1,), "dim 1"), (tuple(range(u.ndim)), "every dimension")):
                    for keep in (True, False):
                        if len(dims) > 1 and keep:
                            continue
                        cand = sign * body.sum(dims if len(dims) > 1 else dims[0], keepdim=keep)
                        if cand.shape == g.shape and bool(((g - cand).abs() <= 1e-6 * float(body.abs().max())
                                                           + 1e-4 * cand.abs()).all()):   # round-off of the sum
                            expr = f"{sname}(d{s.out}{fname}).sum({', '.join(map(str, dims))}" + (
                                ", keepdim=True)" if keep else ")")
                            return (f"it is {expr}: a sum over {how}, where step {s.number} `{s.code}` makes "
                                    f"d{x} the shape of {x}, {tuple(ref[x].shape)}")
    return ""


FUSED_INPUTS = {"logits": ("logits", "Yb"), "hprebn": ("dhpreact_given", "bngain", "bnvar_inv", "bnraw")}
"""The tensors the text of exercises 2 and 3 lets each one expression read (sizes such as n are numbers)."""
FUSED_REF = {"hprebn": ("hpreact",)}
"""The entries of `ref` an answer cell may read: exercise 3's cell starts with `dhpreact_given = ref["hpreact"]`."""


def _follows_ref(rep: _Replay, keys: Sequence[str]) -> list[str]:
    """The answers of a cell of exercise 1 that change when `ref` (autograd's gradients, there to check the
    learner's) holds other values: the cell of the replay `rep` run again with every entry of `ref` random. Reading
    `ref` only to compare or print changes nothing."""
    if "ref" not in _reads(rep.code):
        return []
    g = torch.Generator().manual_seed(6)
    ns = _namespace(rep.v, rep.grads)
    ns["ref"] = {kk: torch.randn(x.shape, generator=g, dtype=x.dtype) if torch.is_tensor(x) and x.is_floating_point()
                 else x for kk, x in ns["ref"].items()}
    if not _exec(rep.code, ns):
        return list(keys[:1])
    out = []
    for k in keys:
        base, again = _tensor(rep.value(k)), _tensor(ns.get(rep.names[k]))
        if base is not None and (again is None or again.shape != base.shape or not torch.allclose(
                again.double(), base.double(), rtol=1e-6, atol=1e-12)):
            out.append(k)
    return out


def _reads_beyond(rep: _Replay, k: str) -> str:
    """Which tensors outside `FUSED_INPUTS[k]` a fused answer reads ("" when none): the cell of the replay `rep`, which
    was right, run again with each tensor it names, one at a time, replaced by random numbers of its shape. An answer
    that changes with one of them reads it (the forward pass's probs, say): right while that tensor belongs to this
    batch, and not the one expression asked for."""
    cell, names = rep.code, rep.names
    base = _tensor(rep.value(k))
    if base is None:
        return ""
    g = torch.Generator().manual_seed(5)
    found = []
    for name in sorted(_reads(cell) - set(FUSED_INPUTS[k])):
        ns = _namespace(rep.v, rep.grads)
        t = ns.get(name)
        if torch.is_tensor(t) and t.is_floating_point():
            ns[name] = torch.randn(t.shape, generator=g, dtype=t.dtype)
        elif isinstance(t, Mapping) and any(torch.is_tensor(x) for x in t.values()):
            keep = FUSED_REF.get(k, ()) if name == "ref" else ()
            ns[name] = {kk: torch.randn(x.shape, generator=g, dtype=x.dtype)
                        if torch.is_tensor(x) and kk not in keep else x for kk, x in t.items()}
        else:
            continue
        out = _tensor(ns.get(names[k])) if _exec(cell, ns) else None
        if out is None or out.shape != base.shape or not torch.allclose(out.double(), base.double(), rtol=1e-6,
                                                                          atol=1e-12):
            found.append(name)
    if not found:
        return ""
    allowed = " and ".join(f"`{x}`" for x in FUSED_INPUTS[k])
    return (f"the value is right, but your cell reads {', '.join(f'`{x}`' for x in found)}: replayed with other "
            f"values there, your {names[k]} changed. The exercise asks for one expression from {allowed} (and sizes "
            "such as n): other tensors of the forward or backward pass hold this batch's values only, so the "
            "expression is not the formula the derivation gives")


def _diagnose_fused(ref: References, got: Mapping[str, Any], rows: list[checks.Result], *, atol: float, rtol: float,
                    cell: str, names: Mapping[str, str]) -> list[checks.Result]:
    """Exercises 2 and 3: the answer fitted as a combination of the formula's terms, on the notebook's batch and,
    replayed, on the batches of `worlds`."""
    v = {**ref.values, "n": ref.n, "Yb": ref.Y}
    for i, (k, r) in enumerate(zip(got, rows)):
        g = _tensor(got[k])
        if k not in ("logits", "hprebn") or g is None or r.status not in ("wrong", "exact", "close"):
            continue
        why = ""
        if r.status == "wrong":
            why = (_fused_logits(g, v["logits"].cpu(), ref.Y) if k == "logits" else
                   _fused_hprebn(g, v, ref["hpreact"]))
        elif cell:
            top = "hpreact" if k == "hprebn" else "loss"
            for j, (label, w) in enumerate(worlds(ref)):
                rep = _Replay(cell, w, top, names, seed=31 + j)
                if j == 0:
                    first = rep   # the notebook-like world: `_reads_beyond` replays its cell again
                if not rep.ran:
                    why = replay_failure(rep, label)[1]
                    break
                if j == 0 and (why := rep.dtype_problem(k)):
                    break
                if rep.changed:
                    why = (f"the value is right, but your cell changes {', '.join(rep.changed)} in place (an in-place "
                           "-=, /= or indexing assignment on a forward tensor, or on a name bound to one without "
                           ".clone()): every later use of it reads the changed values")
                    break
                if not rep.wrong(k):
                    continue
                val = _tensor(rep.value(k))
                if val is None or not torch.isfinite(val).all():
                    why = (f"right on the notebook's batch, inf or NaN on {label}: exp overflows on large logits; "
                           "subtract each row's maximum before exp, as F.softmax does" if j == 2 else
                           f"right on the notebook's batch, inf or NaN on {label}")
                    break
                fit = (_fused_logits(val, w["logits"], w["Yb"]) if k == "logits" else
                       _fused_hprebn(val, w, rep.grads["hpreact"], ref.n))
                extra = ("; wrong there and right where the variance is large: eps is left out (bnvar_inv includes "
                         "it; a standard deviation recomputed from hprebn does not)" if j == 1 else "")
                why = (f"right on the notebook's batch of {ref.n}, wrong on {label}: {fit}{extra}; a number written "
                       f"for n = {ref.n} where n belongs?" if j == 0 else f"right on the notebook's batch, wrong on "
                       f"{label}: {fit}{extra}")
                break
            else:
                why = _reads_beyond(first, k)
        if why:
            rows[i] = checks.Result(r.name, "wrong", why if r.passed else f"{r.detail}; {why}", r.hint)
    return rows


def _same(a: torch.Tensor, b: torch.Tensor, scale: float = 0.0) -> bool:
    """`a` equals `b` up to float32 round-off, relative to `b`'s size or to `scale` where `b` is about zero."""
    a, b = a.detach().to("cpu", torch.float64), b.detach().to("cpu", torch.float64)
    return a.shape == b.shape and bool(((a - b).abs() <= 1e-5 * max(scale, float(b.abs().max()))
                                        + 1e-4 * b.abs()).all())


def _step10_operator(p: str, got: torch.Tensor, v: Mapping[str, Any], dhpreact: torch.Tensor) -> str:
    """What a wrong dbngain or dbnbias is, read as an operator of step 10 `hpreact = bngain * bnraw + bnbias` ("" when
    none fits): the other parameter's gradient (the two swapped), or dhpreact times another forward tensor of the
    batch's shape where bnraw (dbngain) or nothing (dbnbias) belongs, summed over the batch."""
    right = local_backward(10, v, dhpreact)
    other = "bnbias" if p == "bngain" else "bngain"
    if _same(got, right[other]):
        return (f"d{p} is what d{other} should be: the two are swapped (step 10 `hpreact = bngain * bnraw + bnbias`: "
                "dbngain = (dhpreact * bnraw).sum(0, keepdim=True), dbnbias = dhpreact.sum(0, keepdim=True))")
    shape = v["bnraw"].shape
    for name, t in v.items():
        if name != "bnraw" and torch.is_tensor(t) and t.shape == shape and t.is_floating_point() and _same(
                got, (dhpreact * t).sum(0, keepdim=True).reshape(got.shape)):
            return (f"d{p} is (dhpreact * {name}).sum(0): in step 10 `hpreact = bngain * bnraw + bnbias` "
                    + ("bngain multiplies bnraw, the normalised input, not " + name if p == "bngain" else
                       "bnbias is added, so its gradient is dhpreact summed over the batch, with no factor"))
    return ""


def diagnose_backward(got: Mapping[str, torch.Tensor], values: Mapping[str, Any],
                      changed: Sequence[str] = ()) -> dict[str, str]:
    """Exercise 4: what a learner's `backward` computed, parameter by parameter, read along the chain.

    Its own dlogits is recovered from its dW2 (dW2 = h.T @ dlogits, and h.T has full column rank for a batch no
    larger than the hidden layer), and every later parameter's gradient is compared with what the right local steps
    give from the learner's OWN gradient above it: a row that equals it follows from the row above; the first that
    does not is where the mistake is, and it is described by which gradient it was computed from, or (BatchNorm)
    which term of the fused formula is off.
    """
    v = {k: (t.detach().to("cpu", torch.float64) if torch.is_tensor(t) and t.is_floating_point() else
             t.cpu() if torch.is_tensor(t) else t) for k, t in values.items()}
    G = {k: got[k].detach().to("cpu", torch.float64) for k in PARAMS if torch.is_tensor(got.get(k))}
    if len(G) < len(PARAMS):
        return {}
    h = v["h"]
    why: dict[str, str] = {}
    mutated = ", ".join(changed)
    if mutated:
        note = (f"backward changed {mutated} in place (an in-place operation such as square_(), += or *= on a "
                f"tensor it was given), so every later use of it read changed values; ")
        for k in PARAMS:
            why[k] = note
    # stage A: dlogits from dW2, then db2
    right_logits = cross_entropy_grad(v["logits"], v["Yb"])
    sol = torch.linalg.lstsq(h.T, G["W2"], driver="gelsd").solution   # h may repeat an example: rank < n
    if h.shape[0] >= h.shape[1]:   # as many examples as hidden units: every dW2 is h.T @ something; nothing to read
        dlogits = right_logits
    elif float((h.T @ sol - G["W2"]).abs().max()) <= 1e-3 * float(G["W2"].abs().max()):   # float32 round-off
        dlogits = sol
        if not _same(dlogits, right_logits):
            fit = _fused_logits(G["W2"], v["logits"], v["Yb"], tol=1e-4, project=lambda t: h.T @ t)
            why["W2"] = why.get("W2", "") + f"the dlogits your dW2 implies (dW2 = h.T @ dlogits) is wrong: {fit}"
        if not _same(G["b2"], dlogits.sum(0)):
            why["b2"] = "db2 is not your dlogits summed over the batch (dim 0), the dlogits your dW2 implies"
        elif not _same(dlogits, right_logits):
            why["b2"] = "follows from your dlogits (see dW2)"
    else:
        dlogits = right_logits
        why["W2"] = why.get("W2", "") + "dW2 is not h.T @ any dlogits: it multiplies another tensor than h"
    # stage B: dhpreact from the learner's dlogits, through steps 12 and 11
    dh = dlogits @ v["W2"].T
    dhpreact = (1 - h ** 2) * dh
    cands = {"dhpreact": dhpreact, "dh (the tanh's local derivative 1 - h**2 left out)": dh}
    for p in ("bngain", "bnbias"):
        if _same(G[p], local_backward(10, v, dhpreact)[p]):
            if not _same(dlogits, right_logits):
                why.setdefault(p, "follows from your dlogits (see dW2)")
            continue
        found = [name for name, X in cands.items() if _same(G[p], local_backward(10, v, X)[p])]
        why[p] = why.get(p, "") + (f"d{p} is computed from {found[0]} where dhpreact belongs" if found else
                                   _step10_operator(p, G[p], v, dhpreact) or
                                   f"d{p} does not follow from your dlogits through steps 12, 11 and 10")
    found = [X for X in cands.values() if all(_same(G[p], local_backward(10, v, X)[p]) for p in ("bngain", "bnbias"))]
    follows = "" if _same(dlogits, right_logits) and (not found or found[0] is dhpreact) else (
        "follows from your dlogits (see dW2)" if found and found[0] is dhpreact else
        "follows from your dhpreact (see dbngain)" if found else "")
    dhpreact = found[0] if found else dhpreact   # the learner's own dhpreact, where its dbngain and dbnbias say it
    # stage C: dhprebn through BatchNorm's backward, seen through dW1 = embcat.T @ dhprebn and db1
    dhprebn = batchnorm_grad(dhpreact, v["hprebn"], v["bngain"], v["eps"])
    embcat = v["embcat"]
    if follows and _same(G["W1"], embcat.T @ dhprebn):
        for k in ("W1", "b1", "C"):
            why.setdefault(k, follows)
    if not _same(G["W1"], embcat.T @ dhprebn):
        found = [name for name, X in (("dhpreact (BatchNorm's backward skipped)", dhpreact),
                                      ("dh (tanh's and BatchNorm's backward skipped)", dh))
                 if _same(G["W1"], embcat.T @ X)]
        if found:
            why["W1"] = why.get("W1", "") + f"dW1 is embcat.T @ {found[0]}, where dhprebn belongs"
        else:
            fit = _fused_hprebn(G["W1"], v, dhpreact, project=lambda t: embcat.T @ t, tol=1e-3)
            why["W1"] = why.get("W1", "") + f"the dhprebn your dW1 implies is off: {fit}" if fit else why.get("W1", "")
    for name, X in (("dhprebn", dhprebn), ("dhpreact (BatchNorm's backward skipped)", dhpreact)):
        if float((G["b1"] - X.sum(0)).abs().max()) <= 1e-5 * float(X.abs().max()):   # db1 is zero up to round-off
            if name != "dhprebn":
                why["b1"] = why.get("b1", "") + f"db1 is the batch sum of {name}, where dhprebn belongs"
            break
    else:
        why.setdefault("b1", "db1 is not the batch sum of the dhprebn your other gradients imply")
    # stage D: dC from dembcat = dhprebn @ W1.T, scattered to the rows of C
    if _same(G["W1"], embcat.T @ dhprebn) and not _same(G["C"], local_backward(1, v, (dhprebn @ v["W1"].T).reshape(
            v["emb"].shape))["C"]):
        right_C = local_backward(1, v, (dhprebn @ v["W1"].T).reshape(v["emb"].shape))["C"]
        where = _positions(G["C"], right_C, "C", v)
        why["C"] = why.get("C", "") + (where or "dC does not follow from your dhprebn (right, see dW1) through "
                                                "steps 3, 2 and 1")
    return {k: w.rstrip("; ") for k, w in why.items() if w.rstrip("; ")}
