"""Expected answers for lesson 06's exercises, each computed by a route of its own, and the probes
that run a learner's code against them.

- `attention_reference`: PyTorch's fused `scaled_dot_product_attention` (causal); `probe_attention`
  runs a learner's attention function on random inputs of several shapes and, when it disagrees,
  names the usual cause - a missing 1/sqrt(head size) scale, a missing causal mask, the softmax over
  the wrong dimension - by comparing with each of those variants (exercise 1).
- `probe_causal_head`: a learner's single head of self-attention (a module with `key`, `query`,
  `value`) against the attention of its own projections, and the causal test: change the characters
  after position t and report every position up to t whose output moved (exercise 2).
- `probe_multihead`: a learner's multi-head attention built from single heads, against
  `mmlib.models.CausalSelfAttention` given the same weights (exercise 3).
- `beat_target`: a dev loss against the lesson's, by how much it beat or missed it (exercise 4).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mmlib.checks import TODO, Result, check, check_that, is_todo

ATOL = 1e-5
"""float32 attention computed in two orders of summation differs by about 1e-7 on these sizes; 1e-5 leaves room."""

# (batch, heads, positions, head size); a 3-D case (no head dimension) and a single position too.
ATTENTION_CASES = [(2, 1, 5, 8), (3, 4, 7, 16), (1, 2, 1, 4), (4, 6, 8)]


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None,
                        causal: bool = True) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v by PyTorch's fused kernel; `scale` None: 1/sqrt(head size)."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)


def _wrong_dim_softmax(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    T = q.shape[-2]
    att = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return torch.nan_to_num(att.softmax(dim=-2)) @ v


def _variants(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Outputs of the usual mistakes, each with what to fix."""
    hs = q.shape[-1]
    return [
        ("it matches attention without the 1/sqrt(head size) scale: divide q @ k^T by sqrt(head size) "
         f"(here sqrt({hs}))", attention_reference(q, k, v, scale=1.0)),
        ("it matches attention divided by the head size instead of its square root",
         attention_reference(q, k, v, scale=1.0 / hs)),
        ("it matches attention without the causal mask: set the weights of positions after t to -inf "
         "before the softmax (masked_fill with a lower-triangular mask)", attention_reference(q, k, v, causal=False)),
        ("it matches attention with neither the scale nor the mask",
         attention_reference(q, k, v, scale=1.0, causal=False)),
        ("it matches a softmax over the wrong dimension: normalise each row (dim=-1), so that position t's "
         "weights over positions 0..t sum to 1", _wrong_dim_softmax(q, k, v)),
    ]


