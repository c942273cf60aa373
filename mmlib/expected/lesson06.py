"""Expected answers for lesson 06's exercises, each computed by a route of its own, and the probes
that run a learner's code against them.

- `attention_reference`: PyTorch's fused `scaled_dot_product_attention`, causal, or given the mask of a
  sliding window; `probe_attention` runs a learner's windowed attention function on random inputs of
  several shapes and windows and, when it disagrees, names the usual cause - a missing 1/sqrt(head size)
  scale, the window ignored or one position too wide, a mask applied after the softmax - by comparing
  with each of those variants (exercise 1).
- `probe_causal_head`: a learner's head of self-attention with a sliding window (a module with `key`,
  `query`, `value`) against the attention of its own projections, and two tests of what each position
  reads: change the characters after position t, then those more than a window before it, and report
  every position whose output moved (exercise 2).
- `probe_grouped_attention`: a learner's grouped-query attention (query heads in groups, each group sharing
  one key and one value head) against PyTorch's fused kernel on repeated keys and values; a wrong answer is
  described by which key/value head each query head actually read, or what its attention does (exercise 3).
- `beat_target`: a dev loss against the lesson's, by how much it beat or missed it (exercise 4).

The checks run the learner's code through `mmlib.checks.attempt`: whatever it raises or returns
becomes a row that says what happened, and every probe returns the same number of rows.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mmlib import checks
from mmlib.checks import TODO, Result, attempt, check, check_that, skipped_rows, tensor_problem, todo_rows

ATOL = 1e-5
"""How close is right, for float32 attention: the right answers of the catalogue (tests/wrong_answers.toml) differ
from PyTorch's fused kernel by at most 3.6e-7 (exercise 1) and 1.2e-7 (exercise 2); the closest wrong one is off
by 2.1e-2 (exercise 2) and 0.14 (exercise 1). 1e-5 sits between, with a margin of
more than 25 on the right side and 2,000 on the wrong one."""

# ((batch, heads, positions, head size), window); a 3-D case (no head dimension), a single position, a window of
# one (each position reads only itself) and one as long as the sequence (plain causal attention). No case has as
# many positions as its head size, so a scale by 1/sqrt(T) cannot pass for 1/sqrt(head size).
ATTENTION_CASES = [((2, 1, 5, 8), 2), ((3, 4, 7, 16), 3), ((1, 2, 1, 4), 1), ((4, 6, 8), 6), ((2, 3, 6, 4), 1)]


def allowed(T: int, window: int | None, device: torch.device | str = "cpu") -> torch.Tensor:
    """(T, T) booleans, True where position t (row) may read position s (column): s <= t, and with a
    `window`, t - s < window (the window counts position t itself)."""
    ok = torch.ones(T, T, dtype=torch.bool, device=device).tril()
    return ok if window is None else ok & ~ok.tril(-window)


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float | None = None,
                        window: int | None = None) -> torch.Tensor:
    """Causal softmax(q k^T * scale + mask) v by PyTorch's fused kernel; `scale` None: 1/sqrt(head size); a
    `window`: each position reads only the last `window` positions (itself included)."""
    if window is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed(q.shape[-2], window, q.device), scale=scale)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float, window: int | None,
               mask: str = "-inf", diagonal: bool = False, both_sides: bool = False, dim: int = -1) -> torch.Tensor:
    """Attention written out step by step, with one of the usual mistakes: `mask` "-inf" (right), "zero"
    (scores of the positions not allowed set to 0 instead of -inf), "after" (weights zeroed after the
    softmax, not renormalised) or "none"; `diagonal` masks each position from itself too; `both_sides`
    lets the window reach forward as well as back; `dim` the softmax's dimension."""
    T = q.shape[-2]
    scores = q @ k.transpose(-2, -1) * scale
    ok = allowed(T, window, q.device)
    hidden = ~(ok | ok.T) if both_sides else ~ok
    if diagonal:
        hidden = hidden | torch.eye(T, dtype=torch.bool, device=q.device)
    if mask == "-inf":
        scores = scores.masked_fill(hidden, float("-inf"))
    elif mask == "zero":
        scores = scores.masked_fill(hidden, 0.0)
    wei = scores.softmax(dim=dim)
    if mask == "after":
        wei = wei.masked_fill(hidden, 0.0)
    return wei @ v


def attention_variants(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       window: int | None = None) -> list[tuple[str, torch.Tensor]]:
    """The outputs of the usual mistakes, each with the sentence that names it."""
    T, hs = q.shape[-2], q.shape[-1]
    s = 1 / math.sqrt(hs)
    out = [
        (f"it matches attention without the 1/sqrt(head size) scale (here head size = {hs}): the scores' spread "
         "grows with the head size and the softmax saturates (section 3)", _attention(q, k, v, scale=1.0,
                                                                                       window=window)),
        ("it matches attention divided by the head size instead of by its square root",
         _attention(q, k, v, scale=1 / hs, window=window)),
        ("it matches attention multiplied by sqrt(head size) where it should be divided by it",
         _attention(q, k, v, scale=math.sqrt(hs), window=window)),
        (f"it matches attention scaled by 1/sqrt(T) (T = {T} positions) instead of 1/sqrt(head size) "
         f"(head size = {hs}): the scale comes from the size of q and k, not from the sequence length",
         _attention(q, k, v, scale=1 / math.sqrt(T), window=window)),
    ]
    if window is not None and window < T:
        out += [(f"it matches causal attention that ignores the window: every position reads all of 0..t, not only "
                 f"the last {_positions(window)} (window = {window})", _attention(q, k, v, scale=s, window=None))]
        out += [(f"it matches a window on both sides of t (|t - s| < {window}): the later positions inside it leak in; "
                 "the window reaches back from t, and the future stays masked",
                 _attention(q, k, v, scale=s, window=window, both_sides=True))]
        out += [(f"it matches a window one position wider (window + 1 = {window + 1} positions, t - {window}..t): "
                 "the window counts position t itself, so it reaches back to "
                 + (f"t - {window - 1}" if window > 1 else "t only"),
                 _attention(q, k, v, scale=s, window=window + 1))]
    if window is not None and 1 < window < T + 1:
        out += [(f"it matches a window one position narrower ({_positions(window - 1)}): the window "
                 f"counts position t itself and reaches back to t - {window - 1}",
                 _attention(q, k, v, scale=s, window=window - 1))]
    out += [
        ("it matches attention without any mask: every position also averages over later ones",
         _attention(q, k, v, scale=s, window=window, mask="none")),
        ("it matches attention with neither the scale nor the mask",
         _attention(q, k, v, scale=1.0, window=window, mask="none")),
        ("it matches attention whose masked weights were set to 0 after the softmax: each row's weights then no "
         "longer sum to 1; mask the scores before the softmax so it renormalises over what is left",
         _attention(q, k, v, scale=s, window=window, mask="after")),
        ("it matches attention whose masked scores were set to 0 instead of -inf: a score of 0 still gets the "
         "weight exp(0) in the softmax, so the hidden positions leak in",
         _attention(q, k, v, scale=s, window=window, mask="zero")),
        ("it matches attention that masks the diagonal too (triu(0) where triu(1) belongs): a row can then have "
         "nothing left to attend to, and a softmax of only -inf gives NaN; a position may see itself"
         + (" (with window 1, a window one position narrower leaves nothing either: the window counts position t)"
            if window == 1 else ""),
         _attention(q, k, v, scale=s, window=window, diagonal=True)),
    ]
    for d in range(q.ndim - 1):   # the softmax over any dimension but the last (q's dims are the scores' dims)
        dim_name = "dim=-2 (each column)" if d == q.ndim - 2 else f"dim={d}"
        out.append((f"it matches a softmax over {dim_name}: normalise each row (dim=-1), so that position t's "
                    "weights over the positions it reads sum to 1",
                    _attention(q, k, v, scale=s, window=window, dim=d)))
    return out


