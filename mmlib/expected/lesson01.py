"""Expected answers for lesson 01's exercises.

The lesson counts with Python loops over characters; these count with `build_dataset` and a
single `torch.bincount` over flattened n-gram indices, a different route to the same tensor.
"""

from __future__ import annotations

import ast
import functools
import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from mmlib.checks import (
    TODO,
    Result,
    check,
    check_that,
    closer_than_tolerance,
    explain,
    is_device_error,
    replay,
    rows_of,
)
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


def tune_alpha(words: list[str], vocab: Vocab, alphas: Sequence[float]) -> dict[str, Any]:
    """Exercise 3: the smoothing strength with the lowest trigram dev NLL, and its test NLL; also every alpha's dev
    NLL (`dev_nll`) and the test NLL at any alpha (`test_nll_at`), for the check's replay on other alphas."""
    train, dev, test = split_words(words)
    N3 = ngram_counts(train, vocab, 3)
    dev_nll = {a: ngram_nll(N3, dev, vocab, a) for a in dict.fromkeys(alphas)}
    best = min(dev_nll, key=dev_nll.get)   # the first of equals, in the list's order
    return {"best_alpha": best, "test_nll3": ngram_nll(N3, test, vocab, best), "dev_nll": dev_nll,
            "test_nll_at": lambda a: ngram_nll(N3, test, vocab, a)}


