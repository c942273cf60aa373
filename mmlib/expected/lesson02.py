"""Expected values for lesson 02 (the MLP), each computed by a route of its own.

The lesson builds its datasets with `mmlib.data.build_dataset`, looks embeddings up by indexing
and scores with `F.cross_entropy` in float32. The references here rebuild the contexts with a
plain Python loop, look embeddings up as one-hot rows times `C`, and score with a hand-written,
max-shifted log-softmax in float64. So a check that compares the two is not comparing the
lesson's code with itself, and a learner who reports a dev loss is checked against an
independent re-evaluation of the parameters they hand in.

`check_direct_connections` is exercise 3's whole check (it is more than one row of `check`), here
so that the notebook's check cell is one call and the tests can call it directly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from mmlib.checks import Report, Result, check, check_that, is_todo, show
from mmlib.validate import positive_int
from mmlib.vocab import Vocab

REQUIRED = ("C", "W1", "b1", "W2", "b2")
"""The parameters of the lesson's MLP; `W_direct` (exercise 3) is optional."""


def uniform_loss(vocab_size: int) -> float:
    """Cross-entropy of a prediction that gives each of `vocab_size` characters the same probability.

    Computed as the entropy -sum(p log p) of the uniform distribution (it equals ln(vocab_size)).
    """
    positive_int("vocab_size", vocab_size)
    p = torch.full((vocab_size,), 1.0 / vocab_size, dtype=torch.float64)
    return float(-(p * p.log()).sum())


