"""Sampling words from any model of `mmlib.models` (built by hand in lesson 01; lessons 02 on call this).

One sampler serves every model because they share one call, `model(idx) -> (logits, loss)`:
a window model gets the last `block_size` characters and returns logits (n, V) for the next one;
a sequence model gets everything so far and returns logits (n, T, V), of which the last
position predicts the next character.
"""

from __future__ import annotations

import torch

from mmlib.layers import eval_mode
from mmlib.validate import non_negative_int, number, optional, positive_int
from mmlib.vocab import Vocab


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

    `temperature` divides the logits (below 1: safer, more common names; above 1: wilder ones);
    `top_k` keeps only the k most likely characters at each step; every word starts with
    `prefix`. The model runs in eval mode (BatchNorm uses its running statistics) on its own
    device and is left in the mode it was in; the draws use the CPU generator `g`, so a seed
    gives the same words on any device. Words stop at `max_len` characters (None: 50, or what a
    sequence model's block size allows), so a model that never ends a word cannot hang.
    """
    positive_int("n", n)
    number("temperature", temperature, 0, None, low_open=True)
    optional(positive_int, "top_k", top_k)
    per_position = getattr(model, "per_position", False)
    limit = model.block_size - 1 if per_position else 50
    max_len = limit if max_len is None else non_negative_int("max_len", max_len)
    if per_position and max_len > limit:
        raise ValueError(f"this model reads at most {model.block_size} positions, so words can have at most "
                         f"{limit} characters; got max_len={max_len}")
    start = vocab.encode(prefix)
    if per_position and len(start) >= model.block_size:
        raise ValueError(f"prefix {prefix!r} is longer than this model can read ({model.block_size - 1} characters)")
    device = next(iter(model.parameters())).device   # a list for lesson 03's layer stacks
    pad = 1 if per_position else model.block_size    # start tokens: sequence models see one, window models a full window
    idx = torch.tensor([[0] * pad + start] * n, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    with eval_mode(model):
        for _ in range(max(0, max_len - len(start))):
            logits = next_char_logits(model, idx.to(device)).float().cpu() / temperature
            if top_k is not None and top_k < logits.shape[1]:
                kth = logits.topk(top_k, dim=1).values[:, -1:]
                logits[logits < kth] = -float("inf")
            ix = torch.multinomial(torch.softmax(logits, dim=1), num_samples=1, generator=g).squeeze(1)
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