def onehot_logits(xs: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Exercise 4: what `F.one_hot(xs) @ W` computes, the slow way."""
    return F.one_hot(xs, W.shape[0]).to(W.dtype) @ W


def softmax_nll(logits: torch.Tensor, ys: torch.Tensor) -> float:
    """Exercise 5: the average NLL computed stably through log-softmax."""
    return -torch.log_softmax(logits.double(), dim=1)[torch.arange(len(ys)), ys].mean().item()


# ---- what a wrong answer computes: the same quantities under the definitions a learner might use ---------------
#
# Each function below yields (description, value) pairs for `mmlib.checks.explain`, most plausible first: one
# choice differing from the lesson's definition, then two. A description names only the choices that differ.

class Windows:
    """Every window of n ids of every word padded with n start and 2 end tokens, counted once, so that the
    n-gram counts under any padding up to that (fewer start or end tokens) are one masked `bincount`."""

    def __init__(self, words: Sequence[str], vocab: Vocab, n: int):
        self.n, self.V, self.n_words = n, len(vocab), len(words)
        seqs = [[0] * n + vocab.encode(w) + [0] * 2 for w in words]
        flat = torch.tensor([i for s in seqs for i in s], dtype=torch.long)
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        per_word = lengths - n + 1
        self.word = torch.repeat_interleave(torch.arange(len(seqs)), per_word)
        start = torch.cumsum(per_word, 0) - per_word
        self.pos = torch.arange(len(self.word)) - start[self.word]            # window offset in its padded word
        self.end = (lengths - n - 2)[self.word] + n                           # where the word's own ids end
        first = (torch.cumsum(lengths, 0) - lengths)[self.word] + self.pos
        G = flat[first[:, None] + torch.arange(n)]
        code = torch.zeros(len(G), dtype=torch.long)
        for j in range(n):
            code = code * self.V + G[:, j]
        self.code = code

    def mask(self, starts: int, ends: int) -> torch.Tensor:
        return (self.pos >= self.n - starts) & (self.pos + self.n <= self.end + ends)

    def counts(self, starts: int, ends: int) -> torch.Tensor:
        """(V,) * n counts of the n-grams with `starts` start tokens and `ends` end tokens."""
        return torch.bincount(self.code[self.mask(starts, ends)], minlength=self.V**self.n).view((self.V,) * self.n)


def _padding(n: int, starts: int, ends: int) -> str:
    parts = []
    if starts != n - 1:
        parts.append(f"{starts} start token{'s' if starts != 1 else ''} ('.') in front instead of {n - 1}")
    if ends != 1:
        parts.append(f"{ends} end tokens behind instead of one" if ends else "no end token behind the word")
    return ", ".join(parts)


PADDINGS = [(s, e) for s in range(4) for e in range(3)]
"""(start tokens, end tokens) tried: the lesson's n - 1 and 1 first."""


def _paddings(n: int) -> list[tuple[int, int]]:
    return sorted(PADDINGS, key=lambda p: (p[0] != n - 1) + (p[1] != 1))


def _smoothed(counts: torch.Tensor, how: str, alpha: float, dim) -> torch.Tensor:
    """Probabilities from counts under one smoothing and normalisation choice (float64)."""
    C = counts.double()
    if isinstance(dim, tuple) and dim and dim[0] == "nokeep":
        P = C + (alpha if how == "right" else 0.0)
        return P / P.sum(dim[1])
    if how == "right":
        P = C + alpha
        return P / P.sum(dim, keepdim=True)
    if how == "after":       # smoothing added to the probabilities, not the counts
        P = C / C.sum(dim, keepdim=True).clamp_min(1e-300)
        return P + alpha
    if how == "after_renorm":
        P = C / C.sum(dim, keepdim=True).clamp_min(1e-300) + alpha
        return P / P.sum(dim, keepdim=True)
    if how == "numerator":   # +alpha on top, not in the normalising sum
        return (C + alpha) / C.sum(dim, keepdim=True)
    if how == "once":        # +alpha on top and once below, where once per possible next character belongs
        return (C + alpha) / (C.sum(dim, keepdim=True) + alpha)
    raise ValueError(how)


SMOOTHINGS = {"right": "", "after": "the +{a:g} added to the probabilities after normalising (not to the counts)",
              "after_renorm": "the +{a:g} added to the probabilities after normalising, then normalised again",
              "numerator": "the +{a:g} added to the counts but not to the sum they are divided by",
              "once": "(count + {a:g}) / (row total + {a:g}): the pseudo-count added once to the row total instead "
                      "of once per possible next character (row total + {a:g} * V)"}


def _dims(n: int) -> list[tuple[object, str]]:
    last = n - 1
    out: list[tuple[object, str]] = [(last, "")]
    names = ["the first character", "the second character", "the third character"]
    for d in range(n - 1):
        out.append((d, f"normalisation over dimension {d} ({names[d]}) instead of the last (the next character)"))
    out.append((tuple(range(n)), "normalisation over the whole table instead of over each context's row"))
    for d in range(n):
        out.append((("nokeep", d), f"a division by P.sum({d}) without keepdim=True: the sums broadcast against the "
                                   f"last {n - 1} dimensions, so each entry is divided by the wrong row's total"))
    return out


def _reductions(total: float, N: int, n_words: int, per_word_mean: float | None) -> list[tuple[str, float]]:
    """The summed NLL `total` of N n-grams reduced the ways an average NLL gets written ("": the lesson's)."""
    out = [("", total / N),
           (f"an average per word (a division by the {n_words:,} words) instead of per n-gram", total / n_words),
           (f"the sum over all {N:,} n-grams instead of their average", total),
           (f"a division by {N - 1:,}, one fewer than the {N:,} n-grams", total / max(N - 1, 1)),
           (f"a division by {N + 1:,}, one more than the {N:,} n-grams", total / (N + 1)),
           (f"a division by the {N - n_words:,} characters (the end token's n-gram of each word not counted)",
            total / max(N - n_words, 1)),
           (f"a division by {N + n_words:,} (one more per word than the {N:,} n-grams)", total / (N + n_words))]
    if per_word_mean is not None:
        out.append(("the mean of each word's own average instead of one average over all n-grams", per_word_mean))
    return out


def _scales(value: float) -> list[tuple[str, float]]:
    return [("", value), ("the sign flipped (the log-likelihood, not its negative)", -value),
            ("log base 2 (bits) instead of the natural log (nats)", value / math.log(2)),
            ("log base 10 instead of the natural log", value / math.log(10))]


def _join(*parts: str) -> str:
    return ", ".join(p for p in parts if p)


def nll_candidates(words: Sequence[str], vocab: Vocab, n: int, alpha: float = 1.0,
                   counted_on: Sequence[str] | None = None, what: str = "the NLL") -> Iterator[tuple[str, float]]:
    """The average NLL of `words` under n-gram counts of `counted_on` (default: the same words) computed every
    plausible wrong way: padding, smoothing, the dimension normalised over, the reduction, the log's base and
    sign. Yields (description, value) only for variants that differ from the lesson's definition, in at most
    three choices, fewest first; each probability table is computed only when the search reaches it."""
    scored = windows(words, vocab, n)
    source = scored if counted_on is None else windows(counted_on, vocab, n)
    alphas = [(alpha, "")] + [(a, f"smoothing +{a:g} instead of +{alpha:g}" if a else "no smoothing")
                              for a in (0.0, 1.0) if a != alpha]
    pads = []   # (padding scored, padding counted, what differs)
    for p in _paddings(n):
        pads.append((p, p, _padding(n, *p)))
        if 0 < (p[0] != n - 1) + (p[1] != 1) <= 1:
            pads.append((p, (n - 1, 1), f"{_padding(n, *p)} when scoring (the counts padded right)"))
            pads.append(((n - 1, 1), p, f"{_padding(n, *p)} when counting (the scoring padded right)"))
    combos = []
    for scored_pad, counted_pad, pad_why in pads:
        for a, a_why in alphas:
            for how, how_why in SMOOTHINGS.items():
                if how != "right" and a == 0:
                    continue
                for dim, dim_why in _dims(n):
                    parts = [pad_why, a_why, how_why.format(a=a), dim_why]
                    k = sum(bool(p) for p in parts)
                    if k <= 2:
                        combos.append((k, scored_pad, counted_pad, a, how, dim, parts))
    combos.sort(key=lambda c: c[0])
    cache: dict = {}
    for k0, scored_pad, counted_pad, a, how, dim, parts in combos:
        if (scored_pad, counted_pad) not in cache:
            cache[scored_pad, counted_pad] = scored.counts(*scored_pad).double(), source.counts(*counted_pad)
        hits, counts = cache[scored_pad, counted_pad]
        starts, ends = scored_pad
        N = int(hits.sum())
        if N == 0:
            continue
        logP = _smoothed(counts, how, a, dim).log()
        seen = hits > 0
        total = -(hits[seen] * logP[seen]).sum().item()
        per_word = None
        if k0 == 0:     # the mean of per-word means needs the n-grams one by one: only for the lesson's table
            m = scored.mask(starts, ends)
            S = logP.view(-1)[scored.code[m]]
            w = scored.word[m]
            sums = torch.zeros(scored.n_words, dtype=torch.float64).index_add_(0, w, -S)
            per_word = (sums / torch.bincount(w, minlength=scored.n_words).clamp_min(1)).mean().item()
        for red_why, red in _reductions(total, N, len(words), per_word):
            for sc_why, value in _scales(red):
                extra = bool(red_why) + bool(sc_why)
                if 0 < k0 + extra <= 3:
                    yield f"{what} computed with {_join(*parts, red_why, sc_why)}", value


@functools.lru_cache(maxsize=16)
def _windows(words: tuple[str, ...], chars: tuple[str, ...], n: int) -> Windows:
    return Windows(words, Vocab(chars[1:]), n)


def windows(words: Sequence[str], vocab: Vocab, n: int) -> Windows:
    """`Windows` of `words`, kept for the next check of the same words (a check cell asks for them often)."""
    return _windows(tuple(words), tuple(vocab.itos), n)


LETTERS = "abcdefgh"


def count_candidates(words: Sequence[str], vocab: Vocab, n: int) -> Iterator[tuple[str, torch.Tensor]]:
    """n-gram counts as a learner might get them wrong: the padding, the axes' order, +1 or 0/1 in the table."""
    W = windows(words, vocab, n)
    right = W.counts(n - 1, 1)
    for starts, ends in _paddings(n)[1:]:
        yield f"the counts with {_padding(n, starts, ends)}", W.counts(starts, ends)
    axes = LETTERS[:n]
    for perm in itertools.permutations(range(n)):
        if list(perm) != list(range(n)):
            yield (f"the right counts stored in another order: your [{', '.join(axes[p] for p in perm)}] holds the "
                   f"count of [{', '.join(axes)}] ({axes[-1]} following {' '.join(axes[:-1])}); index the table in "
                   f"the order of the characters"), right.permute(perm)
    yield "the counts plus 1 (the +1 smoothing belongs in the probabilities, not in the counts)", right + 1
    yield "1 where an n-gram occurs and 0 elsewhere: set to 1 (= 1) where a count belongs (+= 1)", (right > 0).long()


def describe_counts(got: Any, want: torch.Tensor) -> str:
    """What differs between two count tables: the totals, and the positions of the start/end token involved."""
    try:
        g = torch.as_tensor(got).double()
    except Exception:  # noqa: BLE001
        return ""
    if g.shape != want.shape:
        return ""
    w = want.double()
    bad = g != w
    if not bool(torch.isfinite(g).all()):
        return ""
    parts = [f"your table holds {g.sum().item():,.0f} n-grams, the lesson's {w.sum().item():,.0f}"]
    axes = LETTERS[:want.ndim]
    where = [axes[d] for d in range(want.ndim) if bool((bad.nonzero()[:, d] == 0).all())]
    if where:
        parts.append(f"every entry that differs has '.' as {' and '.join(where)} (in [{', '.join(axes)}]): check how "
                     f"many '.' pad each word, in front and behind")
    elif bool((bad.nonzero() != 0).all()):
        parts.append("the entries that differ involve no '.' at all: the counts inside the words are off")
    return "; ".join(parts)


def check_trigram(N3: Any, nll3: Any, words: Sequence[str], vocab: Vocab, *, cell: str = "",
                  namespace: Mapping[str, Any] | None = None) -> list[Result]:
    """Exercise 1's rows: the trigram counts and their +1-smoothed NLL, each wrong one with what it computes.

    With the answer `cell` and the notebook's `namespace`, answers right here are run again on words over a
    vocabulary of another size (`other_words`): one that holds this vocabulary's size typed in is right only for it.
    """
    want = trigram(words, vocab)
    row_n3 = check("N3", N3, want["N3"], atol=0,
                   hint="pad with two '.' in front and one behind; count (a, b, c) triples")
    row_n3 = explain(row_n3, N3, lambda: count_candidates(words, vocab, 3), atol=0,
                     fallback=lambda: describe_counts(N3, want["N3"]))
    if isinstance(N3, torch.Tensor) and N3.dtype != torch.int64 and row_n3.status in ("exact", "close", "wrong"):
        why = (f"N3 is a {N3.dtype} tensor; the exercise asks for int64 counts (dtype=torch.int64): a count is a "
               f"whole number, and float32 stops counting exactly above 2**24")
        row_n3 = Result("N3", "wrong", why if row_n3.passed else f"{row_n3.detail}; {why}", row_n3.hint)

    def nll_from_yours():
        if row_n3.passed or row_n3.status != "wrong":
            return
        yours = torch.as_tensor(N3).detach().cpu().double()
        yield "the +1-smoothed NLL of your own N3 (right for that table: fix N3 first)", ngram_nll(yours, words, vocab)

    row_nll = check("nll3", nll3, want["nll3"], atol=1e-4,
                    hint="+1 smoothing, normalise over the last dimension, average over all trigrams")
    row_nll = explain(row_nll, nll3, lambda: itertools.chain(nll_from_yours(), nll_candidates(words, vocab, 3)),
                      **MATCH)
    rows = [row_n3, row_nll]
    if cell and namespace is not None and "vocab" in namespace and all(r.passed for r in rows):
        rows = _replayed_trigram_rows(rows, cell, namespace)
    return rows


def other_words(namespace: Mapping[str, Any], n_words: int = 200) -> dict[str, Any]:
    """`other_vocabulary` with words that use its new characters (the first `n_words` of the notebook's, every
    fifth with one of them put in) and the bigram counts `N` and probabilities `P` of those words: lesson 01's
    objects before exercise 1, for a vocabulary of another size."""
    world = other_vocabulary(namespace)
    vocab = world["vocab"]
    new = vocab.itos[-3:]
    words = [w[:1] + new[i % 3] + w[1:] if i % 5 == 0 else w for i, w in enumerate(namespace["words"][:n_words])]
    N = ngram_counts(words, vocab, 2)
    P = (N + 1).float()
    return {**world, "words": words, "N": N, "P": P / P.sum(1, keepdim=True)}


def _replayed_trigram_rows(rows: list[Result], cell: str, namespace: Mapping[str, Any]) -> list[Result]:
    """Exercise 1's rows after the answer cell has run again on `other_words`: a row wrong there fails here."""
    world = other_words(namespace)
    V, words = world["V"], world["words"]
    try:   # the names the cell sets itself are its own (a cell's xs = [] must not become the world's xs)
        stored = {node.id for node in ast.walk(ast.parse(cell)) if isinstance(node, ast.Name)
                  and isinstance(node.ctx, ast.Store)}
    except SyntaxError:
        stored = set()
    world = {k: v for k, v in world.items() if k not in stored or k in ("vocab", "words")}
    setting = (f"run again on {len(words)} words over a vocabulary of {V} characters ({V - 3} here: vocab, V, words, "
               f"N and P to match)")
    got, error = replay(cell, namespace, world, ("N3", "nll3"))
    if error:
        return [Result("N3", "error", f"right for this notebook's words, but your cell, {setting}, raised {error}: is "
                       f"the vocabulary's size ({V - 3}) typed in?", rows[0].hint), rows[1]]
    want = trigram(words, world["vocab"])
    out = list(rows)
    for i, (name, tol) in enumerate((("N3", 0.0), ("nll3", 1e-4))):
        again = check(name, got[name], want[name], atol=tol)
        if not again.passed:
            out[i] = Result(name, "wrong", f"right for this notebook's words, but your cell, {setting}, gives another "
                            f"{name}: {again.detail} (a size typed in, right only for a vocabulary of {V - 3}?)",
                            rows[i].hint)
    return out


SPLITS = ("train", "dev", "test")
MATCH = {"atol": 1e-5, "rtol": 1e-5}
"""How close an NLL must come to another definition's to be named as it: tighter than the checks' 1e-4, so that
two definitions 1e-4 apart (the bigram's train NLL and the trigram's with one start token) are not confused."""


def _own_splits(words: Sequence[str]) -> dict[str, list[str]]:
    """The word lists a learner might use for train, dev and test in place of `split_words(words)`."""
    train, dev, test = split_words(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return {"train": train, "dev": dev, "test": test, "all": list(words), "train+dev": train + dev,
            "unshuffled train": list(words[:n1]), "unshuffled dev": list(words[n1:n2]),
            "unshuffled test": list(words[n2:])}


def split_nll(parts: dict[str, list[str]], vocab: Vocab, n: int, counted: str, scored: str, alpha: float) -> float:
    """The n-gram model counted on `parts[counted]`, +alpha smoothed, scored on `parts[scored]`."""
    W = windows(parts[counted], vocab, n).counts(n - 1, 1)
    return ngram_nll(W, parts[scored], vocab, alpha)


def split_candidates(words: Sequence[str], vocab: Vocab, n: int, split: str, alpha: float = 1.0,
                     alphas: Sequence[float] = ()) -> Iterator[tuple[str, float]]:
    """The `split` NLL of the n-gram model counted on train, computed with the wrong words or the wrong model:
    another split or model order (swapped numbers), counts from the wrong words, no smoothing, another
    alpha, an unshuffled split of its own; then the NLL's own definition, as in `nll_candidates`."""
    parts = _own_splits(words)
    model = {2: "bigram", 3: "trigram"}

    def value(counted, scored, n_=n, a=alpha):
        return lambda: split_nll(parts, vocab, n_, counted, scored, a)

    for other in SPLITS:
        if other != split:
            yield f"the {model[n]} model's {other} NLL, not its {split} NLL", value("train", other)
    for n_ in (2, 3):
        if n_ != n:
            for s in SPLITS:
                yield f"the {model[n_]} model's {s} NLL (bigram and trigram mixed up?)", value("train", s, n_)
    for counted in ("all", "train+dev", "dev", "test"):
        yield f"the model counted on {counted} words (not the training words only), scored on {split}", \
            value(counted, split)
    yield f"the {split} NLL without smoothing (+0)", value("train", split, a=0.0)
    for a in alphas:
        if a != alpha:
            yield f"the {split} NLL with smoothing +{a:g} instead of +{alpha:g}", value("train", split, a=a)
    yield f"the {split} NLL of your own unshuffled split (words[:80%] for train): use split_words(words)", \
        value("unshuffled train", f"unshuffled {split}")
    for s in SPLITS:
        yield f"the model counted on all the words, scored on {s}, without smoothing", value("all", s, a=0.0)
    yield from nll_candidates(parts[split], vocab, n, alpha, counted_on=parts["train"],
                              what=f"the {split} NLL (counted on train)")


def check_splits(answers: dict[str, Any], words: Sequence[str], vocab: Vocab) -> list[Result]:
    """Exercise 2's rows: the bigram and trigram NLL of each split, each wrong one with what it computes."""
    want = splits(words, vocab)
    hint = "count on split_words(words)[0] only; +1 smoothing; average over every n-gram of the split"
    rows = []
    for key in (f"{s}_nll{n}" for n in (2, 3) for s in SPLITS):
        split, n = key.split("_")[0], int(key[-1])
        row = check(key, answers[key], want[key], atol=1e-4, hint=hint)
        rows.append(explain(row, answers[key], lambda split=split, n=n: split_candidates(words, vocab, n, split),
                            **MATCH))
    return rows


def check_tune_alpha(best_alpha: Any, best_test_nll3: Any, words: Sequence[str], vocab: Vocab,
                     alphas: Sequence[float], *, cell: str = "", namespace: Mapping[str, Any] | None = None
                     ) -> list[Result]:
    """Exercise 3's rows: the alpha chosen on dev and the test NLL at it, each wrong one with what it is.

    With the answer `cell` and the notebook's `namespace`, answers right on `alphas` are run again on another list
    (`other_alphas`): an answer that skips an alpha, or holds a number typed in, is right only for this one.
    """
    want = tune_alpha(words, vocab, alphas)
    parts = _own_splits(words)
    best = want["best_alpha"]

    def nll(counted, scored, a, n=3):
        return lambda: split_nll(parts, vocab, n, counted, scored, a)

    def picked(counted, on, n=3, pick=min):
        return lambda: pick(alphas, key=lambda a: split_nll(parts, vocab, n, counted, on, a))

    def alpha_candidates():
        for on in ("train", "test", "all"):
            yield f"the alpha with the lowest {on} NLL (pick it on dev)", picked("train", on)
        yield "the alpha with the highest dev NLL (the worst, not the best)", picked("train", "dev", pick=max)
        yield "the alpha with the lowest dev NLL of the bigram model (the trigram model's belongs)", \
            picked("train", "dev", n=2)
        for counted in ("all", "train+dev"):
            yield f"the best alpha on dev of a model counted on {counted} words (count on train only)", \
                picked(counted, "dev")
        yield (f"the position of the best alpha in alphas (alphas.index / argmin gives {alphas.index(best)}), not "
               f"the alpha itself (alphas[{alphas.index(best)}] = {best:g})"), float(alphas.index(best))
        yield "the lesson's default +1 (no search over alphas)", 1.0
        yield "the first alpha of the list", alphas[0]
        yield "the last alpha of the list", alphas[-1]

    def test_candidates():
        try:
            yours = float(best_alpha)
        except (TypeError, ValueError):
            yours = None
        if yours is not None and yours != best:
            yield (f"the test NLL at your best_alpha = {yours:g} (right for that alpha, which is not the best on "
                   f"dev: fix best_alpha)"), nll("train", "test", yours)
        yield f"the dev NLL at alpha {best:g}, not the test NLL", nll("train", "dev", best)
        yield f"the train NLL at alpha {best:g}, not the test NLL", nll("train", "train", best)
        yield "the lowest test NLL over all alphas (alpha chosen on test)", \
            lambda: min(split_nll(parts, vocab, 3, "train", "test", a) for a in alphas)
        yield "the test NLL at +1 smoothing, not at the best alpha", nll("train", "test", 1.0)
        yield f"the lowest dev NLL (at alpha {best:g}), not the test NLL", nll("train", "dev", best)
        for counted in ("train+dev", "all"):
            yield (f"the test NLL of a model counted on {counted} words (count on train only)",
                   nll(counted, "test", best))
        yield "the bigram model's test NLL (the trigram model's belongs)", nll("train", "test", best, n=2)
        if yours is not None:
            yield f"the bigram model's test NLL at your alpha {yours:g} (the trigram model's belongs)", \
                nll("train", "test", yours, n=2)
        bigram_best = min(alphas, key=lambda a: split_nll(parts, vocab, 2, "train", "dev", a))
        yield (f"the test NLL of the bigram model tuned on dev (alpha {bigram_best:g}): the trigram model's belongs",
               nll("train", "test", bigram_best, n=2))
        yield from nll_candidates(parts["test"], vocab, 3, best, counted_on=parts["train"],
                                  what="the test NLL (counted on train)")

    row_a = check("best_alpha", best_alpha, best, atol=0, hint="pick by the dev NLL, not train or test")
    row_t = check("best_test_nll3", best_test_nll3, want["test_nll3"], atol=1e-4,
                  hint="the test NLL of the model with your best alpha")
    def not_tried():
        try:
            a = float(best_alpha)
        except (TypeError, ValueError):
            return ""
        return "" if a in alphas else f"{a:g} is not one of the alphas tried ({', '.join(f'{x:g}' for x in alphas)})"

    rows = [explain(row_a, best_alpha, alpha_candidates, atol=0, every=True, fallback=not_tried),
            explain(row_t, best_test_nll3, test_candidates, **MATCH)]
    if cell and namespace is not None and all(r.passed for r in rows):
        rows = _replayed_alpha_rows(rows, cell, namespace, alphas, want)
    return rows


def other_alphas(alphas: Sequence[float], dev_nll: dict[float, float]) -> list[float]:
    """Three of `alphas`, not the best one (lowest dev NLL): the worst and the third best in reverse order, then the
    second best last. An answer that follows the list gives that one; one that skips the last alpha, reads a
    position or holds the best value typed in gives another. Three, not all: the answer cell runs again on them."""
    ranked = sorted(dev_nll, key=dev_nll.get)
    return [a for a in reversed(alphas) if a in (ranked[2], ranked[-1])] + [ranked[1]]


def _replayed_alpha_rows(rows: list[Result], cell: str, namespace: Mapping[str, Any], alphas: Sequence[float],
                         want: Mapping[str, Any]) -> list[Result]:
    """Exercise 3's rows after the answer cell has run again on `other_alphas`: a row it gets wrong there fails.
    `want` is `tune_alpha`'s answer for the notebook's `alphas`."""
    if len(set(alphas)) < 3:
        return rows
    dev_nll, best = want["dev_nll"], want["best_alpha"]
    world = other_alphas(alphas, dev_nll)
    want_alpha = world[-1]
    shown = "[" + ", ".join(f"{a:g}" for a in world) + "]"
    setting = (f"run again with alphas = {shown} (three of the same values, {best:g} not among them, and "
               f"{want_alpha:g} last, the lowest dev NLL of these)")
    given = list(world)
    got, error = replay(cell, namespace, {"alphas": world}, ("best_alpha", "best_test_nll3"))
    if error:
        return [Result("best_alpha", "error", f"your cell, {setting}, raised {error}: it works only on this list"),
                rows[1]]
    out = list(rows)
    if world != given:
        shown_after = "[" + ", ".join(f"{a:g}" for a in world) + "]"
        out[0] = Result("best_alpha", "wrong", f"right, but your cell changes the list alphas itself: {setting}, it "
                        f"left alphas = {shown_after} (sorted or reordered in place, alphas.sort(...), or an element "
                        "removed): later cells read it too; use min(alphas, key=...) or sorted(alphas, ...), which "
                        "leave it as it was", rows[0].hint)
        return out
    try:
        alpha = float(got["best_alpha"])
    except (TypeError, ValueError):
        alpha = None
    if alpha != want_alpha:
        why = ""
        if alpha is not None and alpha not in world:
            why = (f": {alpha:g} is not in that list, so the cell does not search `alphas` (a value typed in, or a "
                   "list of its own?)")
        elif alpha == min(world[:-1], key=dev_nll.get):
            why = ": the best of all but the last alpha (a loop or a slice that stops one short?)"
        elif alpha is not None and alphas.index(best) < len(world) and alpha == world[alphas.index(best)]:
            why = f": the alpha at position {alphas.index(best)}, where this notebook's best is (a position typed in?)"
        out[0] = Result("best_alpha", "wrong", f"right on this notebook's alphas, but your cell, {setting}, gives "
                        f"best_alpha = {got['best_alpha']!r}, not {want_alpha:g}{why}")
    want_test = want["test_nll_at"](want_alpha)
    try:
        test_nll = float(got["best_test_nll3"])
    except (TypeError, ValueError):
        test_nll = math.nan
    if alpha == want_alpha and not abs(test_nll - want_test) <= 1e-4:
        out[1] = Result("best_test_nll3", "wrong", f"right on this notebook's alphas, but your cell, {setting}, "
                        f"gives best_test_nll3 = {got['best_test_nll3']!r}, not {want_test:.4f}, the test NLL at "
                        f"{want_alpha:g}: is it computed at an alpha of its own, not at best_alpha?")
    return out


TRANSFORMS = (("", lambda T: T), ("softmax over each row of ", lambda T: torch.softmax(T, 1)),
              ("exp of ", torch.exp), ("log_softmax over each row of ", lambda T: torch.log_softmax(T, 1)),
              ("softmax over dimension 0 of ", lambda T: torch.softmax(T, 0)))
"""What a learner might apply to the looked-up rows (logits are wanted, not probabilities or counts)."""


def describe_rows(idx: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor, table: str) -> str:
    """Which rows of `table` an answer looked up (`idx`, one per row) against the wanted xs."""
    if torch.equal(idx, xs):
        return f"{table}[xs]"
    if torch.equal(idx, ys):
        return f"{table}[ys]: indexed by the targets ys instead of the inputs xs"
    V = int(max(idx.max(), xs.max())) + 1
    for k in (1, -1):
        if torch.equal(idx, xs + k) or (torch.equal(idx % V, (xs + k) % V) and k == -1):
            return (f"{table}[xs {'+' if k > 0 else '-'} 1]: every id shifted by {k:+d}"
                    + (" (id 0, '.', wraps round to the last row)" if k < 0 else ""))
    for shift in (1, -1):
        a, b = (idx[:-1], xs[1:]) if shift == 1 else (idx[1:], xs[:-1])
        if len(a) and torch.equal(a, b):
            return f"{table}[xs] shifted by one position: row i holds {table}[xs[i {'+' if shift > 0 else '-'} 1]]"
    if torch.equal(idx.sort().values, xs.sort().values):
        return f"the rows of {table}[xs] in another order"
    if len(idx) != len(xs):
        if torch.equal(idx.sort().values, xs.unique()):
            return f"{table}[xs.unique()]: one row per distinct input, not one per example"
        return f"{len(idx)} rows of {table} ({table}[{idx[:5].tolist()}...]) where one per example ({len(xs)}) belongs"
    if bool((idx == idx[0]).all()):
        return f"{table}[{int(idx[0])}] in every row"
    off = (idx != xs).nonzero()
    if len(off) == 0:
        return f"{table}[xs]"
    i = int(off[0])
    return (f"rows of {table}, but at {len(off)} of {len(xs)} positions not {table}[xs[i]]: row {i} holds "
            f"{table}[{int(idx[i])}] where {table}[xs[{i}]] = {table}[{int(xs[i])}] belongs")


def row_candidates(got: Any, xs: torch.Tensor, ys: torch.Tensor, W: torch.Tensor) -> Iterator[tuple[str, Any]]:
    """The lookups `got` is, found row by row: which rows of W (or of W.T) under which transform."""
    try:
        g = torch.as_tensor(got).detach().cpu().double()
    except Exception:  # noqa: BLE001
        return
    W = W.detach().cpu().double()
    xs, ys = xs.cpu(), ys.cpu()
    if g.ndim == 2 and g.shape == (W.shape[1], len(xs)) and g.shape[0] != g.shape[1]:
        for what, rows in (("W[:, xs]: the columns of W, one per input, where W[xs] (its rows) belongs", W.T),
                           ("W.T[xs].T", W)):
            if torch.equal(rows_of(g.T, rows, atol=1e-6), xs):
                yield what, g
                return
    for name, table in (("W", W), ("W.T", W.T)):
        for why, f in TRANSFORMS:
            idx = rows_of(g, f(table), atol=1e-6)
            if len(idx) and bool((idx >= 0).all()) and (len(idx) == len(xs) or why == ""):
                what = describe_rows(idx, xs, ys, name)
                if why or what != "W[xs]":
                    yield f"{why}{what}" + (" (W.T's rows are W's columns)" if name == "W.T" else ""), g


def other_vocabulary(namespace: Mapping[str, Any], extra: int = 3, seed: int = 0) -> dict[str, Any]:
    """Lesson 01's objects for a vocabulary of `extra` more characters: `vocab`, `V`, a random `W` (V, V) and inputs
    `xs`, `ys` that use the new ids (with `xenc` and `rows` to match): an answer cell run in it (`replay`) must
    follow the new sizes."""
    g = torch.Generator().manual_seed(seed)
    vocab = Vocab([*namespace["vocab"].itos[1:], *"\u00e0\u00e9\u00ee"[:extra]])
    V = len(vocab)
    xs, ys = torch.randint(0, V, (50,), generator=g), torch.randint(0, V, (50,), generator=g)
    xs[:extra] = torch.arange(V - extra, V)          # the new characters occur
    return {"vocab": vocab, "V": V, "W": torch.randn(V, V, generator=g).requires_grad_(), "xs": xs, "ys": ys,
            "xenc": F.one_hot(xs, num_classes=V).float(), "rows": torch.arange(len(ys))}


def _replayed_rows(row: Result, cell: str, namespace: Mapping[str, Any]) -> Result:
    """Exercise 4's row after the answer cell has run again on `other_vocabulary`: wrong there, it fails here."""
    world = other_vocabulary(namespace)
    V, W, xs = world["V"], world["W"], world["xs"]
    setting = (f"run again with a vocabulary of {V} characters (W of shape ({V}, {V}), and vocab, V and "
               f"{len(xs)} inputs xs to match)")
    got, error = replay(cell, namespace, world, ("logits_rows",))
    if error:
        return Result(row.name, "error", f"right for this notebook's W, but your cell, {setting}, raised {error}: "
                      f"is the vocabulary's size ({V - 3} here) typed in?", row.hint)
    again = check(row.name, got["logits_rows"], W.detach()[xs], atol=1e-6)
    if again.passed:
        return _device_row(_gradient_row(row, got["logits_rows"], W, xs, setting), cell, namespace, world)
    detail = again.detail
    try:
        shape = tuple(torch.as_tensor(got["logits_rows"]).shape)
    except Exception:  # noqa: BLE001 - what it is was said by `check`
        shape = ()
    if len(shape) == 2 and shape[1] != V:
        detail += f": {shape[1]} columns where the vocabulary has {V} (a number typed in, right only for {V - 3}?)"
    elif len(shape) == 2 and shape[1] == V:
        detail += f" (is a size typed in, right only for a vocabulary of {V - 3}?)"
    return Result(row.name, "wrong", f"right for this notebook's W, but your cell, {setting}, gives another "
                  f"tensor than W[xs]: {detail}", row.hint)


def _device_row(row: Result, cell: str, namespace: Mapping[str, Any], world: Mapping[str, Any]) -> Result:
    """Exercise 4's row once its values and gradient are right: the cell replayed with `world`'s tensors on the
    'meta' device, standing in for a GPU (the lesson's `device` parameter), must give its logits there. A tensor
    the cell makes without device= (torch.eye(V), torch.arange) stays on the CPU and meets W on the GPU."""
    if not row.passed:
        return row
    meta = {k: (v.detach().to("meta") if isinstance(v, torch.Tensor) else v) for k, v in world.items()}
    got, error = replay(cell, namespace, meta, ("logits_rows",))
    out = got.get("logits_rows")
    moves = re.search(r"\.cpu\(|\.to\(\s*['\"]cpu['\"]|device\s*=\s*['\"]cpu['\"]", cell)
    if error and is_device_error(error):
        why = f"raises {error}"
    elif error and "copy out of meta" in error and moves:   # the cell moves a tensor to the CPU itself
        why = (f"moves a tensor to the CPU ({moves.group(0).rstrip('(')}...), so the rest of it meets W on another "
               "device")
    elif not error and isinstance(out, torch.Tensor) and out.device.type != "meta":
        why = f"gives logits on {out.device}, not on W's device"
    else:   # runs there, or fails for a reason a data-less tensor has (reading a value): nothing to say
        return row
    return Result(row.name, "wrong", f"right on the CPU, but with W and xs on another device (here 'meta', standing in "
                  f"for a GPU: lesson 01's `device` parameter) your cell {why}: a tensor made inside it without "
                  "device= stays on the CPU; index W with xs, or make it with device=W.device", row.hint)


def _gradient_row(row: Result, logits: torch.Tensor, W: torch.Tensor, xs: torch.Tensor, setting: str) -> Result:
    """Exercise 4's row once its values are right: the logits must also carry W's gradient, W[xs]'s, since the
    network learns through them (W requires grad in the replay). A detached copy, `.data` or a no_grad block gives
    the right numbers and a network that never learns."""
    if not logits.requires_grad:
        return Result(row.name, "wrong", f"right values, but your cell, {setting}, gives logits that carry no "
                      "gradient back to W (detach(), .data, or a torch.no_grad() block?): the network learns through "
                      "its logits, so they must stay a function of W, as W[xs] is", row.hint)
    R = torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))
    (got,) = torch.autograd.grad((logits * R).sum(), W, allow_unused=True)
    want = torch.zeros_like(W).index_add_(0, xs, R)
    if got is not None and torch.allclose(got, want, atol=1e-5):
        return row
    return Result(row.name, "wrong", f"right values, but your cell, {setting}, gives logits whose gradient with "
                  "respect to W is not W[xs]'s (part of them made from a copy of W?): each row must be the row of W "
                  "itself, so that the network's loss reaches W", row.hint)


