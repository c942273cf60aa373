"""Expected answers for lesson 03's exercises, each computed by a route of its own.

- `zero_init_learners`: which parameters of an all-zero MLP get a non-zero gradient, found with
  `torch.nn` modules (not the lesson's hand-written forward pass).
- `best_constant_loss`: the lowest loss any prediction that ignores the context can reach on a set
  of targets - the entropy of their frequencies (exercise 1's floor).
- `fold_batchnorm`: BatchNorm folded into the linear layer before it, by PyTorch's own
  `torch.nn.utils.fusion.fuse_linear_bn_weights` (exercise 2).
- `folded_logits_row`: the folded network's logits against eval-mode BatchNorm's, as a row even when
  W_fold or b_fold cannot be applied (exercise 2).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_linear_bn_weights

from mmlib.checks import Result, attempt, check, check_that, explain, is_todo, todo_rows


def zero_init_learners(vocab_size: int, n_embd: int, block_size: int, n_hidden: int,
                       X: torch.Tensor, Y: torch.Tensor) -> set[str]:
    """Names (C, W1, b1, W2, b2) of the all-zero MLP's parameters whose gradient on (X, Y) is non-zero."""
    emb = nn.Embedding(vocab_size, n_embd)
    hidden = nn.Linear(block_size * n_embd, n_hidden)
    out = nn.Linear(n_hidden, vocab_size)
    named = {"C": emb.weight, "W1": hidden.weight, "b1": hidden.bias, "W2": out.weight, "b2": out.bias}
    for p in named.values():
        nn.init.zeros_(p)
    logits = out(torch.tanh(hidden(emb(X).flatten(1))))
    F.cross_entropy(logits, Y).backward()
    return {name for name, p in named.items() if p.grad is not None and bool((p.grad != 0).any())}


