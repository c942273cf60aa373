"""Expected values for lesson 02 (the MLP), each computed by a route of its own.

The lesson builds its datasets with `mmlib.data.build_dataset`, looks embeddings up by indexing
and scores with `F.cross_entropy` in float32. The references here rebuild the contexts with a
plain Python loop, look embeddings up as one-hot rows times `C`, and score with a hand-written,
max-shifted log-softmax in float64. So a check that compares the two is not comparing the
lesson's code with itself, and a learner who reports a dev loss is checked against an
independent re-evaluation of the parameters they hand in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from mmlib.checks import is_todo
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