def check_logits_rows(logits_rows: Any, xs: torch.Tensor, ys: torch.Tensor, W: torch.Tensor, *, cell: str = "",
                      namespace: Mapping[str, Any] | None = None) -> Result:
    """Exercise 4's row: `W[xs]`; a wrong answer is described by the rows it looked up and what it did to them.

    With the answer `cell` and the notebook's `namespace`, an answer right here is run again with a vocabulary of
    another size (`other_vocabulary`): one that holds this vocabulary's size typed in is right only for it.
    """
    row = check("logits_rows", logits_rows, onehot_logits(xs.cpu(), W.detach().cpu()), atol=1e-6,
                hint="W has one row per input character: index it with the tensor xs")
    def fallback():
        try:
            g = torch.as_tensor(logits_rows).detach().cpu().double()
        except Exception:  # noqa: BLE001
            return ""
        idx = rows_of(g, W.detach().cpu().double(), atol=1e-6)
        right = idx == xs.cpu()
        if g.ndim != 2 or not bool(right.any()):
            return ""
        i = int((~right).nonzero()[0])
        what = "is no row of W" if idx[i] < 0 else f"is W[{int(idx[i])}]"
        return (f"{int(right.sum())} of {len(right)} rows are W[xs[i]]; the first that is not, row {i}, {what} "
                f"(W[xs[{i}]] = W[{int(xs[i])}] belongs)")

    if row.status == "shape":   # another number of rows, or the columns: which rows of W it holds
        for why, value in row_candidates(logits_rows, xs, ys, W):
            return Result(row.name, "shape", f"{row.detail}; your answer is {why}", row.hint)
        return row
    row = explain(row, logits_rows, lambda: row_candidates(logits_rows, xs, ys, W), atol=1e-6, fallback=fallback)
    if row.passed and isinstance(logits_rows, torch.Tensor) and logits_rows.dtype != W.dtype:
        row = Result(row.name, "wrong", f"right values, but logits_rows is {logits_rows.dtype} where W is {W.dtype}: "
                     "a converted copy (.double(), .float(), .to(dtype)); W[xs] keeps W's dtype, the one the network "
                     "computes its loss and gradient in", row.hint)
    if row.passed and cell and namespace is not None and "vocab" in namespace:
        row = _replayed_rows(row, cell, namespace)
    return row


