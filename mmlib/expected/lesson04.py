"""Lesson 04 (backprop ninja): what the gradient checks compare against.

The lesson writes the forward pass of a 2-layer MLP with BatchNorm as small named steps and asks
for the gradient of the loss with respect to every one of them. The references here come from
autograd running its own copy of that forward pass (`forward_steps`), so a check never compares
the notebook's code with itself. `STEPS` is the table of those steps; `mmlib.gradcheck` turns it
into the hints a learner sees when a gradient is wrong.

`cross_entropy_grad` and `batchnorm_grad` are the closed forms of exercises 2 and 3, and
`manual_backward` the whole hand-written backward pass of exercise 4; the tests check all three
against autograd and against finite differences (`torch.autograd.gradcheck`) in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmlib.gradcheck import Step

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


class References(dict):
    """name -> autograd's gradient, remembering what it was computed from: the batch `X`, `Y`, its
    size `n` and the `loss`. `mmlib.gradcheck.check_grads` reads them to name a constant-factor error
    by the batch size and to notice references left over from an earlier minibatch or forward pass."""

    def __init__(self, grads: dict[str, torch.Tensor], X: torch.Tensor, Y: torch.Tensor, loss: torch.Tensor):
        super().__init__(grads)
        self.X, self.Y, self.loss, self.n = X.detach().cpu(), Y.detach().cpu(), float(loss), int(X.shape[0])


FUSED_HINTS = {
    "logits": "softmax along dim 1 (each row of logits is one example), minus 1 at each row's target "
              "(F.one_hot(Yb, vocab_size)), all divided by n because the loss is a mean over the batch",
    "hprebn": "the bracket has three terms - n * dhpreact, its sum over the batch (dim 0), and n / (n - 1) times bnraw "
              "times the batch sum of dhpreact * bnraw - and the prefactor bngain * bnvar_inv / n multiplies all three; "
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
