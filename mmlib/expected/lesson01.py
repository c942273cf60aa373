"""Expected answers for lesson 01's exercises.

The lesson counts with Python loops over characters; these count with `build_dataset` and a
single `torch.bincount` over flattened n-gram indices, a different route to the same tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mmlib.data import build_dataset, split_words
from mmlib.vocab import Vocab


def ngram_counts(words: list[str], vocab: Vocab, n: int) -> torch.Tensor:
    """Counts of every n-gram, shape (V,) * n; contexts start with n-1 `.` tokens."""
    X, Y = build_dataset(words, vocab, n - 1)
    V = len(vocab)
    flat = torch.zeros(len(Y), dtype=torch.long)
    for j in range(n - 1):
        flat = flat * V + X[:, j]
    flat = flat * V + Y
    return torch.bincount(flat, minlength=V**n).view((V,) * n)


def ngram_nll(counts: torch.Tensor, words: list[str], vocab: Vocab, alpha: float = 1.0) -> float:
    """Average negative log-likelihood of `words` under `counts` with add-`alpha` smoothing."""
    n = counts.ndim
    P = (counts.double() + alpha)
    P = P / P.sum(-1, keepdim=True)
    X, Y = build_dataset(words, vocab, n - 1)
    return -P[(*X.T, Y)].log().mean().item()


def trigram(words: list[str], vocab: Vocab) -> dict[str, object]:
    """Exercise 1: trigram counts and their +1-smoothed average NLL over all words."""
    N3 = ngram_counts(words, vocab, 3)
    return {"N3": N3, "nll3": ngram_nll(N3, words, vocab, 1.0)}


def splits(words: list[str], vocab: Vocab) -> dict[str, float]:
    """Exercise 2: bigram and trigram models counted on train, scored on every split."""
    train, dev, test = split_words(words)
    out = {}
    for n in (2, 3):
        N = ngram_counts(train, vocab, n)
        for name, part in (("train", train), ("dev", dev), ("test", test)):
            out[f"{name}_nll{n}"] = ngram_nll(N, part, vocab, 1.0)
    return out


def tune_alpha(words: list[str], vocab: Vocab, alphas: Sequence[float]) -> dict[str, float]:
    """Exercise 3: the smoothing strength with the lowest trigram dev NLL, and its test NLL."""
    train, dev, test = split_words(words)
    N3 = ngram_counts(train, vocab, 3)
    dev_nll = [ngram_nll(N3, dev, vocab, a) for a in alphas]
    best = alphas[min(range(len(alphas)), key=dev_nll.__getitem__)]
    return {"best_alpha": best, "test_nll3": ngram_nll(N3, test, vocab, best)}


def onehot_logits(xs: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Exercise 4: what `F.one_hot(xs) @ W` computes, the slow way."""
    return F.one_hot(xs, W.shape[0]).to(W.dtype) @ W


def softmax_nll(logits: torch.Tensor, ys: torch.Tensor) -> float:
    """Exercise 5: the average NLL computed stably through log-softmax."""
    return -torch.log_softmax(logits.double(), dim=1)[torch.arange(len(ys)), ys].mean().item()
