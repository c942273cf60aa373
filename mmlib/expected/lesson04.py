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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from mmlib import checks
from mmlib.checks import TODO, Report
from mmlib.gradcheck import GradReport, Step, check_grads

EPS = 1e-5
"""Added to the batch variance before the square root, as in `torch.nn.BatchNorm1d`."""

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

    def __init__(self, grads: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor, loss: torch.Tensor):
        super().__init__(grads)
        self.X, self.Y, self.loss, self.n = X.detach().cpu(), Y.detach().cpu(), float(loss), int(X.shape[0])
        self.causes = factor_causes(self.n)

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
    return References({k: g.detach() for k, g in zip(names, grads)}, Xb, Yb, v["loss"].detach())


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
            got = backward(params, forward(params, X)[1], Y)
    except Exception as err:  # a learner's bug: explain it here rather than deep inside training
        return Probe(None, want, names, len(X),
                     f"Exercise 4: backward raised {checks.describe_error(err)} (call backward on a batch of "
                     f"{len(X)} in a new cell to see where)")
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
    return Probe(got, want, names, len(X), problem)