def diagnose_attention(got: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """Which usual mistake `got` matches (within ATOL), or a generic hint."""
    for why, out in _variants(q, k, v):
        if got.shape == out.shape and torch.allclose(got.double(), out.double(), atol=ATOL):
            return why
    return ("compute wei = q @ k.transpose(-2, -1) / sqrt(head size), mask the future with -inf, "
            "softmax over the last dimension, then wei @ v")


def _call(fn: Callable, *args):
    """`fn(*args)`, or the exception it raised."""
    try:
        return fn(*args), None
    except Exception as e:  # noqa: BLE001 - any exception is reported to the learner, not raised
        return None, e


def probe_attention(fn: Callable, seed: int = 0) -> list[Result]:
    """One row per shape: `fn(q, k, v)` against causal `scaled_dot_product_attention`, tolerance ATOL.

    A `fn` that is still `TODO` gives rows that say "not attempted yet".
    """
    g = torch.Generator().manual_seed(seed)
    rows = []
    for shape in ATTENTION_CASES:
        q, k, v = (torch.randn(shape, generator=g) for _ in range(3))
        name = f"attention on q, k, v of shape {shape}"
        if fn is TODO:
            rows.append(Result(name, "todo", "replace TODO with your answer"))
            continue
        got, err = _call(fn, q, k, v)
        if err is not None:
            rows.append(Result(name, "error", f"raised {type(err).__name__}: {err}",
                               "work on the last two dimensions only (positions, head size), so any batch shape works"))
            continue
        if got is TODO:
            rows.append(Result(name, "todo", "replace TODO with your answer"))
            continue
        want = attention_reference(q, k, v)
        hint = diagnose_attention(got, q, k, v) if isinstance(got, torch.Tensor) else ""
        rows.append(check(name, got, want, atol=ATOL, hint=hint))
    return rows


# ---- exercise 2: one head, and the causal test ---------------------------------------------------

def _shape_row(name: str, out, want: tuple[int, ...], hint: str) -> Result:
    """A row for the output's shape: right, wrong (both shapes named), or not a tensor at all."""
    if not isinstance(out, torch.Tensor):
        return Result(name, "error", f"expected a tensor, got {type(out).__name__}", hint)
    if tuple(out.shape) != want:
        return Result(name, "shape", f"expected {want} for an input of that batch and length, got {tuple(out.shape)}", hint)
    return Result(name, "exact", f"{want}")


def _head_reference(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Causal attention of the head's own projections (its `query`, `key`, `value` layers)."""
    with torch.no_grad():
        return attention_reference(head.query(x), head.key(x), head.value(x))


def future_leaks(fn: Callable[[torch.Tensor], torch.Tensor], idx: torch.Tensor, vocab_size: int,
                 generator: torch.Generator, atol: float = 1e-6) -> list[tuple[int, int, float]]:
    """For every t, replace the characters after position t and compare `fn`'s output at 0..t.

    `fn` maps character ids (B, T) to outputs (B, T, ...); `idx` are the ids to start from.
    Returns (t, p, change) for every position p <= t whose output moved by more than `atol` when
    only characters after t changed: empty for a causal `fn`.
    """
    B, T = idx.shape
    with torch.no_grad():
        base = fn(idx)
        leaks = []
        for t in range(T - 1):
            other = idx.clone()
            # a different character at every later position (shifting the id by 1..V-1 never keeps it)
            shift = torch.randint(1, vocab_size, (B, T - t - 1), generator=generator)
            other[:, t + 1:] = (idx[:, t + 1:] + shift) % vocab_size
            moved = (fn(other)[:, : t + 1] - base[:, : t + 1]).abs().reshape(B, t + 1, -1).amax(dim=(0, 2))  # (t + 1,)
            leaks += [(t, p, float(m)) for p, m in enumerate(moved) if m > atol]
    return leaks


def _describe_leaks(leaks: list[tuple[int, int, float]]) -> str:
    by_p: dict[int, tuple[int, float]] = {}
    for t, p, m in leaks:
        if p not in by_p or m > by_p[p][1]:
            by_p[p] = (t, m)
    parts = [f"position {p} (by up to {m:.3g} when the characters after position {t} changed)"
             for p, (t, m) in sorted(by_p.items())[:4]]
    more = f" and {len(by_p) - 4} more positions" if len(by_p) > 4 else ""
    return f"{len(by_p)} positions changed although only later characters did: " + "; ".join(parts) + more


def probe_causal_head(make_head: Callable[[int, int], nn.Module], n_embd: int = 16, head_size: int = 8,
                      block_size: int = 8, vocab_size: int = 27, seed: int = 0) -> list[Result]:
    """A learner's head class `make_head(n_embd, head_size)` (attributes `key`, `query`, `value`).

    Rows: the output's shape; the output against causal attention of the head's own projections
    (on a full block and on fewer positions); the causal test (`future_leaks`).
    """
    names = ("output shape (B, T, head_size)", "output against attention of its own key, query, value",
             "fewer positions than block_size", "no position sees a later character")
    if make_head is TODO:
        return [Result(n, "todo", "replace TODO with your answer") for n in names]
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)   # the head draws its weights from the global generator, as nn.Linear does
    head, err = _call(make_head, n_embd, head_size)
    if err is not None:
        return [Result(names[0], "error", f"MyHead({n_embd}, {head_size}) raised {type(err).__name__}: {err}")]
    missing = [a for a in ("key", "query", "value") if not isinstance(getattr(head, a, None), nn.Module)]
    if missing:
        return [Result(names[0], "error", f"the head has no layer {', '.join(missing)}",
                       "make key, query and value nn.Linear(n_embd, head_size, bias=False) attributes")]
    head.eval()
    emb = torch.randn(vocab_size, n_embd, generator=g)
    idx = torch.randint(0, vocab_size, (4, block_size), generator=g)
    x = emb[idx]
    with torch.no_grad():
        out, err = _call(head, x)
    if err is not None:
        return [Result(names[0], "error", f"head(x) on x of shape {tuple(x.shape)} raised {type(err).__name__}: {err}")]
    if out is TODO:
        return [Result(n, "todo", "replace TODO with your answer") for n in names]
    rows = [_shape_row(names[0], out, (4, block_size, head_size), "the head maps (B, T, n_embd) to (B, T, head_size)")]
    if not rows[0].passed:
        return rows
    rows.append(check(names[1], out, _head_reference(head, x), atol=ATOL,
                      hint=diagnose_attention(out, head.query(x), head.key(x), head.value(x))))
    short = x[:, : block_size // 2 + 1]
    got, err = _call(head, short)
    if err is not None:
        rows.append(Result(names[2], "error", f"head(x) on x of shape {tuple(short.shape)} raised "
                           f"{type(err).__name__}: {err}", "cut the mask to the input's length: tril[:T, :T]"))
    else:
        rows.append(check(names[2], got, _head_reference(head, short), atol=ATOL,
                          hint="cut the mask to the input's length: tril[:T, :T]"))
    leaks = future_leaks(lambda i: head(emb[i]), idx, vocab_size, g)
    rows.append(check_that(names[3], out, not leaks,
                           "changing the characters after each position t left every output at 0..t unchanged "
                           "(tolerance 1e-6)" if not leaks else _describe_leaks(leaks),
                           hint="mask the weights of later positions with -inf before the softmax"))
    return rows


# ---- exercise 3: multi-head attention from single heads ------------------------------------------

def multihead_reference(mh: nn.Module) -> nn.Module:
    """`mmlib.models.CausalSelfAttention` holding the weights of a learner's multi-head module.

    `mh.heads` is a list of heads with `query`, `key`, `value` (nn.Linear without bias) and
    `mh.proj` the output projection. CausalSelfAttention computes all heads' queries, keys and
    values with one matrix `qkv`: its first n_embd rows are the queries of head 0, head 1, ...,
    then the keys, then the values.
    """
    from mmlib.models import CausalSelfAttention, TransformerConfig

    heads = list(mh.heads)
    n_embd = mh.proj.weight.shape[0]
    ref = CausalSelfAttention(TransformerConfig(n_embd=n_embd, n_head=len(heads), dropout=0.0))
    with torch.no_grad():
        ref.qkv.weight.copy_(torch.cat([torch.cat([getattr(h, part).weight for h in heads])
                                        for part in ("query", "key", "value")]))
        ref.qkv.bias.zero_()
        ref.proj.weight.copy_(mh.proj.weight)
        ref.proj.bias.copy_(mh.proj.bias if mh.proj.bias is not None else torch.zeros(n_embd))
    return ref.eval()


def probe_multihead(make_mh: Callable[[int, int], nn.Module], n_embd: int = 32, n_head: int = 4,
                    block_size: int = 8, seed: int = 0) -> list[Result]:
    """A learner's `make_mh(n_embd, n_head)`: shape, then against `multihead_reference` on its weights."""
    names = ("output shape (B, T, n_embd)", "against CausalSelfAttention with the same weights")
    if make_mh is TODO:
        return [Result(n, "todo", "replace TODO with your answer") for n in names]
    torch.manual_seed(seed)
    mh, err = _call(make_mh, n_embd, n_head)
    if err is not None:
        return [Result(names[0], "error", f"MyMultiHead({n_embd}, {n_head}) raised {type(err).__name__}: {err}")]
    mh.eval()
    x = torch.randn(3, block_size, n_embd, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out, err = _call(mh, x)
    if err is not None:
        return [Result(names[0], "error", f"on x of shape {tuple(x.shape)} it raised {type(err).__name__}: {err}")]
    if out is TODO:
        return [Result(n, "todo", "replace TODO with your answer") for n in names]
    rows = [_shape_row(names[0], out, tuple(x.shape), f"concatenate the {n_head} heads' outputs (each n_embd // n_head "
                                                     "wide) on the last dimension, then apply proj")]
    if not rows[0].passed:
        return rows
    heads = getattr(mh, "heads", None)
    if heads is None or len(heads) != n_head or getattr(mh, "proj", None) is None:
        rows.append(Result(names[1], "error", f"expected `heads` (a list of {n_head} heads) and `proj` "
                                              f"(nn.Linear(n_embd, n_embd)), got heads={heads!r}"))
        return rows
    with torch.no_grad():
        want = multihead_reference(mh)(x)
    rows.append(check(names[1], out, want, atol=ATOL,
                      hint="each head sees the whole (B, T, n_embd) input; torch.cat([h(x) for h in self.heads], "
                           "dim=-1), then self.proj"))
    return rows


# ---- exercise 4: beat the lesson -------------------------------------------------------------------

def beat_target(name: str, got, target: float) -> Result:
    """`got` (a loss) must be below `target`; the row says by how much it beat or missed it."""
    if is_todo(got):
        return check_that(name, got, False, "")
    ok = got < target
    verb = "beats" if ok else "misses"
    return check_that(name, got, ok, f"{got:.4f} {verb} the lesson's {target:.4f} by {abs(target - got):.4f}",
                      hint="train longer, with a larger model (more layers, wider), or tune lr and dropout")
