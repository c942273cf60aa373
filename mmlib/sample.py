"""Sampling words from any next-character model (built by hand in lesson 01; lessons 02 on call this one).

A model is given as a function from a batch of contexts to logits, so one sampler serves the
bigram table, the MLPs and, later, the transformer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mmlib.vocab import Vocab


@torch.no_grad()
def sample_words(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    vocab: Vocab,
    block_size: int,
    n: int = 20,
    g: torch.Generator | None = None,
    max_len: int = 50,
) -> list[str]:
    """Draw `n` words, one character at a time, until each emits the end token `.`.

    `logits_fn` maps contexts of shape (n, block_size) to logits of shape (n, len(vocab)).
    Sampling stops at `max_len` characters so a model that never ends a word cannot hang.
    Models with BatchNorm must be in eval mode before calling this (see lesson 03).
    """
    ctx = torch.zeros(n, block_size, dtype=torch.long)
    out = torch.zeros(n, max_len, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    for t in range(max_len):
        probs = torch.softmax(logits_fn(ctx).float().cpu(), dim=-1)
        ix = torch.multinomial(probs, num_samples=1, generator=g).squeeze(1)
        ix[done] = 0
        out[:, t] = ix
        done |= ix == 0
        if done.all():
            break
        ctx = torch.cat([ctx[:, 1:], ix[:, None]], dim=1)
    words = []
    for row in out.tolist():
        end = row.index(0) if 0 in row else max_len
        words.append(vocab.decode(row[:end]))
    return words