def contexts(words: Sequence[str], vocab: Vocab, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (context, next character) pair, built one character at a time as in the lecture."""
    positive_int("block_size", block_size)
    xs, ys = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = vocab.stoi[ch]
            xs.append(list(context))
            ys.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(xs, dtype=torch.long).view(-1, block_size), torch.tensor(ys, dtype=torch.long)


def _shapes(params: Mapping[str, torch.Tensor], vocab_size: int) -> int:
    """Check the parameter shapes fit together; returns the block size they imply."""
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a dict of tensors {REQUIRED}, got {type(params).__name__}")
    missing = [k for k in REQUIRED if k not in params]
    if missing:
        raise ValueError(f"params lacks {missing}; it needs {list(REQUIRED)} (and optionally 'W_direct')")
    C, W1, b1, W2, b2 = (params[k] for k in REQUIRED)
    n_embd, n_in, n_hidden = C.shape[-1], W1.shape[0], W1.shape[-1]
    if C.ndim != 2 or C.shape[0] != vocab_size:
        raise ValueError(f"C should be ({vocab_size}, n_embd), got {tuple(C.shape)}")
    if W1.ndim != 2 or n_in % n_embd:
        raise ValueError(f"W1 should be (block_size * n_embd, n_hidden) with n_embd={n_embd}, got {tuple(W1.shape)}")
    expect = {"b1": (n_hidden,), "W2": (n_hidden, vocab_size), "b2": (vocab_size,)}
    if "W_direct" in params:
        expect["W_direct"] = (n_in, vocab_size)
    for k, shape in expect.items():
        if tuple(params[k].shape) != shape:
            raise ValueError(f"{k} should have shape {shape}, got {tuple(params[k].shape)}")
    return n_in // n_embd


@torch.no_grad()
def mlp_loss(params: Mapping[str, torch.Tensor], words: Sequence[str], vocab: Vocab, chunk: int = 8192) -> float:
    """Mean cross-entropy of the lesson's MLP with `params` on every next character of `words`.

    logits = tanh(emb @ W1 + b1) @ W2 + b2 (+ emb @ W_direct when the dict holds `W_direct`), where
    emb is the concatenated embeddings of the context; the block size is read from the shapes.
    Returns NaN while `params` is still the `TODO` placeholder, so a check cell can call it before
    the learner has answered; malformed parameters raise a ValueError that says which shape is off.
    """
    if is_todo(params):
        return float("nan")
    V = len(vocab)
    block_size = _shapes(params, V)
    P = {k: v.detach().to("cpu", torch.float64) for k, v in params.items()}
    X, Y = contexts(words, vocab, block_size)
    total = 0.0
    for s in range(0, len(Y), chunk):
        x, y = X[s : s + chunk], Y[s : s + chunk]
        onehot = torch.zeros(len(x), block_size, V, dtype=torch.float64)
        onehot.scatter_(2, x.unsqueeze(2), 1.0)
        emb = (onehot @ P["C"]).reshape(len(x), -1)
        logits = torch.tanh(emb @ P["W1"] + P["b1"]) @ P["W2"] + P["b2"]
        if "W_direct" in P:
            logits = logits + emb @ P["W_direct"]
        shifted = logits - logits.max(dim=1, keepdim=True).values
        logprobs = shifted - shifted.exp().sum(dim=1, keepdim=True).log()
        total -= logprobs.gather(1, y.unsqueeze(1)).sum().item()
    return total / len(Y)


def check_direct_connections(direct_params, direct_dev_loss, words: Sequence[str], vocab: Vocab, block_size: int,
                             n_embd: int = 10, *, title: str = "Exercise 3: direct connections",
                             display: bool = True) -> tuple[Report, dict[str, float]]:
    """Exercise 3: the shape of `W_direct`, the reported dev loss, and whether `W_direct` is used at all.

    `direct_params` is the dict of tensors handed in (a model's `state_dict()`; a `torch.nn.Module`
    is read through its `state_dict()`), `words` the dev names. The dev loss is re-evaluated by
    `mlp_loss` with and without `W_direct`: if removing it changes nothing, it was not trained or not
    used. Parameters that cannot be evaluated (wrong shapes) give failed rows that say why, not a
    traceback. Returns the report and the two re-evaluated losses (NaN when they could not be computed).
    """
    if isinstance(direct_params, torch.nn.Module):
        direct_params = direct_params.state_dict()
    want_shape = (block_size * n_embd, len(vocab))
    if is_todo(direct_params):
        shape = direct_params
    elif isinstance(direct_params, Mapping):
        shape = tuple(direct_params["W_direct"].shape) if "W_direct" in direct_params else None
    else:
        shape = type(direct_params).__name__
    shape_row = check_that("W_direct shape", shape, shape == want_shape, f"got {shape}, expected {want_shape}",
                           hint="one weight per (concatenated embedding number, output character) pair")
    try:
        with_direct = mlp_loss(direct_params, words, vocab)
        without = (direct_params if is_todo(direct_params)
                   else {k: v for k, v in direct_params.items() if k != "W_direct"})
        without_direct = mlp_loss(without, words, vocab)
        problem = None
    except (ValueError, AttributeError) as e:   # malformed parameters: a failed row instead of a traceback
        with_direct = without_direct = float("nan")
        problem = f"cannot evaluate direct_params: {e}"
    if problem:
        rows = [Result(name, "error", problem, hint="fix the shapes in direct_params first")
                for name in ("direct_dev_loss", "W_direct is used")]
    else:
        rows = [check("direct_dev_loss", direct_dev_loss, with_direct, atol=1e-4,
                      hint="report the dev loss of the model in direct_params, with its direct connections"),
                check_that("W_direct is used", direct_dev_loss, abs(with_direct - without_direct) > 1e-3,
                           f"dev loss {with_direct:.4f} with W_direct, {without_direct:.4f} with it removed",
                           hint="was W_direct trained? it must be a parameter of the model and used in its "
                                "forward pass")]
    rep = Report([shape_row, *rows], title)
    if display:
        show(rep)
    return rep, {"dev_loss_reevaluated": with_direct, "dev_loss_without_direct": without_direct}


def loss_floor(X: torch.Tensor, Y: torch.Tensor) -> float:
    """The lowest mean cross-entropy any model can reach on the examples (X, Y) (lesson 02's overfit-one-batch step).

    A model sees only the context, so examples with the same context and different next
    characters cannot all be predicted with certainty: the best it can do is give each context's
    next characters their frequencies within the batch. The floor is the mean of -log of those
    frequencies; it is 0 only when every context has a single next character.
    """
    if X.ndim != 2 or Y.shape != (X.shape[0],) or X.shape[0] == 0:
        raise ValueError(f"X must be (n, block_size) and Y (n,) with n >= 1, got {tuple(X.shape)} and {tuple(Y.shape)}")
    seen: dict[tuple[int, ...], dict[int, int]] = {}
    for x, y in zip(X.tolist(), Y.tolist()):
        nexts = seen.setdefault(tuple(x), {})
        nexts[y] = nexts.get(y, 0) + 1
    total = 0.0
    for nexts in seen.values():
        n = sum(nexts.values())
        total -= sum(k * math.log(k / n) for k in nexts.values())
    return total / X.shape[0]