def best_constant_loss(Y: torch.Tensor, vocab_size: int) -> float:
    """Cross-entropy of the best context-free prediction on targets `Y`: the entropy of their
    frequencies (in nats). No model that ignores its input can do better on `Y`."""
    counts = torch.bincount(Y.flatten().long(), minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def fold_batchnorm(W: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
                   gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """`x @ W` followed by eval-mode BatchNorm, as one layer `x @ W_fold + b_fold`.

    `W` is (fan_in, fan_out) as in the course; PyTorch's routine wants (fan_out, fan_in), hence the
    transposes. Returns (W_fold (fan_in, fan_out), b_fold (fan_out,)).
    """
    w, b = fuse_linear_bn_weights(W.T.detach(), None, running_mean.detach(), running_var.detach(), eps,
                                  gamma.detach(), beta.detach())
    return w.detach().T.contiguous(), b.detach()


def folded_logits_row(name: str, emb: torch.Tensor, W_fold, b_fold, W2: torch.Tensor, b2: torch.Tensor,
                      want: torch.Tensor, atol: float = 1e-4) -> Result:
    """The row for `tanh(emb @ W_fold + b_fold) @ W2 + b2` against eval-mode BatchNorm's logits `want`.

    A W_fold or b_fold that cannot be applied (a transposed matrix, a wrong type) is a row that says
    so, never an exception that stops the notebook. `atol` 1e-4: the lesson's right answer differs by
    4.9e-6 at its defaults (the two routes round differently in float32 over 200 hidden units), and
    the W_fold and b_fold rows above it, at 1e-5, already catch every wrong fold the catalogue holds.
    """
    if is_todo(W_fold, b_fold):
        return todo_rows([name])[0]
    out = attempt(name, lambda: torch.tanh(emb @ W_fold + b_fold) @ W2 + b2,
                  what="tanh(emb @ W_fold + b_fold) @ W2 + b2",
                  hint=f"W_fold must be (block_size * n_embd, n_hidden) = {(emb.shape[1], W2.shape[0])} and "
                       f"b_fold ({W2.shape[0]},), the shapes of W1 and of one BatchNorm statistic")
    if not out.ok:
        return out.row
    return check(name, out.value, want, atol=atol, hint="the folded network is tanh(emb @ W_fold + b_fold) @ W2 + b2")


# ---- exercise 1: the all-zero network, looked at parameter by parameter --------------------------------------

WHY_ZERO_GRAD = {
    "W2": "its gradient h.T @ dlogits is zero, because h = tanh(0 + 0) = 0",
    "b1": "the gradient reaching the hidden layer, dlogits @ W2.T, is zero because W2 = 0",
    "W1": "the gradient reaching the hidden layer, dlogits @ W2.T, is zero because W2 = 0 (and emb = 0 too)",
    "C": "nothing reaches the embeddings: the gradient stops at W2 = 0 (and W1 = 0)",
}
WHY_GRAD = {"b2": "its gradient is dlogits itself (softmax(b2) minus the one-hot targets), which is not zero"}


class Snapshot(dict):
    """A module's state as it was: a dict of copies of its tensors, and `modes`, each submodule's training flag."""

    modes: dict[str, bool]


def snapshot(model: Any) -> Any:
    """Every tensor of `model`'s state as it is now (a `Snapshot`: a dict of copies, with each submodule's training
    mode), to compare with later; `TODO` stays `TODO` and anything that is not a module is kept as it is (the check
    then says what it is)."""
    if is_todo(model) or not isinstance(model, nn.Module):
        return model
    out = Snapshot((k, v.detach().clone()) for k, v in model.state_dict().items())
    out.modes = {name: m.training for name, m in model.named_modules()}
    return out


def modes_changed(model: nn.Module, start: Any) -> str:
    """How `model`'s training modes differ from the `Snapshot` `start`'s ("" when they do not, or it has none)."""
    before = getattr(start, "modes", None)
    if not before:
        return ""
    now = {name: m.training for name, m in model.named_modules()}
    moved = [name or "the model" for name, was in before.items() if name in now and now[name] != was]
    if not moved:
        return ""
    mode = "training" if now[next(iter(now))] else "eval"
    return (f"your cell left model_bn in {mode} mode ({', '.join(moved[:3])}{' ...' if len(moved) > 3 else ''} "
            f"switched by .eval() or .train() and not switched back): later cells that use model_bn get the other "
            f"BatchNorm behaviour; the fold reads the running statistics directly, so no mode change is needed "
            f"(or use `with eval_mode(model_bn):`, which restores it)")


def inventory(model: Any, reference: nn.Module, name: str = "zero_model") -> list[str]:
    """How `model`'s parameters differ from `reference`'s: missing, extra, shaped otherwise, frozen."""
    if not isinstance(model, nn.Module):
        return [f"{name} is a {type(model).__name__}, not a model (an MLP of cfg02's sizes)"]
    mine = dict(model.named_parameters())
    ref = dict(reference.named_parameters())
    out = []
    if sorted(set(ref) - set(mine)):
        out.append(f"{name} has no {sorted(set(ref) - set(mine))}")
    if sorted(set(mine) - set(ref)):
        out.append(f"{name} has parameters the lesson's MLP does not: {sorted(set(mine) - set(ref))}")
    for k in ref:
        if k in mine and tuple(mine[k].shape) != tuple(ref[k].shape):
            out.append(f"{name}.{k} is {tuple(mine[k].shape)}, cfg02's MLP has {tuple(ref[k].shape)}")
    other = sorted({str(p.dtype) for k, p in mine.items() if k in ref and p.dtype != ref[k].dtype})
    if other:
        out.append(f"{name}'s parameters are {', '.join(other)}, cfg02's MLP's {ref[next(iter(ref))].dtype}: the rest "
                   "of the lesson hands it float32 tensors (make it as the lesson's MLP is made, without a dtype)")
    frozen = [k for k, p in mine.items() if not p.requires_grad]
    if frozen:
        out.append(f"{frozen} {'has' if len(frozen) == 1 else 'have'} requires_grad=False: train cannot update "
                   f"{'it' if len(frozen) == 1 else 'them'}")
    return out


def learns_row(learns: Any, want: set[str], names: Sequence[str]) -> Result:
    """Exercise 1's `learns` row: any collection of names is read as a set; each name wrongly in or out is given
    the reason its gradient is or is not zero."""
    shown = sorted(learns) if isinstance(learns, (set, frozenset, list, tuple)) else learns
    got = set(learns) if isinstance(learns, (set, frozenset, list, tuple)) else learns
    ok = isinstance(got, set) and got == want
    detail = f"expected {sorted(want)}, got {shown!r}" if not isinstance(shown, list) else \
        f"expected {sorted(want)}, got {shown}"
    if not ok and not is_todo(learns):
        if isinstance(got, set) and all(isinstance(x, str) for x in got):
            why = []
            unknown = sorted(x for x in got if x not in names)
            if unknown:
                why.append(f"{unknown} {'is' if len(unknown) == 1 else 'are'} not a parameter name (they are "
                           f"{', '.join(names)})")
            for x in sorted(got & set(names) - want):
                why.append(f"{x} does not learn: {WHY_ZERO_GRAD.get(x, 'its gradient is exactly zero')}")
            for x in sorted(want - got):
                why.append(f"{x} learns: {WHY_GRAD.get(x, 'its gradient is not zero')}")
            detail += "; " + "; ".join(why)
        elif isinstance(learns, str):
            detail += f": a string, not a set of names (write {{{learns!r}}})"
        else:
            detail += f": a {type(learns).__name__}, not a set of parameter names"
    return check_that("learns", learns, ok, detail,
                      hint="follow the forward pass with every weight zero: what is h, and what reaches each "
                           "parameter from dlogits?")


def check_zero_init(zero_model: Any, zero_start: Any, learns: Any, cfg02: Any, Xb: torch.Tensor, Yb: torch.Tensor,
                    Xdev: torch.Tensor, Ydev: torch.Tensor, uniform_loss: float) -> list[Result]:
    """Exercise 1's rows: `learns`, the parameters that cannot learn (still zero after training) and the dev loss
    of the trained zero network. `zero_start` is the model's parameters before training (`snapshot`)."""
    from mmlib.models import MLP
    from mmlib.train import evaluate
    c = cfg02
    want = zero_init_learners(c.vocab_size, c.n_embd, c.block_size, c.n_hidden, Xb.cpu(), Yb.cpu())
    bound = best_constant_loss(Ydev.cpu(), c.vocab_size)
    reference = MLP(c)
    row_learns = learns_row(learns, want, [k for k, _ in reference.named_parameters()])
    frozen_name = "the parameters that cannot learn, after training (max |value|)"
    dev_name = "dev loss of the zero-init network"
    if is_todo(zero_model):
        return [row_learns, *todo_rows([frozen_name, dev_name])]
    problems = inventory(zero_model, reference)
    if not isinstance(zero_model, nn.Module):
        return [row_learns, *(Result(n, "error", problems[0], hint="zero_model = MLP(...) with every scale 0")
                              for n in (frozen_name, dev_name))]
    params = dict(zero_model.named_parameters())
    start = zero_start if isinstance(zero_start, Mapping) else {}
    not_zero = {k: v.abs().max().item() for k, v in start.items() if v.numel() and bool(v.any())}
    frozen = max((p.detach().abs().max().item() for k, p in params.items() if k not in want and p.numel()),
                 default=0.0)
    row_frozen = check(frozen_name, frozen, 0.0, atol=0.0, hint="did every parameter start at exactly zero?")
    why = list(problems)
    if not_zero:
        why.append("not zero at the start: " + ", ".join(f"{k} (max |value| {v:.3g})" for k, v in not_zero.items()))
    moved = [k for k, p in params.items() if k not in want and bool(p.detach().any()) and k not in not_zero]
    if moved and start:
        why.append(f"{moved} started at zero but changed in training: another parameter was not zero")
    if why:
        row_frozen = Result(frozen_name, "wrong", f"{row_frozen.detail if not row_frozen.passed else ''}"
                            f"{'; ' if not row_frozen.passed else ''}{'; '.join(why)}", row_frozen.hint)
    out = attempt(dev_name, evaluate, zero_model, Xdev, Ydev, what="evaluate(zero_model, Xdev, Ydev)")
    if not out.ok:
        return [row_learns, row_frozen, out.row]
    zero_dev = float(out.value)
    ok = bound - 1e-4 <= zero_dev < uniform_loss
    detail = (f"{round(zero_dev, 4)} should lie between the best context-free loss {bound:.4f} (tolerance 1e-4) "
              f"and the uniform loss {uniform_loss:.4f}")
    if not ok and zero_dev < bound - 1e-4:
        detail += ("; below the best loss that ignores the context: the trained network uses its input, so some "
                   "weight did not start at zero")
    elif not ok:
        detail += "; the network learned not even the characters' frequencies: was b2 trained?"
    row_dev = check_that(dev_name, zero_dev, ok, detail,
                         hint="the zero network can learn how often each character occurs, and nothing about the "
                              "context")
    return [row_learns, row_frozen, row_dev]


# ---- exercise 2: a fold checked term by term -------------------------------------------------------------------

def scale_candidates(g: torch.Tensor, var: torch.Tensor, mean: torch.Tensor, eps: float,
                     batch: Mapping[str, torch.Tensor] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Per-unit column scales a learner might write for bngain / sqrt(var + eps), each with its reading.

    `batch` holds statistics of data (`mean`, `var` biased, `var_unbiased`) for answers that fold the statistics
    of a batch instead of the running ones."""
    sd = torch.sqrt(var + eps)
    nums = [("bngain", g), ("1 (bngain left out)", torch.ones_like(g)), ("bngain**2", g**2),
            ("bnbias (in place of bngain)", None)]
    dens = [("sqrt(var + eps)", sd), ("(var + eps) (the variance where its square root belongs)", var + eps),
            ("(sqrt(var) + eps) (eps outside the square root)", torch.sqrt(var) + eps),
            ("sqrt(var) (eps left out)", torch.sqrt(var)), ("1 (no division by the standard deviation)", 1.0),
            ("(1 / sqrt(var + eps)) (multiplied by the standard deviation, not divided)", 1 / sd),
            ("sqrt(mean + eps) (the running mean where the running variance belongs)", torch.sqrt(mean.abs() + eps)),
            ("sqrt(var + eps)**2 = var + eps", var + eps)]
    for num_why, num in nums:
        if num is None:
            continue
        for den_why, den in dens:
            yield f"{num_why} / {den_why}", num / den
    if batch is not None:
        for which in ("var", "var_unbiased"):
            yield (f"bngain / sqrt(v + eps) with v the {'unbiased ' if which != 'var' else ''}variance of the data's "
                   f"own hpre (a batch's statistics), not the running variance"), g / torch.sqrt(batch[which] + eps)


def column_scale(W_fold: torch.Tensor, W1: torch.Tensor) -> torch.Tensor | None:
    """The per-column factors s with W_fold = W1 * s, or None when W_fold is not W1 with each column scaled."""
    s = (W_fold * W1).sum(0) / (W1 * W1).sum(0).clamp_min(1e-300)
    if torch.allclose(W1 * s, W_fold, rtol=1e-4, atol=1e-6):
        return s
    return None


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-4, atol=1e-6))


def describe_W_fold(W_fold: Any, W1: torch.Tensor, scales: list[tuple[str, torch.Tensor]], g: torch.Tensor,
                    var: torch.Tensor, eps: float) -> str:
    """What a wrong W_fold is: W1 with each column scaled by what (named from `scales`), or how it is not that."""
    try:
        Wf = torch.as_tensor(W_fold).detach().cpu().double()
    except Exception:  # noqa: BLE001
        return ""
    if Wf.shape != W1.shape:
        return ""
    s = column_scale(Wf, W1)
    if s is None:
        rows = (Wf * W1).sum(1) / (W1 * W1).sum(1).clamp_min(1e-300)
        if torch.allclose(W1 * rows[:, None], Wf, rtol=1e-4, atol=1e-6):
            return "your W_fold scales the rows of W1 (its inputs), where each column (a hidden unit) needs its factor"
        return "your W_fold is not W1 with each column scaled: the fold multiplies column j of W1 by one number"
    if torch.allclose(s, torch.ones_like(s), rtol=1e-6):
        return "your W_fold is W1 unchanged: the BatchNorm scale bngain / sqrt(var + eps) is not applied"
    for why, cand in scales:
        if _same(s, cand):
            return f"your W_fold is W1 with column j multiplied by {why}"
    fit = fit_variance(s, g, var, eps)
    if fit:
        return f"your W_fold is W1 with column j multiplied by {fit}"
    return "your W_fold is W1 with each column scaled, but by no factor made of bngain, the variance and eps"


def fit_variance(s: torch.Tensor, g: torch.Tensor, var: torch.Tensor, eps: float = 1e-5) -> str:
    """A column scale of the form gain / sqrt(c * var + e), with c or e recovered from the answer's own numbers:
    a variance multiplied by a constant (a Bessel correction n / (n - 1)) or another eps. "" when it is not."""
    if not bool((s * g > 0).all()):
        return ""
    r = (g / s) ** 2                        # c * var + e, per unit
    e = r - var
    if torch.allclose(e, e.mean().expand_as(e), rtol=1e-3, atol=1e-9) and abs(e.mean().item() - eps) > 1e-7:
        return f"bngain / sqrt(var + {e.mean().item():.3g}): eps = {e.mean().item():.3g} where 1e-5 belongs"
    c = (r - eps) / var
    if torch.allclose(c, c.mean().expand_as(c), rtol=1e-3) and abs(c.mean().item() - 1) > 1e-4:
        cm = c.mean().item()
        text = f"bngain / sqrt({cm:.5g} * var + eps): the running variance multiplied by {cm:.5g}"
        n = cm / (cm - 1) if cm > 1 else None
        if n and abs(n - round(n)) < 0.05 * n and round(n) > 1:
            text += (f" = {round(n)}/{round(n) - 1}, a Bessel correction for a batch of {round(n)}: the running "
                     f"variance already is the estimate eval mode uses, apply nothing to it")
        return text
    return ""



def bias_candidates(beta: torch.Tensor, mean: torch.Tensor, scales: list[tuple[str, torch.Tensor]],
                    yours: torch.Tensor | None, batch_mean: torch.Tensor | None) -> Iterator[tuple[str, torch.Tensor]]:
    """b_fold written term by term: the bias term (bnbias, none, scaled) and the mean term (which mean, times
    which scale, with which sign); the lesson's bnbias - mean * bngain / sqrt(var + eps) is left out."""
    right = scales[0][1]
    betas = [("bnbias", beta), ("", 0.0), ("bnbias * bngain / sqrt(var + eps) (the bias scaled too)", beta * right)]
    sources = [("mean", mean)] + ([("the data's own mean of hpre (a batch's, not the running mean)", batch_mean)]
                                  if batch_mean is not None else [])
    factors = [("bngain / sqrt(var + eps)", right), ("(nothing: the mean not scaled)", None)]
    if yours is not None:
        factors.insert(1, ("the scale your W_fold uses", yours))
    factors += [(why, s) for why, s in scales[1:]]
    for beta_why, b in betas:
        yield (f"{beta_why} alone (no mean term)" if beta_why else "zeros"), b + torch.zeros_like(mean)
        for src_why, src in sources:
            for f_why, f in factors:
                term = src if f is None else src * f
                mean_why = f"{src_why} * {f_why}" if f is not None else f"{src_why} {f_why}"
                for sign in (-1, 1):
                    if (beta_why, src_why, f_why, sign) == ("bnbias", "mean", "bngain / sqrt(var + eps)", -1):
                        continue
                    desc = f"{beta_why} {'-' if sign < 0 else '+'} {mean_why}" if beta_why else \
                        f"{'-' if sign < 0 else ''}{mean_why} (no bnbias)"
                    if sign > 0:
                        desc += " (the mean term added, not subtracted)"
                    yield desc, b + sign * term


def check_fold(W_fold: Any, b_fold: Any, model_bn: nn.Module, Xdev: torch.Tensor, start: Any = None,
               eps: float = 1e-5) -> list[Result]:
    """Exercise 2's rows: W_fold, b_fold (against PyTorch's fuse_linear_bn_weights) and the folded network's
    logits. A wrong fold is read term by term: the column scale W_fold applies, the bias and mean terms of
    b_fold. `start` (`snapshot` of model_bn before the answer cell) shows a fold that changed model_bn itself."""
    from mmlib.layers import eval_mode
    state = {k: v.detach().cpu().double() for k, v in model_bn.state_dict().items()}
    changed = []
    if isinstance(start, Mapping):
        changed = [k for k, v in start.items() if k in state and not torch.equal(v.cpu().double(), state[k])]
        state = {**state, **{k: v.detach().cpu().double() for k, v in start.items()}}
    W1, g, beta = state["W1"], state["bngain"][0], state["bnbias"][0]
    mean, var = state["bnmean_running"][0], state["bnvar_running"][0]
    want_W, want_b = fold_batchnorm(W1, mean, var, g, beta, eps=eps)
    with torch.no_grad():
        emb = state["C"][Xdev.cpu()].view(len(Xdev), -1)
        hpre = emb @ W1
        batch = {"mean": hpre.mean(0), "var": hpre.var(0, unbiased=False), "var_unbiased": hpre.var(0)}
        logits_eval = _eval_logits(model_bn, Xdev, start, eval_mode)
    scales = list(scale_candidates(g, var, mean, eps, batch))
    row_W = check("W_fold", W_fold, want_W, atol=1e-5, rtol=1e-5,
                  hint="each column j of W1 is multiplied by bngain[j] / sqrt(var[j] + eps)")
    row_W = explain(row_W, W_fold, [], atol=0, fallback=lambda: describe_W_fold(W_fold, W1, scales, g, var, eps))
    yours = None
    try:
        yours = column_scale(torch.as_tensor(W_fold).detach().cpu().double(), W1)
    except Exception:  # noqa: BLE001 - an unreadable W_fold has its own row
        pass
    row_b = check("b_fold", b_fold, want_b, atol=1e-5, rtol=1e-5, hint="bnbias - mean * bngain / sqrt(var + eps)")
    if row_b.status == "shape" and torch.as_tensor(b_fold).numel() == want_b.numel():
        row_b = Result("b_fold", "shape", f"{row_b.detail}; the exercise asks for one entry per hidden unit, shape "
                       f"({want_b.numel()},): take row [0] of the (1, n_hidden) BatchNorm tensors", row_b.hint)
    row_b = explain(row_b, b_fold, lambda: (("b_fold = " + why, v) for why, v in
                                            bias_candidates(beta, mean, scales, yours, batch["mean"])),
                    atol=1e-5, rtol=1e-4)
    dtype = model_bn.W2.dtype
    Wf, bf = (x.detach().cpu() if isinstance(x, torch.Tensor) else x for x in (W_fold, b_fold))
    row_logits = folded_logits_row("folded logits (dev set)", emb.to(dtype), Wf, bf, state["W2"].to(dtype),
                                   state["b2"].to(dtype), logits_eval.cpu())
    rows = [row_W, row_b, row_logits]
    if changed:
        why = (f"your cell changed model_bn itself ({', '.join(changed)}): fold into new tensors and leave the "
               f"trained model as it was")
        rows[0] = Result("W_fold", "wrong", f"{rows[0].detail}; {why}" if not rows[0].passed else why, rows[0].hint)
    elif why := modes_changed(model_bn, start):
        rows[0] = Result("W_fold", "wrong", f"{rows[0].detail}; {why}" if not rows[0].passed else why, rows[0].hint)
    for i, (name, value) in enumerate((("W_fold", W_fold), ("b_fold", b_fold))):
        if isinstance(value, torch.Tensor) and value.grad_fn is not None:
            why = (f"{name} is part of model_bn's autograd graph (grad_fn {type(value.grad_fn).__name__}): computed "
                   f"with gradients on, it holds on to model_bn's tensors, and a backward pass through the folded "
                   f"layer would reach them. A fold is a fixed copy for inference: compute it under "
                   f"torch.no_grad(), or .detach() it")
            rows[i] = Result(name, "wrong", f"{rows[i].detail}; {why}" if not rows[i].passed else why, rows[i].hint)
    return rows


def _eval_logits(model_bn: nn.Module, X: torch.Tensor, start: Any, eval_mode) -> torch.Tensor:
    """The eval-mode logits of model_bn as it was before the answer cell (`start`), or as it is."""
    import copy
    model = model_bn
    if isinstance(start, Mapping):
        model = copy.deepcopy(model_bn)
        model.load_state_dict({k: v.to(p.dtype) for (k, v), p in zip(start.items(), model.state_dict().values())})
    with torch.no_grad(), eval_mode(model):
        return model(X)[0]
