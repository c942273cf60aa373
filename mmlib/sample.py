"""Sampling words from any model of `mmlib.models` (built by hand in lesson 01; lessons 02 on call this).

One sampler serves every model because they share one call, `model(idx) -> (logits, loss)`:
a window model gets the last `block_size` characters and returns logits (n, V) for the next one;
a sequence model gets everything so far and returns logits (n, T, V), of which the last
position predicts the next character.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmlib.runtime import device_of, eval_mode
from mmlib.validate import number, optional, positive_int
from mmlib.vocab import Vocab, no_boundary, quote

SAMPLE_CHUNK = 1024
"""`sample_words` draws at most this many words at a time, so its memory does not grow with `n`: a
transformer's logits alone are chunk x block_size x vocab_size floats per character drawn."""


def next_char_logits(model, idx: torch.Tensor) -> torch.Tensor:
    """The logits (n, V) for the character after each row of `idx` (n, t)."""
    idx = idx[:, -model.block_size:]
    logits, _ = model(idx)
    return logits[:, -1] if logits.ndim == 3 else logits


@torch.no_grad()
def sample_words(
    model,
    vocab: Vocab,
    n: int = 20,
    *,
    g: torch.Generator | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    prefix: str = "",
    max_len: int | None = None,
) -> list[str]:
    """Draw `n` words, one character at a time, until each emits the end token `.`.

    `temperature` divides the logits (below 1: safer, more common names; above 1: wilder ones; so
    small that the division overflows: greedy, the most likely character at every step); `top_k`
    keeps only the k most likely characters at each step (at most the vocabulary's size); every word
    starts with `prefix`, which cannot hold `.`. The model runs in eval mode (BatchNorm uses its running
    statistics) on its own device and is left in the mode it was in; the draws use the CPU generator
    `g`, so a seed gives the same words on any device. Words stop at `max_len` characters, the prefix
    included (None: 50, or what a sequence model's block size allows), so a model that never ends a
    word cannot hang. Words are drawn `SAMPLE_CHUNK` at a time: memory stays bounded for any `n`, and
    up to that many the draws are exactly those of one batch.
    """
    positive_int("n", n)
    number("temperature", temperature, 0, None, low_open=True)
    optional(positive_int, "top_k", top_k)
    if top_k is not None and top_k > len(vocab):
        raise ValueError(f"top_k must be at most the vocabulary's size, {len(vocab)} (top_k={len(vocab)} keeps every "
                         f"character, as None does), got {top_k}")
    no_boundary("prefix", prefix)
    per_position = getattr(model, "per_position", False)
    limit = model.block_size - 1 if per_position else 50
    max_len = limit if max_len is None else positive_int("max_len", max_len)
    if per_position and max_len > limit:
        raise ValueError(f"this model reads at most {model.block_size} positions, so words can have at most "
                         f"{limit} characters; got max_len={max_len}")
    start = vocab.encode(prefix)
    if per_position and len(start) >= model.block_size:
        raise ValueError(f"prefix {quote(prefix)} is longer than this model can read "
                         f"({model.block_size - 1} characters)")
    if len(start) > max_len:
        raise ValueError(f"prefix {quote(prefix)} has {len(start)} characters, more than max_len={max_len} allows "
                         "(max_len counts the prefix too)")
    words: list[str] = []
    with eval_mode(model):
        for done in range(0, n, SAMPLE_CHUNK):
            words += _draw(model, vocab, min(SAMPLE_CHUNK, n - done), start, g, temperature, top_k, max_len)
    return words


def _draw(model, vocab: Vocab, n: int, start: list[int], g: torch.Generator | None, temperature: float,
          top_k: int | None, max_len: int) -> list[str]:
    """`n` words of `sample_words`, all at once; the model is in eval mode already."""
    per_position = getattr(model, "per_position", False)
    device = device_of(model)
    pad = 1 if per_position else model.block_size    # start tokens: sequence models see one, window models a window
    idx = torch.tensor([[0] * pad + start] * n, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    for _ in range(max_len - len(start)):
        raw = next_char_logits(model, idx.to(device)).float().cpu()
        if raw.isnan().any():
            raise ValueError("the model's logits are NaN, so there is nothing to sample: its weights diverged in "
                             "training; train it again with a lower learning rate")
        logits = raw / temperature
        if top_k is not None and top_k < logits.shape[1]:
            kth = logits.topk(top_k, dim=1).values[:, -1:]
            logits[logits < kth] = -float("inf")
        probs = torch.softmax(logits, dim=1)
        # A temperature so small that logits / temperature overflows to inf leaves NaN after the softmax;
        # its limit is greedy sampling, so those rows take the most likely character.
        overflow = probs.isnan().any(1)
        if overflow.any():
            probs[overflow] = F.one_hot(raw[overflow].argmax(1), probs.shape[1]).float()
        ix = torch.multinomial(probs, num_samples=1, generator=g).squeeze(1)
        ix[done] = 0
        done |= ix == 0
        idx = torch.cat([idx, ix[:, None]], dim=1)
        if done.all():
            break
    words = []
    for row in idx[:, pad:].tolist():
        end = row.index(0) if 0 in row else len(row)
        words.append(vocab.decode(row[:end]))
    return words
