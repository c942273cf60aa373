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


def probe_attention(fn: Callable, seed: int = 0) -> list[Result]:
    """One row per case: `fn(q, k, v, window)` against `scaled_dot_product_attention` with the window's
    mask, tolerance ATOL.

    A `fn` that is still `TODO` gives rows that say "not attempted yet"; one that raises or returns
    something other than a tensor gives a row that says so.
    """
    g = torch.Generator().manual_seed(seed)
    rows = []
    for shape, window in ATTENTION_CASES:
        q, k, v = (torch.randn(shape, generator=g) for _ in range(3))
        name = f"attention on q, k, v of shape {shape}, window {window}"
        if fn is TODO:
            rows += todo_rows([name])
            continue
        got = attempt(name, fn, q, k, v, window, what=f"my_attention(q, k, v, {window})",
                      hint="work on the last two dimensions only (positions, head size), so any batch shape works")
        if not got.ok:
            rows.append(got.row)
        elif problem := tensor_problem(got.value, q):
            rows.append(Result(name, "error", problem))
        else:
            rows.append(check(name, got.value, attention_reference(q, k, v, window=window), atol=ATOL,
                              hint=diagnose_attention(got.value, q, k, v, window)))
    return rows


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
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(vocab_size, n_embd, generator=g)
    idx = torch.randint(0, vocab_size, (4, block_size), generator=g)
    x = emb[idx]
    out, rows = _head_output(head, x, names, head_size)
    if out is None:
        return rows
    rows.append(_output_row(names[1], head, x, out, window))
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
    return rows


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


def _output_row(name: str, head: nn.Module, x: torch.Tensor, out: torch.Tensor, window: int | None) -> Result:
    """The output against attention of the head's own projections; first, that eval mode is deterministic."""
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
    return check(name, out, _head_reference(head, x, window), atol=ATOL,
                 hint=diagnose_attention(out, q, k, v, window))


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
    with torch.no_grad():
        out = attempt(name, head, x, what=f"MyHead({n_embd}, {head_size})(x)")
        if not out.ok:
            return out.row
        if problem := tensor_problem(out.value, x):
            return Result(name, "error", problem)
        q, k, v = head.query(x), head.key(x), head.value(x)
    return check(name, out.value, _head_reference(head, x), atol=ATOL,
                 hint="without a window the head is section 3's causal attention: " + diagnose_attention(out.value,
                                                                                                   q, k, v))


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


def diagnose_grouped(got: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """What a wrong grouped-query output computes: which key/value head each query head read, or, for the first
    query head that matches no key/value head's attention, what its attention does (as in exercise 1)."""
    n_head, n_kv = q.shape[1], k.shape[1]
    group = n_head // n_kv
    want = [h // group for h in range(n_head)]
    read = _heads_read(got, q, k, v)
    if None not in read:
        if read == [h % n_kv for h in range(n_head)]:
            return (f"query head h read key/value head h % {n_kv} ({read}): the key/value heads were tiled "
                    f"(what .repeat does), so neighbouring query heads read different groups; head h belongs to "
                    f"group h // {group} ({want}), which .repeat_interleave(..., dim=1) gives")
        return (f"the query heads read the key/value heads {read}, but query head h belongs to group "
                f"h // (n_head // n_kv_head) = h // {group}: {want}")
    h = read.index(None)
    j = want[h]
    why = diagnose_attention(got[:, h], q[:, h], k[:, j], v[:, j])
    return f"query head {h} (of group {j}) is not causal attention of q head {h} with key/value head {j}: {why}"


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
            rows.append(check(name, got.value, grouped_reference(q, k, v), atol=ATOL,
                              hint=diagnose_grouped(got.value.detach(), q, k, v)))
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