def check_cross_entropy(ce_nll: Any, big_manual: Any, big_ce: Any, W: torch.Tensor, xs: torch.Tensor,
                        ys: torch.Tensor, big_logits: torch.Tensor) -> list[Result]:
    """Exercise 5's rows: F.cross_entropy of the network's logits, the overflowing hand-written NLL and
    F.cross_entropy of the big logits; a wrong number is matched against what the usual slips compute."""
    L, y = W.detach()[xs].cpu().double(), ys.cpu()
    N, ar = len(y), torch.arange(len(y))
    want = softmax_nll(L, y)

    def ce_candidates():
        yield "F.cross_entropy of the probabilities (softmax first: cross_entropy applies its own)", \
            lambda: F.cross_entropy(L.softmax(1), y).item()
        yield f"the sum over the {N:,} examples, not their mean (reduction='sum')", want * N
        yield "minus the mean of the targets' raw logits (F.nll_loss wants log-probabilities, not logits)", \
            lambda: -L[ar, y].mean().item()
        yield "the cross-entropy with the softmax over dimension 0 (over the examples, not each row)", \
            lambda: -torch.log_softmax(L, 0)[ar, y].mean().item()
        yield "F.cross_entropy of exp(logits) (the counts, not the logits)", lambda: F.cross_entropy(L.exp(), y).item()
        yield "minus the mean probability of the targets (no log)", lambda: -L.softmax(1)[ar, y].mean().item()
        yield "the mean probability of the targets", lambda: L.softmax(1)[ar, y].mean().item()
        yield "the mean of -log_softmax over every entry, not only the targets'", \
            lambda: -torch.log_softmax(L, 1).mean().item()
        Lw = W.detach().cpu().double()
        yield "F.cross_entropy(W[ys], xs): inputs and targets swapped", \
            lambda: F.cross_entropy(Lw[ys.cpu()], xs.cpu()).item()
        yield "F.cross_entropy(W[xs], xs): the inputs as targets", lambda: F.cross_entropy(L, xs.cpu()).item()
        yield "F.cross_entropy(W[ys], ys): the logits looked up by the targets", \
            lambda: F.cross_entropy(Lw[ys.cpu()], y).item()
        Wd = W.detach().cpu().double()
        for c in (0.01, 0.1, 0.001, 1.0):
            for reg_why, reg in (("(W**2).mean()", (Wd**2).mean().item()), ("(W**2).sum()", (Wd**2).sum().item())):
                yield (f"the NLL plus the regularisation term {c:g} * {reg_why}: the training loss, where the NLL "
                       f"alone is asked"), want + c * reg
        yield "the log-likelihood (the sign flipped)", -want
        yield "the NLL in bits (log base 2) instead of nats", want / math.log(2)
        yield "the NLL in log base 10 instead of nats", want / math.log(10)

    big = big_logits.detach().cpu()
    t0 = torch.tensor([0])
    big_want = softmax_nll(big, t0)

    def big_candidates():
        for t in range(1, big.shape[1]):
            yield f"the NLL of target {t}, not 0", softmax_nll(big, torch.tensor([t]))
        yield "F.cross_entropy of the probabilities (softmax first)", lambda: F.cross_entropy(big.softmax(1), t0).item()
        yield "minus the raw logit of the target (F.nll_loss on logits)", -big[0, 0].item()
        yield "the log-likelihood (the sign flipped)", -big_want
        yield "the NLL in bits (log base 2) instead of nats", big_want / math.log(2)

    def manual_candidates():
        yield ("the stable value F.cross_entropy gives (the max subtracted first, or computed in float64): this part "
               "wants the naive float32 computation, exp of the logits as they are"), big_want
        for t in range(1, big.shape[1]):
            yield f"the naive NLL of target {t}, not 0", lambda t=t: -(big.exp() / big.exp().sum())[0, t].log().item()
        yield "the target's probability (no -log)", lambda: big.double().softmax(1)[0, 0].item()

    finite = big_manual is not TODO and _finite(big_manual)
    row_big = check_that("big_manual", big_manual, big_manual is not TODO and not finite,
                         f"hand-written NLL = {big_manual}: " + ("not a finite number, because exp(100) overflows "
                                                                 "float32" if big_manual is not TODO and not finite
                                                                 else "expected inf or nan from exp(100) overflowing "
                                                                      "float32"),
                         hint="compute it exactly as section 7 does - exp, divide by the row sum, -log - without "
                              "subtracting anything")
    hint = "F.cross_entropy takes the raw logits (not probabilities) and the target ids"
    row_ce = explain(check("ce_nll", ce_nll, want, atol=1e-4, hint=hint), ce_nll, ce_candidates, atol=1e-4,
                     rtol=1e-5)

    def part_candidates():
        yield f"the mean over all but the last example ({N - 1:,} of {N:,})", lambda: softmax_nll(L[:-1], y[:-1])
        yield f"the mean over all but the first example ({N - 1:,} of {N:,})", lambda: softmax_nll(L[1:], y[1:])

    if row_ce.passed and (closer := closer_than_tolerance(ce_nll, want, part_candidates,
                                                          what=f"the mean over all {N:,} examples")):
        row_ce = Result("ce_nll", "wrong", closer, hint)
    return [
        row_ce,
        explain(row_big, big_manual, manual_candidates, atol=1e-4, rtol=1e-3, every=True),
        explain(check("big_ce", big_ce, big_want, atol=1e-4, hint="F.cross_entropy(big_logits, torch.tensor([0]))"),
                big_ce, big_candidates, atol=1e-4, rtol=1e-5),
    ]


def _finite(x: Any) -> bool:
    """Whether x is a finite number (True for anything that is not a number: the row then says what it is)."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return True
