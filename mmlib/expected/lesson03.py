"""Expected answers for lesson 03's exercises, each computed by a route of its own.

- `zero_init_learners`: which parameters of an all-zero MLP get a non-zero gradient, found with
  `torch.nn` modules (not the lesson's hand-written forward pass).
- `best_constant_loss`: the lowest loss any prediction that ignores the context can reach on a set
  of targets - the entropy of their frequencies (exercise 1's floor).
- `fold_batchnorm`: BatchNorm folded into the linear layer before it, by PyTorch's own
  `torch.nn.utils.fusion.fuse_linear_bn_weights` (exercise 2).
- `folded_logits_row`: the folded network's logits against eval-mode BatchNorm's, as a row even when
  W_fold or b_fold cannot be applied (exercise 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_linear_bn_weights

from mmlib.checks import Result, attempt, check, is_todo, todo_rows


def zero_init_learners(vocab_size: int, n_embd: int, block_size: int, n_hidden: int,
                       X: torch.Tensor, Y: torch.Tensor) -> set[str]:
    """Names (C, W1, b1, W2, b2) of the all-zero MLP's parameters whose gradient on (X, Y) is non-zero."""
    emb = nn.Embedding(vocab_size, n_embd)
    hidden = nn.Linear(block_size * n_embd, n_hidden)
    out = nn.Linear(n_hidden, vocab_size)
    named = {"C": emb.weight, "W1": hidden.weight, "b1": hidden.bias, "W2": out.weight, "b2": out.bias}
    for p in named.values():
        nn.init.zeros_(p)
    logits = out(torch.tanh(hidden(emb(X).flatten(1))))
    F.cross_entropy(logits, Y).backward()
    return {name for name, p in named.items() if p.grad is not None and bool((p.grad != 0).any())}


def best_constant_loss(Y: torch.Tensor, vocab_size: int) -> float:
    """Cross-entropy of the best context-free prediction on targets `Y`: the entropy of their
    frequencies (in nats). No model that ignores its input can do better on `Y`."""
    counts = torch.bincount(Y.flatten().long(), minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def fold_batchnorm(W: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
                   gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """`x @ W` followed by eval-mode BatchNorm, as one layer `x @ W_fold + b_fold`.

    `W` is (fan_in, fan_out) as in the course; PyTorch's routine wants (fan_out, fan_in), hence the
    transposes. Returns (W_fold (fan_in, fan_out), b_fold (fan_out,)).
    """
    w, b = fuse_linear_bn_weights(W.T.detach(), None, running_mean.detach(), running_var.detach(), eps,
                                  gamma.detach(), beta.detach())
    return w.detach().T.contiguous(), b.detach()


def folded_logits_row(name: str, emb: torch.Tensor, W_fold, b_fold, W2: torch.Tensor, b2: torch.Tensor,
                      want: torch.Tensor, atol: float = 1e-4) -> Result:
    """The row for `tanh(emb @ W_fold + b_fold) @ W2 + b2` against eval-mode BatchNorm's logits `want`.

    A W_fold or b_fold that cannot be applied (a transposed matrix, a wrong type) is a row that says
    so, never an exception that stops the notebook. `atol` 1e-4: the lesson's right answer differs by
    4.9e-6 at its defaults (the two routes round differently in float32 over 200 hidden units), and
    the W_fold and b_fold rows above it, at 1e-5, already catch every wrong fold the catalogue holds.
    """
    if is_todo(W_fold, b_fold):
        return todo_rows([name])[0]
    out = attempt(name, lambda: torch.tanh(emb @ W_fold + b_fold) @ W2 + b2,
                  what="tanh(emb @ W_fold + b_fold) @ W2 + b2",
                  hint=f"W_fold must be (block_size * n_embd, n_hidden) = {(emb.shape[1], W2.shape[0])} and "
                       f"b_fold ({W2.shape[0]},), the shapes of W1 and of one BatchNorm statistic")
    if not out.ok:
        return out.row
    return check(name, out.value, want, atol=atol, hint="the folded network is tanh(emb @ W_fold + b_fold) @ W2 + b2")