def _positions(n: int) -> str:
    return f"{n} position" + ("" if n == 1 else "s")


def diagnose_attention(got: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       window: int | None = None) -> str:
    """Which usual mistake `got` matches (within ATOL, NaN where the mistake gives NaN), or a generic hint."""
    if isinstance(got, torch.Tensor):
        g = got.detach().to("cpu", torch.float64)
        for why, out in attention_variants(q.detach().cpu(), k.detach().cpu(), v.detach().cpu(), window):
            if g.shape == out.shape and torch.allclose(g, out.double(), atol=ATOL, equal_nan=True):
                return why
    return ("follow section 3 step by step: the scores q @ k^T, their scale, the mask (the future, and what lies "
            "beyond the window), the softmax over each row, the average of the values")


# ---- recovering the operator: the attention weights an answer computes (issue 27) --------------------------
# With the values the identity (v[..., s, :] = e_s, head size >= T) the output of attention IS its matrix of weights:
# out[..., t, s] is the weight position t gives position s. From that matrix `describe_weights` reads what an answer
# does - which positions each row reads, whether each row sums to 1, by what factor the scores q . k were scaled,
# whether keys and queries swapped roles - and says it, whatever the mistake, where a list of known mistakes can
# only match the ones it lists.

def identity_values(lead: tuple[int, ...], T: int, hs: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Values that make attention's output its weights: (*lead, T, hs), v[..., s, :] = e_s (needs hs >= T)."""
    return torch.eye(T, hs, dtype=dtype).expand(*lead, T, hs).clone()


def _families(T: int) -> list[tuple[str, int, torch.Tensor]]:
    """Masks (T, T), True where row t reads column s, of the shapes a windowed causal mask takes when it goes
    wrong, each with its width w = 1..T: (kind, w, mask)."""
    t = torch.arange(T).view(-1, 1)
    s = torch.arange(T).view(1, -1)
    out = []
    for w in range(1, T + 1):
        out += [("back", w, (s <= t) & (t - s < w)), ("strict", w, (s < t) & (t - s <= w)),
                ("both", w, (t - s).abs() < w), ("forward", w, (s >= t) & (s - t < w)),
                ("anchored", w, (s <= t) & (s < w))]
        out += [("ahead", w, s - t < w)] if w > 1 else []
    return out


def _family_sentence(kind: str, w: int, T: int, window: int | None) -> str:
    want = ("t only (window 1)" if window == 1 else f"t - {window - 1}..t, the last {_positions(window)}"
            if window is not None and window < T else "all of 0..t")
    if kind == "back" and w >= T:
        return ("every position t reads all of 0..t: it ignores the window" + (f" (window = {window})" if window
                else "") + f"; it should read {want}")
    if kind == "back" and w == 1:
        return f"position t reads only itself; it should read {want}"
    if kind == "back":
        wider = window is not None and w == window + 1
        narrower = window is not None and w == window - 1
        what = (" - one position wider: the window counts position t itself" if wider else
                " - one position narrower: the window counts position t itself and reaches back to "
                f"t - {window - 1}" if narrower else "")
        return f"position t reads t - {w - 1}..t ({_positions(w)}){what}; it should read {want}"
    if kind == "strict":
        reads = "all of 0..t - 1" if w >= T - 1 else f"t - {w}..t - 1"
        return (f"position t reads {reads} but not itself: it masks the diagonal too (triu(0) where "
                f"triu(1) belongs, or t - s > 0 where t - s >= 0 belongs); a position may see itself, and position 0 "
                f"is left with nothing to read; it should read {want}")
    if kind == "both" and w >= T:
        return ("every position reads every position, the later ones too: it works without any mask (the future "
                f"is not hidden); it should read {want}")
    if kind == "both":
        return (f"position t reads t - {w - 1}..t + {w - 1}: a window on both sides of t, so the later positions "
                f"inside it leak in; the window reaches back from t, and the future stays masked; it should read "
                f"{want}")
    if kind == "forward":
        return (f"position t reads t..t + {w - 1}" + (" (all later positions)" if w >= T else "") +
                ": the window reaches forward, into the future, instead of back (tril and triu, or the sign of the "
                f"diagonal, swapped); it should read {want}")
    if kind == "ahead":
        return (f"position t reads 0..t + {w - 1}: all of its past and {_positions(w - 1)} of its future - the band "
                f"is on the wrong side of the diagonal (tril(m, {w - 1}) keeps s - t <= {w - 1}; the window is "
                f"triu(m, -{w - 1}) of the causal mask); it should read {want}")
    return (f"position t reads 0..min(t, {w - 1}): the window is anchored at the start of the sequence instead of "
            f"ending at t (positions 0..{w - 1} for every row); it should read {want}")


def _span(cols: torch.Tensor) -> str:
    idx = [int(i) for i in cols.nonzero().flatten()]
    if not idx:
        return "nothing"
    if idx == list(range(idx[0], idx[-1] + 1)):
        return f"{idx[0]}..{idx[-1]}" if len(idx) > 1 else f"{idx[0]} only"
    return "{" + ", ".join(map(str, idx)) + "}"


def read_pattern(read: torch.Tensor, want: torch.Tensor, window: int | None) -> str:
    """What the (T, T) booleans `read` (row t reads column s) do, where `want` is the mask they should be:
    "" when they are that mask, else the shape they have (a window of another width, on both sides, reaching
    forward, anchored at the start, the diagonal masked) or the first rows that differ."""
    if torch.equal(read, want):
        return ""
    T = read.shape[0]
    for kind, w, mask in _families(T):
        if torch.equal(read, mask):
            return _family_sentence(kind, w, T, window)
    rows = [t for t in range(T) if not torch.equal(read[t], want[t])][:2]
    return "; ".join(f"position {t} reads {_span(read[t])} (it should read {_span(want[t])})" for t in rows)


def name_factor(c: float, factors: list[tuple[float, str]]) -> str:
    """`c` and the first of `factors` (value, name) it equals (within 0.2%), e.g. "0.125 = 1/head size"."""
    for value, name in factors:
        if abs(c - value) <= 2e-3 * abs(value):
            return f"{c:.3g} = {name}"
    return f"{c:.3g}"


def scale_factors(hs: int, T: int, window: int | None = None, n_embd: int | None = None) -> list[tuple[float, str]]:
    """The factors a scale of attention's scores is made of, each with the clause that names it; the probes' sizes
    keep them apart (head size above T, n_embd neither a square of the head size nor equal to T)."""
    out = [(1 / math.sqrt(hs), f"1/sqrt(head size), right (head size = {hs})"),
           (1.0, "1: not scaled at all, attention without the 1/sqrt(head size) scale (the scores' spread then "
                 "grows with the head size and the softmax saturates)"),
           (1 / hs, f"1/head size (head size = {hs}): divided by the head size instead of by its square root"),
           (math.sqrt(hs), f"sqrt(head size) (head size = {hs}): multiplied by sqrt(head size) where it should be "
                           "divided by it"),
           (1 / math.sqrt(T), f"1/sqrt(T) (T = {T} positions) instead of 1/sqrt(head size) (head size = {hs}): the "
                              "scale comes from the size of q and k, not from the sequence length"),
           (1 / T, f"1/T (T = {T} positions) instead of 1/sqrt(head size) (head size = {hs})"),
           (math.sqrt(T), f"sqrt(T) (T = {T}) instead of 1/sqrt(head size) (head size = {hs})"),
           (1 / hs ** 2, f"1/head size^2 (head size = {hs}): the scale applied twice, or to q and to k?"),
           (hs ** -0.25, f"1/head size^(1/4) (head size = {hs}): the square root taken twice?")]
    if n_embd is not None:
        out += [(1 / math.sqrt(n_embd), f"1/sqrt(n_embd) (n_embd = {n_embd}, the input's width, C) instead of "
                                        f"1/sqrt(head size) (head size = {hs}): q and k have head_size numbers each"),
                (1 / n_embd, f"1/n_embd (n_embd = {n_embd}) instead of 1/sqrt(head size) (head size = {hs})")]
    if window is not None and window > 1:
        out += [(1 / math.sqrt(window), f"1/sqrt(window) (window = {window}) instead of 1/sqrt(head size) "
                                        f"(head size = {hs})")]
    return out


def _log_fit(logw: torch.Tensor, x: torch.Tensor, keep: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    """Fit logw = c * x + b_row on the entries `keep` (each row its own b, the softmax's normaliser): c, the worst
    residual, and each row's b. Rows with fewer than two entries say nothing about c."""
    k = keep.to(logw.dtype)
    n = k.sum(-1, keepdim=True)
    xm = (x * k).sum(-1, keepdim=True) / n.clamp(min=1)
    ym = (logw * k).sum(-1, keepdim=True) / n.clamp(min=1)
    use = keep & (n >= 2)
    xc, yc = (x - xm)[use], (logw - ym)[use]
    if xc.numel() == 0 or float((xc ** 2).sum()) == 0:
        return math.nan, math.inf, ym
    c = float((xc * yc).sum() / (xc ** 2).sum())
    resid = float((yc - c * xc).abs().max())
    return c, resid, ym - c * xm


def describe_weights(A: torch.Tensor, q: torch.Tensor, k: torch.Tensor, window: int | None,
                     factors: list[tuple[float, str]], scale: float, zero: float = 0.0) -> list[str]:
    """What the weights `A` (..., T, T) an answer computed from `q` and `k` do, next to causal attention with
    `window` and the scale `scale`: NaN rows, the positions each row reads, each row's sum (the softmax's dimension,
    a scale after the softmax, weights masked after it), how the scores were scaled, q and k in each other's role,
    what the hidden positions got. Empty when nothing is found to differ."""
    A, q, k = A.double(), q.double(), k.double()
    T = A.shape[-1]
    want = allowed(T, window)
    facts = []
    nan_rows = A.isnan().flatten(0, -3).any(0).any(-1) if A.ndim > 2 else A.isnan().any(-1)
    if nan_rows.any():
        if bool(nan_rows.all()):
            return []   # nothing to read a pattern from: `attention_variants` may still match it
        facts.append(f"the weights of position(s) {_span(nan_rows)} are NaN (a row whose scores are all -inf (it has "
                     "nothing left to read) gives NaN in the softmax)" + (
                         "; position 0 reads nothing, so position t itself is masked (the diagonal, or a window "
                         "narrower than it should be): a position may see itself" if bool(nan_rows[0]) else ""))
    An = A.nan_to_num(0.0)
    lead = tuple(range(A.ndim - 2))
    read = (An.abs() > zero).any(dim=lead) if lead else An.abs() > zero
    read = read & ~nan_rows.view(-1, 1)
    pattern = read_pattern(read, want & ~nan_rows.view(-1, 1), window)
    if pattern:
        facts.append(pattern)
    good = ~nan_rows
    sums = An.sum(-1)[..., good]
    if sums.numel() and not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        dims = [d for d in range(A.ndim - 1) if A.shape[d] > 1
                and torch.allclose(An.sum(d), torch.ones(()).double(), atol=1e-4)]
        c = float(sums.mean())
        plain = [(f, n.replace(", right", "")) for f, n in factors]
        if torch.allclose(sums, torch.full_like(sums, c), rtol=1e-3, atol=1e-6):
            facts.append(f"each row's weights sum to {name_factor(c, plain)}, not 1: a factor applied after the "
                         "softmax (the scale belongs to the scores, before it)")
        elif dims:
            d = dims[0]
            name = "dim=-2 (each column)" if d == A.ndim - 2 else f"dim={d}"
            facts.append(f"the weights sum to 1 over {name}, not over each row: a softmax over {name}; normalise each "
                         "row (dim=-1), so that position t's weights over the positions it reads sum to 1")
        elif bool((sums <= 1 + 1e-4).all()):
            facts.append(f"rows' weights sum to between {float(sums.min()):.3g} and {float(sums.max()):.3g}, not 1: "
                         "weights set to 0 after the softmax, which then no longer sum to 1; mask the scores before "
                         "the softmax so it renormalises over what is left")
        else:
            facts.append(f"rows' weights sum to between {float(sums.min()):.3g} and {float(sums.max()):.3g}, not 1")
    scores = q @ k.transpose(-2, -1)
    logw = An.clamp(min=1e-300).log()
    keep = read & want & good.view(-1, 1)
    keep = keep.expand_as(An) & (An > zero)
    c, resid, b = _log_fit(logw, scores, keep)
    if not math.isfinite(c):   # too few allowed positions per row (a window of 1): fit on all it reads
        keep = (read & good.view(-1, 1)).expand_as(An) & (An > zero)
        c, resid, b = _log_fit(logw, scores, keep)
    if math.isfinite(c) and resid < 1e-3:
        if abs(c - scale) > 2e-3 * scale:
            facts.append(f"the scores q . k are multiplied by {name_factor(c, factors)}"
                         + ("" if any(abs(c - f) <= 2e-3 * abs(f) for f, _ in factors[1:]) else
                            f", where 1/sqrt(head size) = {scale:.3g} belongs"))
        hidden = (read & ~want).expand_as(An) & (An > zero)
        if hidden.any() and float((logw - b).abs()[hidden].max()) < 1e-3:
            facts.append("the positions it should not read get exp(0) / sum, the weight of a score of 0: their "
                         "scores were set to 0 instead of -inf, and a score of 0 still counts in the softmax")
    elif math.isfinite(c):
        ct, rt, _ = _log_fit(logw, scores.transpose(-2, -1), keep)
        if math.isfinite(ct) and rt < 1e-3:
            facts.append("row t's weights follow k_t . q_s, not q_t . k_s: keys and queries are swapped (the scores "
                         "are q @ k^T, row t holding position t's query)")
        elif not any("sum to 1 over" in f for f in facts):
            facts.append("the weights are not a softmax of the scores q . k times one number (within a row, their "
                         "logarithms are not a straight line of q . k)")
    return facts


ROLES = [((1, 0, 2), "keys and queries swapped: it computes softmax(k @ q^T) @ v; the scores are q @ k^T, row t "
                     "holding position t's query"),
         ((0, 2, 1), "keys and values swapped: it computes softmax(q @ v^T) @ k; the scores compare queries with "
                     "keys, and the output averages the values"),
         ((2, 1, 0), "queries and values swapped: it computes softmax(v @ k^T) @ q"),
         ((1, 2, 0), "the roles of q, k and v rotated: it computes softmax(k @ v^T) @ q"),
         ((2, 0, 1), "the roles of q, k and v rotated: it computes softmax(v @ q^T) @ k")]


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> bool:
    return a.shape == b.shape and torch.allclose(a.detach().double().cpu(), b.detach().double().cpu(), atol=atol,
                                                 equal_nan=True)


def swapped_roles(got: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  reference: Callable[..., torch.Tensor]) -> str:
    """The sentence for an output that is `reference` with q, k, v in other roles ("" when none)."""
    for order, why in ROLES:
        qkv = (q, k, v)
        try:
            other = reference(*(qkv[i] for i in order))
        except (RuntimeError, ValueError, ZeroDivisionError):   # roles whose shapes do not fit together
            continue
        if _close(got, other):
            return why
    return ""


def recover_attention(call: Callable[..., torch.Tensor], lead: tuple[int, ...], T: int, hs: int, window: int | None,
                      factors: list[tuple[float, str]], seed: int = 1) -> str | None:
    """What `call(q, k, v)` computes, read from its weights: q, k random of shape (*lead, T, hs) and v the identity
    (hs > T, so that 1/sqrt(T) and 1/sqrt(head size) differ). "" when it is right on these inputs; None when its
    output cannot be read this way or nothing in it is found to differ (the caller then falls back to
    `attention_variants`)."""
    g = torch.Generator().manual_seed(seed)
    q, k, v2 = (torch.randn(*lead, T, hs, generator=g) for _ in range(3))
    v = identity_values(lead, T, hs)
    ref = attention_reference(q, k, v, window=window)
    try:
        with torch.no_grad():
            out = call(q.clone(), k.clone(), v.clone())
            out2 = call(q.clone(), k.clone(), v2.clone())
    except Exception:  # noqa: BLE001 - the probe's own rows report what raised; here it only means "no reading"
        return None
    if not (isinstance(out, torch.Tensor) and isinstance(out2, torch.Tensor) and out.shape == ref.shape
            and out2.shape == ref.shape):
        return None
    out, out2 = out.detach().double(), out2.detach().double()
    if why := swapped_roles(out2, q, k, v2, lambda a, b, c: attention_reference(a, b, c, window=window)):
        return why
    A = out[..., :T]
    if not _close(out2, A @ v2.double(), atol=1e-4) or not torch.allclose(out[..., T:].nan_to_num(0.0),
                                                                          torch.zeros(()).double(), atol=1e-5):
        return ("the output is not a weighted average of the rows of v (with v the identity, its weights show, but "
                "another v does not give those weights times v): v must enter only at the end, weights @ v")
    if _close(out, ref):
        return ""
    facts = describe_weights(A, q, k, window, factors, 1 / math.sqrt(hs))
    return "what your attention does: " + "; ".join(facts) if facts else None


@checks.on_one_thread
def probe_attention(fn: Callable, seed: int = 0) -> list[Result]:
    """One row per case: `fn(q, k, v, window)` against `scaled_dot_product_attention` with the window's
    mask, tolerance ATOL.

    A `fn` that is still `TODO` gives rows that say "not attempted yet"; one that raises or returns
    something other than a tensor gives a row that says so. A wrong output is explained by what `fn` computes
    (`explain_attention`); inputs it changes in place fail their row; when every row is right, the first case
    runs again in float64 and on the 'meta' device (a stand-in for a GPU), and a failure there fails that row.
    """
    g = torch.Generator().manual_seed(seed)
    rows = []
    for shape, window in ATTENTION_CASES:
        q, k, v = (torch.randn(shape, generator=g) for _ in range(3))
        name = f"attention on q, k, v of shape {shape}, window {window}"
        if fn is TODO:
            rows += todo_rows([name])
            continue
        given = [t.clone() for t in (q, k, v)]
        got = attempt(name, fn, *given, window, what=f"my_attention(q, k, v, {window})",
                      hint="work on the last two dimensions only (positions, head size), so any batch shape works")
        moved = checks.changed(checks.snapshot(q=q, k=k, v=v), **dict(zip("qkv", given)))
        if not got.ok:
            rows.append(got.row)
        elif problem := tensor_problem(got.value, q):
            rows.append(Result(name, "error", problem))
        elif moved:
            rows.append(Result(name, "wrong", checks.inputs_changed_sentence(moved, "my_attention")))
        else:
            row = check(name, got.value, attention_reference(q, k, v, window=window), atol=ATOL)
            if not row.passed:
                row.hint = checks.quietly(explain_attention, lambda a, b, c, w=window: fn(a, b, c, w), got.value,
                                          q, k, v, window)
            elif window == q.shape[-2]:
                row = _longer_window_row(row, fn, q, k, v, got.value)
            rows.append(row)
    _right_elsewhere(rows, "work on the last two dimensions only (positions, head size), so any batch shape works")
    if rows and all(r.passed for r in rows):
        shape, window = ATTENTION_CASES[0]
        rows[0] = _other_dtype_and_device(rows[0], lambda a, b, c: fn(a, b, c, window), shape, window,
                                          "my_attention")
    return rows


def _longer_window_row(row: Result, fn: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       plain: torch.Tensor) -> Result:
    """A row right with a window of T, run again with a window longer than the sequence: the text says any window
    of T or more is plain causal attention, so the output must not change (nor the call raise)."""
    T = q.shape[-2]
    try:
        longer = fn(q.clone(), k.clone(), v.clone(), T + 2)
    except Exception as err:  # noqa: BLE001 - the learner's error is the finding
        why = f"raises {checks.describe_error(err)}"
    else:
        if isinstance(longer, torch.Tensor) and longer.shape == plain.shape and torch.allclose(longer, plain,
                                                                                               atol=ATOL):
            return row
        why = "gives another output"
    return Result(row.name, "wrong", f"right with window {T} = T, but with window {T + 2}, longer than the {T} "
                  f"positions, it {why}: a window of T or more is plain causal attention (a mask built for "
                  f"window <= T only: clamp it, e.g. min(window, T))", row.hint)


def _right_elsewhere(rows: list[Result], rule: str) -> None:
    """Rows where the answer raised, when it is right on other cases: say which, so the sizes stand out as the
    cause (a number written in, a dimension counted from the front), followed by the exercise's `rule`."""
    right = [r.name for r in rows if r.passed]
    for r in rows:
        if right and r.status == "error" and " raised " in r.detail:
            r.hint = (f"it is right for {'; '.join(right)}, and raises here: something in it holds only for some "
                      f"sizes; {rule}")


def explain_attention(call: Callable[..., torch.Tensor], got: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                      v: torch.Tensor, window: int | None, n_embd: int | None = None) -> str:
    """Why `call(q, k, v)` gave the wrong `got`: q, k, v in other roles; else what its weights do, read with
    `recover_attention` on inputs of the same batch shape and T but a head size above T; else the usual mistake
    it matches (`diagnose_attention`); and when it is right on those inputs, that the error depends on sizes."""
    q, k, v = q.detach().cpu(), k.detach().cpu(), v.detach().cpu()
    if isinstance(got, torch.Tensor) and (why := swapped_roles(
            got, q, k, v, lambda a, b, c: attention_reference(a, b, c, window=window))):
        return why
    T, hs = q.shape[-2], q.shape[-1]
    hs_probe = hs if hs > T else T + 2   # above T: v can be the identity, and 1/sqrt(T) is not 1/sqrt(head size)
    factors = scale_factors(hs_probe, T, window, n_embd)
    why = recover_attention(call, tuple(q.shape[:-2]), T, hs_probe, window, factors)
    if why:
        return why
    variant = diagnose_attention(got, q, k, v, window)
    if why is None or not variant.startswith("follow section 3"):
        return variant
    return (f"on q, k, v of shape {(*q.shape[:-1], hs_probe)} it is right, here (head size {hs}, T = {T}, "
            f"window {window}) it is not: something in it depends on the sizes (a number written in where "
            f"q.shape belongs?); " + variant)


def _other_dtype_and_device(row: Result, call: Callable[..., torch.Tensor], shape: tuple[int, ...],
                            window: int | None, what: str, kv_shape: tuple[int, ...] | None = None) -> Result:
    """`row` (a right answer's), or a wrong one when `call(q, k, v)` is wrong in float64 or makes a tensor on the
    CPU whatever device q is on (`mmlib.checks.device_problem`, with 'meta' for the GPU)."""
    g = torch.Generator().manual_seed(2)
    q = torch.randn(shape, generator=g, dtype=torch.float64)
    k, v = (torch.randn(kv_shape or shape, generator=g, dtype=torch.float64) for _ in range(2))
    reference = grouped_reference if kv_shape else functools.partial(attention_reference, window=window)
    got = attempt(row.name, call, q, k, v, what=f"{what} on float64 inputs")
    if not got.ok:
        return Result(row.name, "wrong", got.row.detail + ": float64 inputs must work too (the dtype comes from q)")
    if not isinstance(got.value, torch.Tensor) or got.value.dtype != torch.float64 or not _close(
            got.value, reference(q, k, v), atol=1e-9):
        dtype = getattr(got.value, "dtype", type(got.value).__name__)
        return Result(row.name, "wrong", f"on float64 inputs the output is {dtype} and not within 1e-9 of the "
                      "reference: a tensor made inside in float32 (torch.tensor, torch.ones, ...) loses precision "
                      "or changes the dtype; make it with dtype=q.dtype or from q (*_like)")
    if problem := checks.device_problem(call, q, k, v, what=what):
        return Result(row.name, "wrong", problem)
    if problem := checks.gradient_problem(call, {"q": q, "k": k, "v": v}, reference, what=what):
        return Result(row.name, "wrong", problem)
    return row


# ---- exercise 2: a head with a window, and what each position reads --------------------------------

HEAD_WINDOW = 3
"""The window of the head exercise 2 checks (a window shorter than its 8 positions, so that it shows)."""


def _head_reference(head: nn.Module, x: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Attention of the head's own projections (its `query`, `key`, `value` layers), with `window`."""
    with torch.no_grad():
        return attention_reference(head.query(x), head.key(x), head.value(x), window=window)


def _changed(now: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """How far each position's output moved, (T,): the largest change over the batch and the channels
    (NaN both times is no change, NaN once is)."""
    diff = (now - before).abs().masked_fill(now.isnan() & before.isnan(), 0.0)
    return diff.reshape(now.shape[0], now.shape[1], -1).amax(dim=(0, 2)).nan_to_num(float("inf"))


def _replaced(idx: torch.Tensor, cols: slice, vocab_size: int, generator: torch.Generator) -> torch.Tensor:
    """`idx` with a different character at every position of `cols` (shifting an id by 1..V-1 never keeps it)."""
    other = idx.clone()
    part = idx[:, cols]
    other[:, cols] = (part + torch.randint(1, vocab_size, part.shape, generator=generator)) % vocab_size
    return other


def future_leaks(fn: Callable[[torch.Tensor], torch.Tensor], idx: torch.Tensor, vocab_size: int,
                 generator: torch.Generator, atol: float = 1e-6) -> list[tuple[int, int, float]]:
    """For every t, replace the characters after position t and compare `fn`'s output at 0..t.

    `fn` maps character ids (B, T) to outputs (B, T, ...); `idx` are the ids to start from.
    Returns (t, p, change) for every position p <= t whose output moved by more than `atol` when
    only characters after t changed: empty for a causal `fn`. NaN outputs count as moved.
    """
    T = idx.shape[1]
    with torch.no_grad():
        base = fn(idx)
        leaks = []
        for t in range(T - 1):
            moved = _changed(fn(_replaced(idx, slice(t + 1, None), vocab_size, generator))[:, : t + 1],
                             base[:, : t + 1])
            leaks += [(t, p, float(m)) for p, m in enumerate(moved) if not m <= atol]
    return leaks


def past_leaks(fn: Callable[[torch.Tensor], torch.Tensor], idx: torch.Tensor, vocab_size: int, window: int,
               generator: torch.Generator, atol: float = 1e-6) -> list[tuple[int, int, float]]:
    """For every t from `window` on, replace the characters at 0..t - window - the ones position t must
    not read - and compare `fn`'s output at t and after it (none of them reads those characters).

    Returns (t - window, p, change) for every such position p whose output moved by more than `atol`:
    the first entry is the last character replaced. Empty for a head that reads only its window.
    """
    T = idx.shape[1]
    with torch.no_grad():
        base = fn(idx)
        leaks = []
        for t in range(window, T):
            moved = _changed(fn(_replaced(idx, slice(0, t - window + 1), vocab_size, generator))[:, t:],
                             base[:, t:])
            leaks += [(t - window, t + i, float(m)) for i, m in enumerate(moved) if not m <= atol]
    return leaks


def _describe_leaks(leaks: list[tuple[int, int, float]], which: str) -> str:
    """`which`: "after" (future_leaks: characters after position t changed) or "at or before" (past_leaks)."""
    by_p: dict[int, tuple[int, float]] = {}
    for t, p, m in leaks:
        if p not in by_p or m > by_p[p][1]:
            by_p[p] = (t, m)
    parts = [f"position {p} (by up to {m:.3g} when the characters {which} position {t} changed)"
             for p, (t, m) in sorted(by_p.items())[:4]]
    more = f" and {len(by_p) - 4} more positions" if len(by_p) > 4 else ""
    what = "only later characters did" if which == "after" else "only characters outside their window did"
    return f"{len(by_p)} positions changed although {what}: " + "; ".join(parts) + more


def _mask_too_long(head: nn.Module, T: int) -> str:
    """The sentence for a head whose square mask (a buffer or tensor attribute) was not cut to T positions."""
    for name, t in [*head.named_buffers(), *((k, v) for k, v in vars(head).items() if isinstance(v, torch.Tensor))]:
        if t.ndim == 2 and t.shape[0] == t.shape[1] != T:
            return (f"the mask `{name}` is ({t.shape[0]}, {t.shape[0]}), made for the longest sequence, but this "
                    f"input has T = {T} positions: use only the part of it that belongs to T positions")
    return ""


@checks.on_one_thread
def probe_causal_head(make_head: Callable[..., nn.Module], n_embd: int = 16, head_size: int = 4,
                      block_size: int = 8, vocab_size: int = 27, seed: int = 0,
                      window: int = HEAD_WINDOW) -> list[Result]:
    """A learner's head class `make_head(n_embd, head_size, window)` (attributes `key`, `query`, `value`);
    `make_head(n_embd, head_size)` is the head without a window that exercise 3 builds on.

    Rows: the output's shape; the output against windowed attention of the head's own projections, and
    the same output twice in eval mode (dropout off); fewer positions; the causal test (`future_leaks`);
    the window test (`past_leaks`); the head made without a window against causal attention.
    `head_size` differs from the number of positions so a scale by 1/sqrt(T) is told apart.
    """
    names = ("output shape (B, T, head_size)",
             f"output against attention of its own key, query, value, window {window}",
             "fewer positions than block_size", "no position sees a later character",
             f"no position sees more than the last {window} characters",
             "MyHead(n_embd, head_size) without a window: causal attention")
    if make_head is TODO:
        return todo_rows(names)
    torch.manual_seed(seed)   # the head draws its weights from the global generator, as nn.Linear does
    head, failed = _made_head(make_head, names, n_embd, head_size, window)
    if failed:
        return failed
    initial = checks.snapshot(**checks.tensor_state(head))   # the state as made, before any call changes it
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(vocab_size, n_embd, generator=g)
    idx = torch.randint(0, vocab_size, (4, block_size), generator=g)
    x = emb[idx]
    out, rows = _head_output(head, x, names, head_size)
    if out is None:
        return rows
    rows.append(_output_row(names[1], head, x, out, window, make_head, initial))
    rows.append(_fewer_positions_row(names[2], head, x[:, : block_size // 2 + 1], window, full_ok=rows[1].passed))
    future = attempt(names[3], future_leaks, lambda i: head(emb[i]), idx, vocab_size, g, what="the causal test")
    rows.append(_leak_row(names[3], out, future, "after", "changing the characters after each position t left every "
                          "output at 0..t unchanged (tolerance 1e-6)",
                          "the scores of later positions must be -inf before the softmax"))
    past = attempt(names[4], past_leaks, lambda i: head(emb[i]), idx, vocab_size, window, g, what="the window test")
    rows.append(_leak_row(names[4], out, past, "at or before", f"changing the characters more than {window - 1} "
                          "positions before each position t left the outputs at t and after unchanged (tolerance 1e-6)",
                          f"position t reads positions t - {window - 1}..t: the scores of positions further back "
                          "must be -inf too"))
    rows.append(_no_window_row(names[5], make_head, n_embd, head_size, x, seed))
    if all(r.passed for r in rows):
        rows = _other_head_size(rows, names, make_head, n_embd, head_size, window, x, seed)
    if all(r.passed for r in rows) and (problem := _head_gradient_problem(head, x, window)):
        rows[1] = Result(names[1], "wrong", problem)
    return rows


def _head_gradient_problem(head: nn.Module, x: torch.Tensor, window: int) -> str:
    """`checks.gradient_problem` for a head whose outputs are right, in eval mode (dropout off) on a float64 copy:
    the gradient reaching x must be the one through attention of its own projections."""
    try:
        copy64 = copy.deepcopy(head).double().eval()
    except Exception:  # noqa: BLE001 - a head that cannot be copied was judged by the rows above
        return ""
    return checks.gradient_problem(copy64, {"x": x}, lambda t: attention_reference(
        copy64.query(t), copy64.key(t), copy64.value(t), window=window), what="the head")


def _other_head_size(rows: list[Result], names: tuple[str, ...], make_head: Callable[..., nn.Module], n_embd: int,
                     head_size: int, window: int, x: torch.Tensor, seed: int) -> list[Result]:
    """The rows after a head of another size (head_size + 2: not the probe's, and not its number of positions, so its
    scale is neither's) has answered the same input: a number typed in for `head_size` shows."""
    other = head_size + 2
    torch.manual_seed(seed)
    head, failed = _made_head(make_head, names, n_embd, other, window)
    out, made = (None, failed) if failed else _head_output(head, x, names, other)
    row = made[0] if out is None else _output_row(names[1], head, x, out, window)
    if row.passed:
        return rows
    which = 0 if out is None else 1
    return [*rows[:which], Result(names[which], "wrong", f"right for head_size {head_size}, but with head_size "
                                  f"{other}: {row.detail} (a number typed in that holds for head_size {head_size} "
                                  f"only, such as its scale {head_size}**-0.5 = {head_size ** -0.5:g}?)", row.hint),
            *rows[which + 1:]]


def _leak_row(name: str, out: torch.Tensor, leaks: checks.Outcome, which: str, ok: str, hint: str) -> Result:
    """The row of a leak test (`future_leaks`, `past_leaks`): `ok` when nothing leaked, else the leaks."""
    if not leaks.ok:
        return leaks.row
    if not leaks.value:
        return check_that(name, out, True, ok)
    return check_that(name, out, False, _describe_leaks(leaks.value, which), hint=hint)


def _made_head(make_head: Callable[..., nn.Module], names: tuple[str, ...], n_embd: int, head_size: int,
               *window: int) -> tuple[nn.Module | None, list[Result]]:
    """The learner's head in eval mode, or no head and the rows that say why it could not be made."""
    call = f"MyHead({', '.join(map(str, (n_embd, head_size, *window)))})"
    made = attempt(names[0], make_head, n_embd, head_size, *window, what=call)
    if not made.ok:
        return None, [made.row, *(todo_rows(names[1:]) if made.row.status == "todo" else
                                  skipped_rows(names[1:], "the head could not be made"))]
    head = made.value
    missing = [a for a in ("key", "query", "value") if not isinstance(getattr(head, a, None), nn.Module)]
    if not isinstance(head, nn.Module) or missing:
        return None, [Result(names[0], "error", f"the head has no layer {', '.join(missing) or 'at all'}",
                             "key, query and value are nn.Linear(n_embd, head_size, bias=False) attributes of an "
                             "nn.Module"),
                      *skipped_rows(names[1:], "the head's layers are missing")]
    return head.eval(), []


def _head_output(head: nn.Module, x: torch.Tensor, names: tuple[str, ...],
                 head_size: int) -> tuple[torch.Tensor | None, list[Result]]:
    """head(x) and the shape row; no output (and every row) when it raised or has the wrong shape."""
    B, T, _ = x.shape
    with torch.no_grad():
        out = attempt(names[0], head, x, what=f"head(x) on x of shape {tuple(x.shape)}")
    if not out.ok:
        if out.row.status == "todo":
            return None, todo_rows(names)
        cause = _mask_too_long(head, T)
        row = Result(names[0], "error", out.row.detail + (f": {cause}" if cause else ""))
        return None, [row, *skipped_rows(names[1:], "head(x) raised")]
    problem = tensor_problem(out.value, x)
    if not problem and tuple(out.value.shape) != (B, T, head_size):
        problem = f"expected {(B, T, head_size)} for an input of that batch and length, got {tuple(out.value.shape)}"
    if problem:
        return None, [Result(names[0], "shape" if isinstance(out.value, torch.Tensor) else "error", problem,
                             "the head maps (B, T, n_embd) to (B, T, head_size)"),
                      *skipped_rows(names[1:], "the output's shape is wrong")]
    return out.value, [Result(names[0], "exact", f"{(B, T, head_size)}")]


def _output_row(name: str, head: nn.Module, x: torch.Tensor, out: torch.Tensor, window: int | None,
                make_head: Callable[..., nn.Module] | None = None,
                initial: dict[str, torch.Tensor] | None = None) -> Result:
    """The output against attention of the head's own projections; first, that eval mode is deterministic; a
    wrong output is explained by `explain_head`, a right one must also keep the module's state right
    (`head_state_problems`)."""
    with torch.no_grad():
        again = attempt(name, head, x, what="head(x)")
        q, k, v = head.query(x), head.key(x), head.value(x)
    if again.ok and isinstance(again.value, torch.Tensor) and not (
            again.value.shape == out.shape and torch.equal(again.value.isnan(), out.isnan())
            and torch.equal(again.value.nan_to_num(), out.nan_to_num())):
        return Result(name, "wrong", "two calls on the same input in eval mode gave different outputs: "
                      "dropout is still on after head.eval()",
                      "F.dropout drops in eval mode too unless told training=self.training; an nn.Dropout "
                      "module follows .eval() by itself")
    row = check(name, out, _head_reference(head, x, window), atol=ATOL)
    if not row.passed:
        row.hint = ((checks.quietly(explain_head, make_head, window) if make_head is not None else "")
                    or checks.quietly(diagnose_attention, out, q, k, v, window))
    elif problems := checks.quietly(head_state_problems, head, x, initial or {}, default=[]):
        return Result(name, "wrong", "the output is right, but " + "; ".join(problems))
    return row


# The head `explain_head` reads: n_embd 20 (not a square of the head size, not T), head size 8 (above T, so its
# values can stand for any T x T weights; 1/sqrt(8), 1/8, 1/sqrt(20), 1/sqrt(6) all differ), 6 positions.
EXPLAIN_HEAD = (20, 8, 6)


def explain_head(make_head: Callable[..., nn.Module], window: int | None) -> str:
    """What a head computes, read from its weights: the weights A solve out = A @ value(x) (value(x) has rank T,
    head size > T); if the output is no average of the values, whether it averages the keys or queries; then
    `describe_weights` against its own q and k. "" when it cannot be read (it raises, wrong shapes)."""
    C, hs, T = EXPLAIN_HEAD
    torch.manual_seed(3)
    try:
        head = make_head(C, hs, window) if window is not None else make_head(C, hs)
        head.eval()
        x = torch.randn(2, T, C, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            out = head(x)
            q, k, v = head.query(x), head.key(x), head.value(x)
    except Exception:  # noqa: BLE001 - the probe's rows report what raised
        return ""
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, T, hs):
        return ""
    out = out.double()
    nan_rows = out.isnan().any(-1, keepdim=True)        # a NaN row stays NaN; the others are solved for
    finite = out.masked_fill(nan_rows, 0.0)
    averaged = None
    for what, vals in (("values", v), ("keys", k), ("queries", q)):
        A = finite @ torch.linalg.pinv(vals.double())
        if torch.allclose(A @ vals.double(), finite, atol=1e-4):
            averaged = what, A.masked_fill(nan_rows, math.nan)
            break
    if averaged is None:
        return ("the output is not a weighted average of value(x) (nor of the keys or queries): the last step is "
                "the weights times self.value(x)")
    what, A = averaged
    facts = [] if what == "values" else [f"it averages the {what}, not the values: the output is the weights times "
                                         f"self.value(x), the {what} only set the weights"]
    facts += describe_weights(A, q, k, window, scale_factors(hs, T, window, n_embd=C), 1 / math.sqrt(hs), zero=1e-5)
    if not facts:
        return ""
    return f"what your head does (MyHead({C}, {hs}{f', {window}' if window else ''}) on {T} positions): " + "; ".join(
        facts)


def head_state_problems(head: nn.Module, x: torch.Tensor, initial: dict[str, torch.Tensor]) -> list[str]:
    """What is wrong with a head whose output is right: its parameters and buffers against the lesson's
    (`mmlib.checks.module_inventory`), a buffer its calls changed (against `initial`, the state as made, and
    across one more call), a tensor it makes on the CPU whatever device
    the head is on (a copy of it moved to 'meta', standing in for a GPU)."""
    import copy
    C, hs = x.shape[-1], head.query.weight.shape[0] if isinstance(getattr(head.query, "weight", None),
                                                                  torch.Tensor) else None
    expected = {f"{a}.weight": (hs, C) for a in ("key", "query", "value")}
    problems = checks.module_inventory(head, expected, buffers=("tril", "mask", "band", "keep", "allowed"))
    with torch.no_grad():
        try:
            moved = checks.buffers_changed_by(head, lambda: head(x))
        except Exception:  # noqa: BLE001 - it ran a moment ago; an error now is itself the change
            moved = []
    params = dict(head.named_parameters(remove_duplicate=False))
    moved += [n for n in checks.changed({k: t for k, t in initial.items() if k not in params},
                                        **checks.tensor_state(head)) if n not in moved]
    if moved:
        problems.append(f"forward changed {', '.join(f'`{n}`' for n in moved)} (in place, or by assigning to it): "
                        "the module's saved state must not depend on the calls it has seen - the next call, or a "
                        "head with another window, reads the changed tensor; cut a copy: keep = self.tril[:T, :T]...")
    try:
        meta = copy.deepcopy(head).to("meta")
    except Exception:  # noqa: BLE001 - a head that cannot be copied is not judged on devices
        meta = None
    if meta is not None and not problems and (problem := checks.device_problem(meta, x, what="the head")):
        problems.append(problem)
    return problems


def _fewer_positions_row(name: str, head: nn.Module, short: torch.Tensor, window: int, full_ok: bool) -> Result:
    """The head on fewer positions than block_size: its mask must be cut to the input's length."""
    with torch.no_grad():
        got = attempt(name, head, short, what=f"head(x) on x of shape {tuple(short.shape)}")
    if not got.ok:
        cause = _mask_too_long(head, short.shape[1])
        return Result(name, "error", got.row.detail + (f": {cause}" if cause else ""))
    # Only when the full-length output is right does a wrong shorter one point at the mask's length.
    hint = "the mask must be cut to the input's length" if full_ok else "fix the row above first"
    return check(name, got.value, _head_reference(head, short, window), atol=ATOL, hint=hint)


def _no_window_row(name: str, make_head: Callable[..., nn.Module], n_embd: int, head_size: int, x: torch.Tensor,
                   seed: int) -> Result:
    """The head made without a window (window=None by default) must be plain causal attention."""
    torch.manual_seed(seed)
    head, failed = _made_head(make_head, (name,), n_embd, head_size)
    if failed:
        return Result(name, "error", failed[0].detail, "give window a default of None: no window, every position "
                      "reads all of 0..t (exercise 3 makes its heads without one)")
    made = copy.deepcopy(head)       # as made, for `history_problem`: before any call could change it
    with torch.no_grad():
        out = attempt(name, head, x, what=f"MyHead({n_embd}, {head_size})(x)")
        if not out.ok:
            return out.row
        if problem := tensor_problem(out.value, x):
            return Result(name, "error", problem)
        q, k, v = head.query(x), head.key(x), head.value(x)
    row = check(name, out.value, _head_reference(head, x), atol=ATOL)
    if not row.passed:
        row.hint = "without a window the head is section 3's causal attention: " + (
            checks.quietly(explain_head, make_head, None) or checks.quietly(diagnose_attention, out.value, q, k, v))
    elif history := checks.history_problem(made, x[:, : max(1, x.shape[1] // 2 - 1)], x, what="the head"):
        return Result(name, "wrong", f"right on a first call, but {history}")
    return row


# ---- exercise 3: grouped-query attention -------------------------------------------------------------

# (batch, query heads, key/value heads, positions, head size). Groups of 2, 2 (with 3 key/value heads, so that
# head h % 3 and h // 2 differ), 4, one shared key/value head (multi-query), one per query head (plain multi-head)
# and a single position. No case has as many positions as its head size, so 1/sqrt(T) cannot pass for the scale.
GROUPED_CASES = [(2, 4, 2, 5, 8), (1, 6, 3, 7, 4), (2, 8, 2, 9, 4), (2, 4, 1, 6, 16), (1, 4, 4, 5, 8),
                 (3, 6, 2, 1, 4)]


def grouped_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal grouped-query attention by PyTorch's fused kernel: query head h reads key/value head
    h // (n_head // n_kv_head), so neighbouring query heads share one key and one value."""
    group = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1),
                                          is_causal=True)


def _heads_read(got: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> list[int | None]:
    """For each query head of `got`, the key/value head whose causal attention it equals (None: no one's)."""
    read = []
    for h in range(q.shape[1]):
        match = [j for j in range(k.shape[1])
                 if torch.allclose(got[:, h].double(), attention_reference(q[:, h], k[:, j], v[:, j]).double(),
                                   atol=ATOL)]
        read.append(match[0] if match else None)
    return read


def diagnose_grouped(got: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     call: Callable[..., torch.Tensor] | None = None) -> str:
    """What a wrong grouped-query output computes: q, k, v in other roles; which key/value head each query head
    read; else, read from its weights (`recover_grouped`, when `call` is given), which key and value heads each
    query head reads and what its attention does; else, for the first query head that matches no key/value head's
    attention, the usual mistake it matches (as in exercise 1)."""
    n_head, n_kv = q.shape[1], k.shape[1]
    group = n_head // n_kv
    want = [h // group for h in range(n_head)]
    if why := swapped_roles(got, q, k, v, grouped_reference):
        return why
    read = _heads_read(got, q, k, v)
    if None not in read:
        if read == [h % n_kv for h in range(n_head)]:
            return (f"query head h read key/value head h % {n_kv} ({read}): the key/value heads were tiled "
                    f"(what .repeat does), so neighbouring query heads read different groups; head h belongs to "
                    f"group h // {group} ({want}), which .repeat_interleave(..., dim=1) gives")
        return (f"the query heads read the key/value heads {read}, but query head h belongs to group "
                f"h // (n_head // n_kv_head) = h // {group}: {want}")
    if call is not None and (why := recover_grouped(call, q.shape[0], q.shape[1], k.shape[1], q.shape[2])):
        return why
    h = read.index(None)
    j = want[h]
    why = diagnose_attention(got[:, h], q[:, h], k[:, j], v[:, j])
    return f"query head {h} (of group {j}) is not causal attention of q head {h} with key/value head {j}: {why}"


def recover_grouped(call: Callable[..., torch.Tensor], B: int, n_head: int, n_kv: int, T: int,
                    seed: int = 1) -> str:
    """What `call(q, k, v)` does, read from its weights: value head j is the identity placed in columns
    j*T .. j*T + T - 1 (head size n_kv * T + 1, above T), so query head h's output shows, block by block, which
    value heads it averaged and with what weights; its key head is the one whose scores explain those weights.
    "" when the output cannot be read this way or is right on these inputs."""
    hs = n_kv * T + 1
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, n_head, T, hs, generator=g)
    k = torch.randn(B, n_kv, T, hs, generator=g)
    v = torch.zeros(B, n_kv, T, hs)
    for j in range(n_kv):
        v[:, j, :, j * T:(j + 1) * T] = torch.eye(T)
    try:
        with torch.no_grad():
            out = call(q.clone(), k.clone(), v.clone())
    except Exception:  # noqa: BLE001 - the probe's rows report what raised; here it only means "no reading"
        return ""
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (B, n_head, T, hs):
        return ""
    out = out.detach().double()
    if _close(out, grouped_reference(q, k, v)):
        return ""
    group = n_head // n_kv
    factors = scale_factors(hs, T) + [(1 / math.sqrt(n_head * hs), f"1/sqrt(n_head * head size) (= 1/sqrt("
                                       f"{n_head * hs}), the model's width) instead of 1/sqrt(head size) "
                                       f"(head size = {hs})")]
    heads = []
    for h in range(n_head):
        blocks = [out[:, h, :, j * T:(j + 1) * T] for j in range(n_kv)]
        values = [j for j, blk in enumerate(blocks) if blk.nan_to_num(0.0).abs().max() > 1e-6]
        A = sum(blocks)
        keyed = [(describe_weights(A, q[:, h], k[:, j], None, factors, 1 / math.sqrt(hs)), j) for j in range(n_kv)]
        facts, key = min(keyed, key=lambda fj: (len(fj[0]), fj[1] != h // group))
        heads.append((h, values, key, facts))
    msgs = []
    val_read = [vals[0] if len(vals) == 1 else vals for _, vals, _, _ in heads]
    key_read = [key for _, _, key, _ in heads]
    want = [h // group for h in range(n_head)]
    if val_read != want or key_read != want:
        msgs.append(f"query heads 0..{n_head - 1} read the keys of key/value heads {key_read} and the values of "
                    f"{val_read}; query head h belongs to group h // (n_head // n_kv_head) = h // {group}: {want}")
    first = next(((h, facts) for h, _, _, facts in heads if facts), None)
    if first:
        msgs.append(f"query head {first[0]}'s attention: " + "; ".join(first[1]))
    return ("what your grouped attention does (q, k, v with head size " + str(hs) + "): " + "; ".join(msgs)
            if msgs else "")


@checks.on_one_thread
def probe_grouped_attention(fn: Callable, seed: int = 0) -> list[Result]:
    """One row per case of GROUPED_CASES: `fn(q, k, v)` against `grouped_reference`, tolerance ATOL; a wrong
    output is described by `diagnose_grouped`, and inputs the function changed in place are named."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for B, n_head, n_kv, T, hs in GROUPED_CASES:
        q = torch.randn(B, n_head, T, hs, generator=g)
        k, v = (torch.randn(B, n_kv, T, hs, generator=g) for _ in range(2))
        name = f"{n_head} query heads, {n_kv} key/value head{'s' * (n_kv > 1)}, {T} position{'s' * (T > 1)}"
        if fn is TODO:
            rows += todo_rows([name])
            continue
        given = [t.clone() for t in (q, k, v)]
        got = attempt(name, fn, *given, what="my_grouped_attention(q, k, v)")
        changed = [n for n, before, after in zip("qkv", (q, k, v), given) if not torch.equal(before, after)]
        want_shape = (B, n_head, T, hs)
        if not got.ok:
            rows.append(got.row)
        elif problem := tensor_problem(got.value, q):
            rows.append(Result(name, "error", problem))
        elif changed:
            rows.append(Result(name, "wrong", f"my_grouped_attention changed its input {' and '.join(changed)} in "
                                              "place, and the caller may still need it (a cache keeps k and v "
                                              "for later positions): compute new tensors, e.g. q = q * scale or "
                                              "k = k.repeat_interleave(...), not q *= scale"))
        elif tuple(got.value.shape) != want_shape:
            cause = (": one output per key/value head; each query head needs its own, so expand k and v to n_head "
                     "heads first" if tuple(got.value.shape) == (B, n_kv, T, hs) else "")
            rows.append(Result(name, "shape", f"expected (B, n_head, T, head_size) = {want_shape}, got "
                                              f"{tuple(got.value.shape)}{cause}"))
        else:
            row = check(name, got.value, grouped_reference(q, k, v), atol=ATOL)
            if not row.passed:
                row.hint = checks.quietly(diagnose_grouped, got.value.detach(), q, k, v, fn)
            rows.append(row)
    _right_elsewhere(rows, "each key/value head serves n_head // n_kv_head query heads, whatever the sizes")
    if rows and all(r.passed for r in rows):
        B, n_head, n_kv, T, hs = GROUPED_CASES[0]
        rows[0] = _other_dtype_and_device(rows[0], fn, (B, n_head, T, hs), None, "my_grouped_attention",
                                          kv_shape=(B, n_kv, T, hs))
    return rows


def kv_cache_numbers(n_layer: int, n_head: int, n_kv_head: int, head_size: int) -> int:
    """Numbers a key/value cache holds per position while sampling: a key and a value of every key/value head,
    in every layer."""
    return 2 * n_layer * n_kv_head * head_size


# ---- exercise 4: beat the lesson -------------------------------------------------------------------

BEAT_HINT = "train longer, with a larger model (more layers, wider), or tune lr and dropout"


def beat_target(name: str, got, target: float, *, problem: str = "") -> Result:
    """`got` (a dev loss) must be below `target` (`mmlib.checks.beat_target` with this lesson's hint);
    `problem` (`mmlib.checks.shares_parameters`) is a reason the run does not count."""
    return checks.beat_target(name, got, target, hint=BEAT_HINT, problem=problem)
