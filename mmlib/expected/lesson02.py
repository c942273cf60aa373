"""Expected values for lesson 02 (the MLP), each computed by a route of its own.

The lesson builds its datasets with `mmlib.data.build_dataset`, looks embeddings up by indexing
and scores with `F.cross_entropy` in float32. The references here rebuild the contexts with a
plain Python loop, look embeddings up as one-hot rows times `C`, and score with a hand-written,
max-shifted log-softmax in float64. So a check that compares the two is not comparing the
lesson's code with itself, and a learner who reports a dev loss is checked against an
independent re-evaluation of the parameters they hand in.

`check_direct_connections` is exercise 3's whole check (it is more than one row of `check`), here
so that the notebook's check cell is one call and the tests can call it directly.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmlib.checks import (
    Report,
    Result,
    check,
    check_that,
    closer_than_tolerance,
    explain,
    is_todo,
    name_sizes,
    quietly,
    show,
    tensor_state,
)
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
def mlp_loss(params: Mapping[str, torch.Tensor], words: Sequence[str], vocab: Vocab, chunk: int = 8192,
             limit: int | None = None) -> float:
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
    X, Y = X[:limit], Y[:limit]   # limit: the first examples only (what a loss of one minibatch would be)
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


def check_direct_connections(direct_params, direct_dev_loss, words: Sequence[str], vocab: Vocab, block_size: int,
                             n_embd: int = 10, *, title: str = "Exercise 3: direct connections",
                             display: bool = True, train_words: Sequence[str] = (),
                             namespace: Mapping[str, Any] | None = None) -> tuple[Report, dict[str, float]]:
    """Exercise 3: the shape of `W_direct`, the reported dev loss, whether `W_direct` is used at all, and
    whether the model that trained them follows the exercise's gradient.

    `direct_params` is the dict of tensors handed in (a model's `state_dict()`; a `torch.nn.Module`
    is read through its `state_dict()`), `words` the dev names. The dev loss is re-evaluated by
    `mlp_loss` with and without `W_direct`: if removing it changes nothing, it was not trained or not
    used. With the notebook's `namespace`, the module that holds `direct_params` is found there and its
    gradient compared with the exercise's (`training_gradient_problem`): parameters and loss agree with
    each other whatever gradient trained them, so only the model can show a path cut from autograd.
    Parameters that cannot be evaluated (wrong shapes) give failed rows that say why, not a
    traceback. Returns the report and the two re-evaluated losses (NaN when they could not be computed).
    """
    found = quietly(training_module, direct_params, namespace, default=None) if namespace is not None else None
    if isinstance(direct_params, torch.nn.Module):
        direct_params = direct_params.state_dict()
    want_shape = (block_size * n_embd, len(vocab))
    if is_todo(direct_params):
        shape = direct_params
    elif isinstance(direct_params, Mapping):
        shape = tuple(direct_params["W_direct"].shape) if "W_direct" in direct_params else None
    else:
        shape = type(direct_params).__name__
    detail = f"got {shape}, expected {want_shape}"
    if isinstance(shape, tuple) and shape != want_shape and shape:
        named = name_sizes(shape, {"block_size * n_embd": block_size * n_embd, "n_embd": n_embd,
                                   "vocab_size": len(vocab), "block_size": block_size,
                                   "n_hidden": direct_params["W1"].shape[-1] if "W1" in direct_params else -1})
        detail += f": your W_direct is {named}" + (
            " (the transpose: the inputs are the rows, x @ W_direct)" if shape == want_shape[::-1] else "")
        if shape[0] == n_embd and shape != want_shape:
            detail += (": one embedding's worth of inputs (one position, or the positions summed or averaged) "
                       "where the concatenation of all block_size embeddings belongs")
        elif "W1" in direct_params and shape[0] == direct_params["W1"].shape[-1] and shape != want_shape:
            detail += ": it connects the hidden layer h (a second W2), where the embeddings belong"
    elif shape is None and isinstance(direct_params, Mapping):
        detail += f": direct_params has no 'W_direct' (its keys: {sorted(direct_params)})"
    shape_row = check_that("W_direct shape", shape, shape == want_shape, detail,
                           hint="one weight per (concatenated embedding number, output character) pair")
    try:
        with_direct = mlp_loss(direct_params, words, vocab)
        without = (direct_params if is_todo(direct_params)
                   else {k: v for k, v in direct_params.items() if k != "W_direct"})
        without_direct = mlp_loss(without, words, vocab)
        problem = None
    except (ValueError, AttributeError) as e:   # malformed parameters: a failed row instead of a traceback
        with_direct = without_direct = float("nan")
        problem = f"cannot evaluate direct_params: {e}"
    gradient_row = ["trained by the exercise's gradient"] if namespace is not None else []
    if problem:
        rows = [Result(name, "error", problem, hint="fix the shapes in direct_params first")
                for name in ("direct_dev_loss", "W_direct is used", *gradient_row)]
    else:
        row_loss = check("direct_dev_loss", direct_dev_loss, with_direct, atol=1e-4,
                         hint="report the dev loss of the model in direct_params, with its direct connections")
        P = as_params(direct_params)
        row_loss = explain(row_loss, direct_dev_loss, lambda: itertools.chain(
            [("the dev loss of your parameters without W_direct (the direct connections left out of the loss)",
              without_direct)], direct_variants(P, words, vocab, n_embd),
            loss_candidates(P, vocab, {"dev": words, **({"training": train_words} if train_words else {})}, "dev")),
            atol=1e-4, rtol=1e-5)
        used = check_that("W_direct is used", direct_dev_loss, abs(with_direct - without_direct) > 1e-3,
                          f"dev loss {with_direct:.4f} with W_direct, {without_direct:.4f} with it removed",
                          hint="was W_direct trained? it must be a parameter of the model and used in its "
                               "forward pass")
        if not used.passed and used.status == "wrong" and "W_direct" in P:
            Wd = P["W_direct"].detach()
            why = ("W_direct is all zeros: it never changed from a zero start (not an nn.Parameter the optimiser "
                   "updates, or not used in forward, so its gradient is zero)" if not bool(Wd.any()) else
                   f"W_direct's entries are at most {Wd.abs().max().item():.3g} in size: too small to change the "
                   f"logits (was it trained?)")
            used = Result(used.name, "wrong", f"{used.detail}; {why}", used.hint)
        rows = [row_loss, used]
        if gradient_row and is_todo(direct_params):
            rows.append(Result(gradient_row[0], "todo", "replace TODO with your answer"))
        elif gradient_row and found is None:
            unchecked = ("no nn.Module of the notebook holds these tensors (trained by a loop of your own?): how "
                         "they were trained is not checked")
            rows.append(Result(gradient_row[0], "close", unchecked))
        elif gradient_row:
            name, module, names = found
            problem = quietly(training_gradient_problem, module, names, words, vocab, block_size, what=name)
            rows.append(check_that(gradient_row[0], name, not problem,
                                   problem or f"{name}'s loss gives {', '.join(names)} the gradient of the "
                                              f"exercise's model", hint="train W_direct and the embeddings through "
                                   "the same emb as the hidden layer, with nothing detached"))
    rep = Report([shape_row, *rows], title)
    if display:
        show(rep)
    return rep, {"dev_loss_reevaluated": with_direct, "dev_loss_without_direct": without_direct}


def training_module(params: Any, namespace: Mapping[str, Any], needs: str = "W_direct"
                    ) -> tuple[str, nn.Module, dict[str, str]] | None:
    """The module of the notebook that holds the tensors of `params` (which must hold `needs`): its name there, the
    module, and the name in the module of each handed-in tensor; None when no module holds them all (parameters
    trained without one).

    A tensor is held when it is the same memory (a `state_dict()`) or the same values (clones of it)."""
    P = as_params(params)
    if not isinstance(P, Mapping) or needs not in P:
        return None
    wanted = {k: v for k, v in P.items() if isinstance(v, torch.Tensor)}

    def same(t: torch.Tensor, p: torch.Tensor) -> bool:
        if t.shape != p.shape or t.dtype != p.dtype or t.device != p.device:
            return False
        same_memory = (t.untyped_storage().data_ptr(), t.storage_offset()) == \
            (p.untyped_storage().data_ptr(), p.storage_offset())
        return same_memory or bool(torch.equal(t.detach(), p.detach()))

    for name, obj in list(namespace.items()):
        if not isinstance(obj, nn.Module) or name.startswith("_"):
            continue
        state = tensor_state(obj)
        names = {k: next((n for n, t in state.items() if same(t, p)), None) for k, p in wanted.items()}
        if all(names.values()):
            return name, obj, names
    return None


def direct_logits(P: Mapping[str, torch.Tensor], X: torch.Tensor, cut: str = "") -> torch.Tensor:
    """The lesson's logits, tanh(emb @ W1 + b1) @ W2 + b2 (+ emb @ W_direct when `P` holds it), from indexing;
    `cut` detaches one path as a wrong answer might ("direct": emb on the direct path, "hidden": emb into the hidden
    layer, "h": the hidden layer's output), for naming which path a gradient misses."""
    emb = P["C"][X].reshape(len(X), -1)
    h = torch.tanh((emb.detach() if cut == "hidden" else emb) @ P["W1"] + P["b1"])
    logits = (h.detach() if cut == "h" else h) @ P["W2"] + P["b2"]
    if "W_direct" in P:
        logits = logits + (emb.detach() if cut == "direct" else emb) @ P["W_direct"]
    return logits


CUT_PATHS = {
    "direct": "the embeddings are detached on the direct path (emb.detach() @ W_direct, or .data), so C gets no "
              "gradient through the direct connections",
    "hidden": "the embeddings are detached where they enter the hidden layer, so C gets no gradient through it",
    "h": "the hidden layer's output is detached, so W1, b1 and C get no gradient through it",
}


def _jitter(T: Mapping[str, torch.Tensor], seed: int = 0) -> None:
    """Move every tensor a little, in place (a copy's): a tensor still at a special value (W_direct all zeros, as it
    starts and as it stays when it never trains) would hide a term that is missing from the loss or the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in T.values():
            t.add_(0.05 * torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype))


def training_gradient_problem(module: nn.Module, names: Mapping[str, str], words: Sequence[str], vocab: Vocab,
                              block_size: int, *, what: str = "your model", n: int = 64) -> str:
    """What training `module` follows, against the exercise's model ("" when the same): `train` backpropagates
    the loss that `module(X, Y)` returns into `module.parameters()`. On the first `n` examples of `words`, with the
    module's own values of the six tensors, each moved a little (`_jitter`; `names` maps each key to the module's
    name for it): a tensor that is not a trainable parameter, a returned loss that is not the cross-entropy of the
    logits, or a gradient other than the exercise's (a path cut from autograd). Logits other than the exercise's
    give "": the loss rows speak to those. Float64 where the module converts with `.to(torch.float64)`, else float32
    with a looser tolerance; a module that returns logits only (`forward(idx)`, trained by a loop of its own) is
    judged by the cross-entropy of its logits."""
    X, Y = contexts(words, vocab, block_size)
    X, Y = X[:n], Y[:n]
    out = None
    for dtype, args in itertools.product((torch.float64, torch.float32), ((X, Y), (X,))):
        try:
            m = copy.deepcopy(module).to(dtype)
            state = tensor_state(m)
            T = {k: state[v] for k, v in names.items()}
            _jitter(T)
            out = m(*args)
            break
        except Exception:  # noqa: BLE001 - a copy that cannot run in float64 is run as it is; (X,) for own loops
            continue
    logits, loss = (out[0], out[1]) if isinstance(out, tuple) and len(out) == 2 else (out, None)
    if not isinstance(logits, torch.Tensor) or logits.shape != (len(X), len(vocab)):
        return ""   # a module that does not run as a model: it did not train them through its forward
    tol = dict(rtol=1e-7, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    leaves = {k: t.detach().clone().requires_grad_() for k, t in T.items()}
    want_logits = direct_logits(leaves, X)
    if not torch.allclose(logits.detach(), want_logits.detach(), rtol=tol["rtol"], atol=tol["atol"] * 100):
        return ""
    want_loss = F.cross_entropy(want_logits, Y)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        loss = F.cross_entropy(logits, Y)   # a model that returns logits only: trained by a loop of its own
    if not math.isclose(loss.item(), want_loss.item(), rel_tol=1e-5, abs_tol=1e-6):
        return (f"{what}'s logits are right, but the loss it returns, {loss.item():.4f} on {n} dev examples, is not "
                f"their cross-entropy, {want_loss.item():.4f}: train follows the gradient of the returned loss, "
                "so it trained another model (a loss of logits computed before the direct term was added?)")
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    frozen = [k for k, t in T.items() if id(t) not in trainable]
    if frozen:
        kinds = {k: ("a parameter with requires_grad=False" if isinstance(T[k], nn.Parameter) else
                     "a buffer" if any(T[k] is b for b in m.buffers()) else "a plain tensor attribute")
                 for k in frozen}
        return (f"in {what}, " + ", ".join(f"{k} is {kind}" for k, kind in kinds.items())
                + ": it kept its starting values (train, like any torch.optim optimiser, updates only parameters that "
                "require grad)")
    if not loss.requires_grad:
        return f"{what}'s loss carries no gradient (computed under torch.no_grad(), or from detached tensors)"
    loss.backward()
    got = {k: T[k].grad for k in T}
    grads = dict(zip(leaves, torch.autograd.grad(want_loss, list(leaves.values()))))

    def close(g: dict[str, torch.Tensor | None], w: dict[str, torch.Tensor]) -> list[str]:
        return [k for k in w if g[k] is None or not torch.allclose(
            g[k], w[k], rtol=tol["rtol"], atol=tol["atol"] * (1 + float(w[k].abs().max())))]

    off = close(got, grads)
    if not off:
        return ""
    for cut, why in CUT_PATHS.items():
        mine = {k: t.detach().clone().requires_grad_() for k, t in T.items()}
        cut_loss = F.cross_entropy(direct_logits(mine, X, cut), Y)
        want = {k: g if g is not None else torch.zeros_like(mine[k]) for k, g in
                zip(mine, torch.autograd.grad(cut_loss, list(mine.values()), allow_unused=True))}
        if not close({k: g if g is not None else torch.zeros_like(T[k]) for k, g in got.items()}, want):
            return (f"{what}'s logits and loss are right, but its gradient is not the exercise's model's: {why}. "
                    "Training then moves the parameters another way, so direct_params come from another training")
    return (f"{what}'s logits and loss are right, but the gradient it gives {', '.join(off)} is not theirs: part of "
            "the forward pass is cut from autograd (detach(), .data, torch.no_grad()), so training followed another "
            "gradient than the one of what it computes")


def loss_floor(X: torch.Tensor, Y: torch.Tensor) -> float:
    """The lowest mean cross-entropy any model can reach on the examples (X, Y) (lesson 02's overfit-one-batch step).

    A model sees only the context, so examples with the same context and different next
    characters cannot all be predicted with certainty: the best it can do is give each context's
    next characters their frequencies within the batch. The floor is the mean of -log of those
    frequencies; it is 0 only when every context has a single next character.
    """
    if X.ndim != 2 or Y.shape != (X.shape[0],) or X.shape[0] == 0:
        raise ValueError(f"X must be (n, block_size) and Y (n,) with n >= 1, got {tuple(X.shape)} and {tuple(Y.shape)}")
    seen: dict[tuple[int, ...], dict[int, int]] = {}
    for x, y in zip(X.tolist(), Y.tolist()):
        nexts = seen.setdefault(tuple(x), {})
        nexts[y] = nexts.get(y, 0) + 1
    total = 0.0
    for nexts in seen.values():
        n = sum(nexts.values())
        total -= sum(k * math.log(k / n) for k in nexts.values())
    return total / X.shape[0]


# ---- exercises 1 and 2: each row says what a wrong number is ----------------------------------------------------

def as_params(params: Any) -> Any:
    """A model's parameters as the dict the checks read: a `torch.nn.Module` through its `state_dict()`."""
    return params.state_dict() if isinstance(params, torch.nn.Module) else params


def try_loss(params: Any, words: Sequence[str], vocab: Vocab, name: str) -> tuple[float, Result | None]:
    """`mlp_loss`, or NaN and an error row that says why `params` cannot be evaluated (never a traceback)."""
    hint = f"a dict with the keys {list(REQUIRED)}, shaped as MLP makes them"
    try:
        return mlp_loss(as_params(params), words, vocab), None
    except Exception as e:  # noqa: BLE001 - malformed parameters of any kind become a row
        why = f"cannot evaluate your parameters: {e}"
        P = as_params(params)
        if isinstance(P, Mapping) and all(k in P for k in ("W1", "W2")):
            try:   # nn.Linear keeps its weight as (out, in): the transposes may be what was meant
                mlp_loss({**P, "W1": P["W1"].T, "W2": P["W2"].T}, words[:1], vocab)
                why += ("; W1 and W2 are in nn.Linear's (out, in) layout, the transposes of the x @ W layout MLP "
                        "uses: hand in linear.weight.T")
            except Exception:  # noqa: BLE001 - not that either: the first message stands
                pass
        return float("nan"), Result(name, "error", why, hint=hint)


def loss_candidates(params: Mapping[str, torch.Tensor], vocab: Vocab, splits: Mapping[str, Sequence[str]],
                    split: str) -> Iterator[tuple[str, Any]]:
    """A reported loss of `params` on `splits[split]` as a learner might get it wrong: another split, the sum, bits,
    the sign, or a forward pass with a step left out or changed."""
    P = {k: v.detach() for k, v in as_params(params).items()}
    right = lambda: mlp_loss(P, splits[split], vocab)  # noqa: E731
    for other, ws in splits.items():
        if other != split:
            yield f"the loss of your parameters on the {other} split, not the {split} split", \
                (lambda ws=ws: mlp_loss(P, ws, vocab))
    n = lambda: len(contexts(splits[split], vocab, _shapes(P, len(vocab)))[1])  # noqa: E731
    yield "the sum over the examples, not their mean", lambda: right() * n()
    yield "the loss in bits (log base 2) instead of nats", lambda: right() / math.log(2)
    yield "minus the loss (the sign flipped)", lambda: -right()
    losses = lambda: example_losses(P, splits[split], vocab)  # noqa: E731
    yield f"the mean over the words of each {split} word's own mean loss, not the mean over all examples", \
        lambda: _per_word_mean(P, splits[split], vocab)
    yield from _prefix_candidates(losses, split)
    for why, variant in FORWARD_VARIANTS:
        yield f"the {split} loss of a forward pass {why}", (lambda variant=variant: mlp_loss(variant(P), splits[split],
                                                                                             vocab))


def _prefix_candidates(losses, split: str) -> Iterator[tuple[str, Any]]:
    """The mean loss over the first k examples, for the k whose mean matches: the loss of one minibatch or of
    a part of the split, found by comparing with every prefix's mean (yielded lazily, one candidate per k)."""
    cache = {}

    def means():
        if "m" not in cache:
            L = losses()
            cache["m"] = torch.cumsum(L, 0) / torch.arange(1, len(L) + 1)
        return cache["m"]

    for k in (32, 64, 100, 128, 200, 256, 500, 512, 1000):
        yield (f"the loss on the first {k} examples of the {split} split only (a minibatch or a part), not the whole "
               f"split"), (lambda k=k: means()[k - 1].item() if len(means()) > k else float("nan"))


def example_losses(params: Mapping[str, torch.Tensor], words: Sequence[str], vocab: Vocab) -> torch.Tensor:
    """The cross-entropy of every example of `words`, in order (float64)."""
    P = {k: v.detach().to("cpu", torch.float64) for k, v in params.items()}
    X, Y = contexts(words, vocab, _shapes(P, len(vocab)))
    return -torch.log_softmax(direct_logits(P, X), 1).gather(1, Y[:, None])[:, 0]


def _per_word_mean(P, words: Sequence[str], vocab: Vocab) -> float:
    L = example_losses(P, words, vocab)
    lengths = torch.tensor([len(w) + 1 for w in words])
    word = torch.repeat_interleave(torch.arange(len(words)), lengths)
    sums = torch.zeros(len(words), dtype=torch.float64).index_add_(0, word, L)
    return (sums / lengths).mean().item()


def _no(key):
    return lambda P: {**P, key: torch.zeros_like(P[key])}


FORWARD_VARIANTS = (("without b1", _no("b1")), ("without b2", _no("b2")))


def direct_variants(P: Mapping[str, torch.Tensor], words: Sequence[str], vocab: Vocab,
                    n_embd: int) -> Iterator[tuple[str, Any]]:
    """The dev loss of `P` with the direct term computed another way than emb @ W_direct (emb concatenated
    position by position): a squashed term, another flattening order, the embeddings summed."""
    if "W_direct" not in P:
        return
    Q = {k: v.detach().to("cpu", torch.float64) for k, v in P.items()}
    block_size = Q["W1"].shape[0] // n_embd

    def loss(direct):
        def f():
            X, Y = contexts(words, vocab, block_size)
            E = Q["C"][X]                                                   # (N, block_size, n_embd)
            emb = E.reshape(len(X), -1)
            logits = torch.tanh(emb @ Q["W1"] + Q["b1"]) @ Q["W2"] + Q["b2"] + direct(E, emb)
            return -torch.log_softmax(logits, 1).gather(1, Y[:, None]).mean().item()
        return f

    Wd = Q["W_direct"]
    yield "the dev loss with tanh applied to the direct term (tanh(emb @ W_direct)): the term is linear", \
        loss(lambda E, emb: torch.tanh(emb @ Wd))
    yield ("the dev loss with the embeddings flattened embedding by embedding (emb.transpose(1, 2)), where the "
           "concatenation position by position (emb.view(B, -1)) belongs"), \
        loss(lambda E, emb: E.transpose(1, 2).reshape(len(E), -1) @ Wd)

"""Forward passes with one step left out, as parameter changes `mlp_loss` can evaluate."""


def check_reported_loss(name: str, got: Any, params: Any, vocab: Vocab, splits: Mapping[str, Sequence[str]],
                        split: str, hint: str, namespace: Mapping[str, Any] | None = None) -> tuple[Result, float]:
    """The row for a reported loss of `params` on `splits[split]` and the re-evaluated loss (NaN where it cannot
    be computed): a wrong number is matched against other splits and other ways of averaging or logging. With the
    notebook's `namespace`, the run of `train` that left the model holding `params` is found there and its training
    data compared with the "training" split (`trained_on_problem`)."""
    want, problem = try_loss(params, splits[split], vocab, name)
    if problem is not None:
        return (problem if not is_todo(got, params) else Result(name, "todo", "replace TODO with your answer")), want
    row = check(name, got, want, atol=1e-4, hint=hint)
    row = explain(row, got, lambda: loss_candidates(params, vocab, splits, split), atol=1e-4, rtol=1e-5,
                  fallback=lambda: reported_fallback(got, params, vocab, splits, split, want))
    if row.passed and (closer := _closer_candidate(got, want, params, vocab, splits, split)):
        row = Result(name, "wrong", closer, hint)
    if row.passed and namespace is not None and (
            why := quietly(trained_on_problem, params, namespace, vocab, splits, split)
            or quietly(lesson_model_changed, namespace, params, want if split == "dev" else None)
            or quietly(over_budget, params, namespace)):
        row = Result(name, "wrong", why, hint)
    P = as_params(params)
    not32 = [k for k, v in P.items() if isinstance(v, torch.Tensor) and v.dtype != torch.float32] \
        if isinstance(P, Mapping) else []
    if not32 and row.status in ("exact", "close", "wrong"):
        why = (f"{', '.join(not32)} {'is' if len(not32) == 1 else 'are'} {P[not32[0]].dtype}: the exercise asks for "
               f"float32 tensors, as MLP makes them (a model trained after .double() hands in float64)")
        row = Result(name, "wrong", why if row.passed else f"{row.detail}; {why}", hint)
    return row, want


def lesson_model_changed(namespace: Mapping[str, Any], params: Any = None, dev_loss: float | None = None,
                         name: str = "model", run: str = "result") -> str:
    """Whether an exercise's answer changed the lesson's final model (`namespace[name]`), which the results cell
    reads ("" when not): `params` are held by the module under that name and their `dev_loss` is not the one the
    lesson's final run left (`namespace["final"]`; the run's own record may have been replaced by the answer's), or
    the model is no longer what its run (`namespace[run]`, a `TrainResult`) left."""
    from mmlib.train import TrainResult, state_digest
    found = training_module(params, namespace, needs="C") if params is not None else None
    final = namespace.get("final")
    if (found is not None and found[0] == name and dev_loss is not None and isinstance(final, Mapping)
            and isinstance(final.get("dev"), float) and abs(final["dev"] - dev_loss) > 1e-4):
        return (f"these are the parameters of `{name}`, the lesson's final model, whose run left a dev loss of "
                f"{final['dev']:.4f}; they give {dev_loss:.4f}: your cell trained it further (or put another model "
                f"under its name), and the results cell reports `{name}`. Tune a model of your own, under another "
                f"name (copy.deepcopy({name}) if you start from it)")
    model, result = namespace.get(name), namespace.get(run)
    if not isinstance(model, nn.Module) or not isinstance(result, TrainResult) or not result.digest:
        return ""
    if state_digest(model) == result.digest:
        return ""
    return (f"your cell changed the lesson's final `{name}` (trained it further, or edited it in place): it is no "
            f"longer what its run left, whose losses the lesson reports. Tune a model of your own: a new MLP, or "
            f"copy.deepcopy({name}) if you start from it")


def training_run(params: Any, namespace: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The name of the module of the notebook that holds `params` and the `train` run that left it as it is (a
    `TrainResult` of the notebook whose digest is that module's), or None when there is no such run."""
    from mmlib.train import TrainResult, state_digest
    found = training_module(params, namespace, needs="C")
    if found is None:
        return None
    digest = state_digest(found[1])
    runs = [v for v in namespace.values() if isinstance(v, TrainResult) and v.digest == digest]
    return (found[0], runs[0]) if runs else None


def over_budget(params: Any, namespace: Mapping[str, Any], budget: str = "tune_steps") -> str:
    """Whether the run that left the model holding `params` took more steps than `namespace[budget]` allows ("" when
    not, or when no run or budget is found)."""
    run, steps = training_run(params, namespace), namespace.get(budget)
    if run is None or not isinstance(steps, int) or run[1].steps <= steps:
        return ""
    return (f"the run that trained your model ({run[0]}) took {run[1].steps:,} steps, more than {budget} = {steps:,}: "
            f"the exercise asks for the best dev loss within that budget")


def trained_on_problem(params: Any, namespace: Mapping[str, Any], vocab: Vocab, splits: Mapping[str, Sequence[str]],
                       split: str) -> str:
    """Whether the `train` run that left the model holding `params` (`training_run`) trained on more targets than
    `splits["training"]` has ("" when not, or when no such run is found): the loss reported on `split` is held out
    only if none of its examples were trained on."""
    found = training_run(params, namespace) if "training" in splits else None
    if found is None or not found[1].targets:
        return ""
    trained = found[1].targets.get("train", 0)
    sizes = {k: sum(len(w) + 1 for w in ws) for k, ws in splits.items()}
    if trained <= sizes["training"]:
        return ""
    others = [k for k in splits if k != "training"]
    for r in range(1, len(others) + 1):
        for combo in itertools.combinations(others, r):
            if trained == sizes["training"] + sum(sizes[k] for k in combo):
                parts = " and ".join(f"the {k} split's {sizes[k]:,}" for k in combo)
                return (f"the run that trained your model ({found[0]}) trained on {trained:,} examples: the training "
                        f"split's {sizes['training']:,} and {parts}. "
                        + (f"The {split} loss is then measured on examples it was fitted to, not held out: "
                           f"train on the training split only" if split in combo else "Train on the training split "
                           "only"))
    return (f"the run that trained your model ({found[0]}) trained on {trained:,} examples, more than the training "
            f"split's {sizes['training']:,}: its training data holds examples of another split, so the {split} loss "
            "may not be held out")


def _closer_candidate(got: Any, want: float, params: Any, vocab: Vocab, splits: Mapping[str, Sequence[str]],
                      split: str) -> str:
    """A loss within the tolerance of the right one that is, much more precisely, another quantity (at an
    initialisation near uniform every example's loss is about ln(vocab_size), so e.g. a mean of per-word means is
    within 1e-4 of the mean over the examples): `closer_than_tolerance` with `loss_candidates`."""
    return closer_than_tolerance(got, want, lambda: loss_candidates(params, vocab, splits, split),
                                 what="the mean over every example")


def reported_fallback(got: Any, params: Any, vocab: Vocab, splits: Mapping[str, Sequence[str]], split: str,
                      want: float) -> str:
    """What a reported loss is when no candidate matches: the mean over the first k examples of the split, if
    some k < all gives it, else the losses of the parameters on every split, and whether they look earlier."""
    others = {k: mlp_loss(as_params(params), ws, vocab) for k, ws in splits.items() if k != split}
    text = (f"it is no loss of your parameters that the check knows ({split} {want:.4f}, "
            + ", ".join(f"{k} {v:.4f}" for k, v in others.items())
            + "): are they the parameters of the model you evaluated, at the step you evaluated it?")
    try:
        value = float(got)
    except (TypeError, ValueError):
        return text
    means = torch.cumsum(L := example_losses(as_params(params), splits[split], vocab), 0) / \
        torch.arange(1, len(L) + 1)
    # Tight (1e-6): over hundreds of prefixes a looser match would name a k by chance.
    hits = ((means - value).abs() <= 1e-6 + 1e-6 * abs(value)).nonzero()
    if len(hits) and 0 < int(hits[0]) < len(L) - 1:
        k = int(hits[0]) + 1
        return (f"your answer equals the mean loss over the first {k} of the {len(L)} {split} examples only "
                f"(a minibatch or a part of the split), not over the whole split")
    if want > value + 0.05:
        text += (f" Your parameters do worse ({want:.4f}) than the loss you report ({value:.4f}): they look "
                 f"like an earlier state than the model you measured (copied before training, or a copy that "
                 f"did not follow the training?)")
    return text


def uniform_candidates(vocab_size: int) -> Iterator[tuple[str, float]]:
    """The uniform loss written the usual wrong ways."""
    V = vocab_size
    if V != 27:   # the names' vocabulary, typed in where vocab_size belongs
        yield f"ln(27): 27 typed in where vocab_size = {V} belongs (compute it from vocab_size)", math.log(27)
        yield "1/27: 27 typed in, and the probability rather than the loss", 1 / 27
    yield f"1 / vocab_size = 1/{V}: the probability, not the loss -log(1/{V})", 1 / V
    yield f"ln({V - 1}): vocab_size - 1 characters (the '.' token left out?)", math.log(V - 1)
    yield f"ln({V + 1}): vocab_size + 1 characters", math.log(V + 1)
    yield f"log2({V}): the loss in bits (log base 2) instead of nats", math.log2(V)
    yield f"log10({V}): log base 10 instead of the natural log", math.log10(V)
    yield f"ln(1/{V}) = {-math.log(V):.4f}: the sign flipped", -math.log(V)
    yield f"vocab_size = {V} itself", float(V)
    yield f"-(1/{V}) * ln(1/{V}): one character's term of the entropy, not the sum over all {V}", math.log(V) / V
    for k in range(1, 6):
        yield (f"ln({V}) rounded to {k} decimals: compute it from vocab_size rather than typing it",
               round(math.log(V), k))


def describe_init(params: Any, words: Sequence[str], vocab: Vocab) -> str:
    """Why an initialisation's loss is far from uniform: the spread of its logits and which term makes it."""
    P = {k: v.detach().to("cpu", torch.float64) for k, v in as_params(params).items()}
    block_size = _shapes(P, len(vocab))
    X, _ = contexts(words, vocab, block_size)
    X = X[:2000]
    emb = P["C"][X].reshape(len(X), -1)
    h = torch.tanh(emb @ P["W1"] + P["b1"])
    hw = h @ P["W2"]
    return (f"your initialisation's logits have standard deviation {(hw + P['b2']).std().item():.3g} on the training "
            f"split: h @ W2 contributes {hw.std().item():.3g} (W2 max |value| {P['W2'].abs().max().item():.3g}), b2 "
            f"spreads {P['b2'].std().item():.3g} (max |value| {P['b2'].abs().max().item():.3g}); near-uniform "
            f"predictions need both near 0")


def check_init_sizes(params: Any, reference: Any) -> str:
    """Why `params` is not of the reference model's sizes ("" when it is): the first tensor shaped otherwise."""
    ref = as_params(reference)
    P = as_params(params)
    if not isinstance(P, Mapping) or not isinstance(ref, Mapping):
        return ""
    for k in REQUIRED:
        if k in P and k in ref and tuple(P[k].shape) != tuple(ref[k].shape):
            return (f"init_params[{k!r}] has shape {tuple(P[k].shape)}, the final model's {k} "
                    f"{tuple(ref[k].shape)}: make an initialisation of the final model's sizes")
    extra = sorted(set(P) - set(ref))
    return f"init_params holds {extra}, which the final model does not have" if extra else ""


def trained_tensors(init_params: Any, model: Any) -> str:
    """Why `init_params` is no initialisation ("" when it may be): it holds the trained `model`'s own tensors
    (`model.state_dict()` hands them out, not copies), so it is the trained model, and scaling it changed `model`."""
    tensors = (init_params.values() if isinstance(init_params, Mapping) else
               init_params.parameters() if isinstance(init_params, nn.Module) else ())
    ours = {t.data_ptr() for t in getattr(model, "state_dict", dict)().values() if isinstance(t, torch.Tensor)}
    shared = sum(isinstance(t, torch.Tensor) and t.data_ptr() in ours for t in tensors)
    if not shared:
        return ""
    return (f"init_params hold {shared} of the trained `model`'s own tensors (model.state_dict() hands out the "
            "model's tensors, not copies): they are the trained weights, not an initialisation, and a change to "
            "them in place changed `model` too. Make a new model for the initialisation")


def check_uniform_init(uniform: Any, init_params: Any, init_loss: Any, vocab_size: int, words_train: Sequence[str],
                       vocab: Vocab, model: Any, words_dev: Sequence[str] = (),
                       namespace: Mapping[str, Any] | None = None) -> list[Result]:
    """Exercise 2's rows: the uniform loss, the reported loss of `init_params` (of `model`'s sizes) on the training
    split, and whether that initialisation starts within 0.1 of uniform. With the notebook's `namespace`, a `train`
    run that left the module holding `init_params` is found there: they are then no initialisation."""
    target = uniform_loss(vocab_size)
    row_u = explain(check("uniform", uniform, target, atol=1e-6,
                          hint="each of the vocab_size characters gets probability 1/vocab_size; the loss is minus "
                               "its log"), uniform, lambda: uniform_candidates(vocab_size), atol=1e-6, rtol=1e-6)
    splits = {"training": words_train, **({"dev": words_dev} if len(words_dev) else {})}
    hint = "the loss of init_params on the whole training split, before any training step"
    row_l, measured = check_reported_loss("init_loss", init_loss, init_params, vocab, splits, "training", hint)
    if row_l.status == "wrong":
        row_l = explain(row_l, init_loss, [(f"the uniform loss ln({vocab_size}), not the loss your init_params give "
                                            f"({measured:.4f}): measure it", target)], atol=1e-6)
    sizes = "" if is_todo(init_params) else check_init_sizes(init_params, model) or trained_tensors(init_params, model)
    if not sizes and not is_todo(init_params) and namespace is not None and (
            run := quietly(training_run, init_params, namespace, default=None)):
        sizes = (f"init_params were left by a training run of {run[1].steps:,} step{'s' if run[1].steps != 1 else ''} "
                 f"({run[0]} after train): the exercise asks for an initialisation and its loss before any training "
                 f"step")
    if sizes and row_l.passed:
        row_l = Result("init_loss", "wrong", sizes, hint)
    elif sizes and row_l.status == "wrong":
        row_l = Result("init_loss", "wrong", f"{row_l.detail}; {sizes}", hint)
    row_n = check("init_loss near uniform", init_loss, target, atol=0.1,
                  hint="make the logits small at the start: scale W2 down and set b2 to zero")
    if row_n.status == "wrong" and math.isfinite(measured) and abs(measured - target) > 0.1:
        row_n = Result(row_n.name, "wrong", f"{row_n.detail}; {describe_init(init_params, words_train, vocab)}",
                       row_n.hint)
    elif row_n.status == "wrong" and math.isfinite(measured):
        row_n = Result(row_n.name, "wrong", f"{row_n.detail}; your init_params themselves start at {measured:.4f}, "
                       f"within 0.1 of uniform: the number reported is not their loss", row_n.hint)
    return [row_u, row_l, row_n]
