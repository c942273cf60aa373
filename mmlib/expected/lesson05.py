"""Expected answers for lesson 05's exercises, each computed by a route of its own, and the probes
that run a learner's code against them.

- `flatten_consecutive`: neighbouring positions side by side, built from strided slices and
  `torch.cat` (the lesson's layer uses one `view`); `probe_flatten` runs a learner's class on
  random inputs of several shapes and on shapes it must refuse (exercise 1).
- `batchnorm_reference`: `torch.nn.BatchNorm1d` on the channels-first layout PyTorch uses;
  `probe_batchnorm` feeds a learner's BatchNorm a few (N, L, C) and (N, C) batches and compares
  outputs and running statistics (exercise 2).
- `probe_conv_stack`: a learner's stack of `nn.Conv1d` levels, given a trained WaveNet's weights,
  against the WaveNet's own outputs window by window (exercise 3).
- `beat_target`: a dev loss against the lesson's, by how much it beat or missed it (exercise 4).
"""

from __future__ import annotations

import math

from collections.abc import Callable

import torch
from torch import nn

from mmlib.checks import TODO, Result, check, check_that, is_todo

ATOL = 1e-5
"""float32 results reached by two orders of summation differ by about this much on these sizes."""


# ---- exercise 1: FlattenConsecutive -----------------------------------------------------------------

def flatten_consecutive(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, T, C) -> (B, T // n, n * C), one group dropped to (B, n * C); by slices, not by `view`.

    Group g holds positions g*n ... g*n + n - 1; `x[:, i::n]` is position i of every group, so
    concatenating the n of them along the channels puts each group's positions side by side.
    """
    B, T, C = x.shape
    if T % n:
        raise ValueError(f"{n} does not divide {T} positions")
    out = torch.cat([x[:, i::n] for i in range(n)], dim=2)      # (B, T // n, n * C)
    return out[:, 0] if out.shape[1] == 1 else out


FLATTEN_CASES = [((4, 8, 3), 2), ((3, 8, 5), 4), ((2, 8, 3), 8), ((5, 2, 7), 2), ((2, 16, 4), 2)]
FLATTEN_REFUSED = [((4, 6, 3), 4, "6 positions do not split into groups of 4"),
                   ((4, 12, 2), 8, "12 positions do not split into groups of 8"),
                   ((4, 16), 2, "a 2-D input has no positions left to fuse")]


def _call(layer: Callable, x: torch.Tensor):
    """The layer's output, or the exception it raised."""
    try:
        return layer(x), None
    except Exception as e:  # noqa: BLE001 - any exception is reported to the learner, not raised
        return None, e


def probe_flatten(cls: type, seed: int = 0) -> list[Result]:
    """One row per case: `cls(n)(x)` against `flatten_consecutive(x, n)`, then the shapes to refuse."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for shape, n in FLATTEN_CASES:
        x = torch.randn(shape, generator=g)
        want = flatten_consecutive(x, n)
        name = f"FlattenConsecutive({n}) on {shape} -> {tuple(want.shape)}"
        got, err = _call(cls(n), x)
        if err is not None:
            rows.append(Result(name, "error", f"raised {type(err).__name__}: {err}",
                               "reshape (B, T, C) to (B, T // n, C * n)"))
        else:
            rows.append(check(name, got, want, atol=0.0,
                              hint="x.view(B, T // n, C * n) puts each group's n positions side by side; "
                                   "drop dimension 1 when it has size 1"))
    for shape, n, why in FLATTEN_REFUSED:
        name = f"FlattenConsecutive({n}) on {shape} must be refused"
        got, err = _call(cls(n), torch.randn(shape, generator=g))
        if got is TODO:
            rows.append(Result(name, "todo", "replace TODO with your answer"))
        elif isinstance(err, ValueError):
            rows.append(Result(name, "close", f"ValueError: {err}"))
        elif err is not None:
            rows.append(Result(name, "wrong", f"raised {type(err).__name__} ({err}); expected a ValueError that "
                               f"says why: {why}", "check the shape first and raise ValueError with a message"))
        else:
            rows.append(Result(name, "wrong", f"returned shape {tuple(getattr(got, 'shape', ()))} instead of "
                               f"refusing: {why}", "raise ValueError when x is not 3-D or n does not divide T"))
    return rows


# ---- exercise 2: BatchNorm over batch and positions -------------------------------------------------

def batchnorm_reference(batches: list[torch.Tensor], dim: int, momentum: float, eps: float = 1e-5
                        ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, nn.BatchNorm1d]:
    """`torch.nn.BatchNorm1d` in training mode on each batch, in PyTorch's (N, C, L) layout.

    Returns the outputs (in the batches' own layout), the running mean and variance after the
    last batch, and the module (for eval-mode outputs).
    """
    bn = nn.BatchNorm1d(dim, eps=eps, momentum=momentum)
    outs = []
    with torch.no_grad():
        for x in batches:
            outs.append(bn(x.transpose(1, 2)).transpose(1, 2) if x.ndim == 3 else bn(x))
    return outs, bn.running_mean.clone(), bn.running_var.clone(), bn


def probe_batchnorm(cls: type, seed: int = 0, dim: int = 6, momentum: float = 0.2) -> list[Result]:
    """Train-mode outputs and running statistics of `cls(dim, momentum=momentum)` after three
    (N, L, C) batches, its eval-mode output, and the same for (N, C) batches (which must still work)."""
    g = torch.Generator().manual_seed(seed)
    shift, scale = torch.randn(dim, generator=g), torch.rand(dim, generator=g) * 3 + 0.5
    hint_shape = ("average over every dimension but the last (the channels): dims (0, 1) for (N, L, C) inputs, "
                  "so the running statistics keep one number per channel, shape (C,)")
    rows = []
    for layout, shape in (("(N, L, C)", (16, 4, dim)), ("(N, C)", (32, dim))):
        batches = [torch.randn(shape, generator=g) * scale + shift for _ in range(3)]
        outs, mean, var, ref = batchnorm_reference(batches, dim, momentum)
        layer = cls(dim, momentum=momentum)
        got = None
        for x in batches:
            got, err = _call(layer, x)
            if err is not None or got is TODO:
                break
        names = [f"{layout}: output in training mode", f"{layout}: running_mean after 3 batches",
                 f"{layout}: running_var after 3 batches", f"{layout}: output in eval mode"]
        if got is TODO:
            rows += [Result(n, "todo", "replace TODO with your answer") for n in names]
            continue
        if err is not None:
            rows += [Result(n, "error", f"raised {type(err).__name__}: {err}", hint_shape) for n in names]
            continue
        n = math.prod(shape[:-1])   # values averaged per channel: a factor of n or n - 1 is named as such
        rows.append(check(names[0], got, outs[-1], atol=ATOL, rtol=1e-5, hint=hint_shape, n=n))
        rows.append(check(names[1], layer.running_mean, mean, atol=ATOL, rtol=1e-5, hint=hint_shape))
        rows.append(check(names[2], layer.running_var, var, atol=ATOL, rtol=1e-5,
                          hint="the running variance uses the unbiased estimate: multiply the batch variance "
                               "by n / (n - 1), n = the number of values averaged per channel (N * L)", n=n))
        layer.training = False
        ref.eval()
        x = torch.randn(shape, generator=g)[:2] * scale + shift
        with torch.no_grad():
            want = ref(x.transpose(1, 2)).transpose(1, 2) if x.ndim == 3 else ref(x)
        got, err = _call(layer, x)
        if err is not None:
            rows.append(Result(names[3], "error", f"raised {type(err).__name__}: {err}",
                               "eval mode normalises with the running statistics"))
        else:
            rows.append(check(names[3], got, want, atol=ATOL, rtol=1e-5,
                              hint="eval mode normalises with the running statistics"))
    return rows


# ---- exercise 3: the dilated-convolution stack ------------------------------------------------------

def probe_conv_stack(stack, model, X: torch.Tensor, X_windows: torch.Tensor, keep: torch.Tensor,
                     atol: float = 1e-4) -> list[Result]:
    """A learner's `nn.Sequential` of Conv1d levels against a trained WaveNet.

    `X` holds padded words (`build_sequences`), `X_windows` the same words' windows (`build_dataset`)
    and `keep` (the targets != -1) which positions of X are real; the WaveNet's weights are copied
    into the stack and its logits at every real position compared with the WaveNet's per window.
    """
    from mmlib.layers import eval_mode
    from mmlib.models import CausalConvWaveNet

    n = len(model.levels)
    names = ["Conv1d layers", *[f"Conv1d {k}: kernel, dilation, channels" for k in range(n)],
             "logits at every position vs the WaveNet, window by window"]
    if is_todo(stack):
        return [Result(name, "todo", "replace TODO with your answer") for name in names]
    if not isinstance(stack, nn.Module):
        return [Result(names[0], "error", f"expected an nn.Sequential, got {type(stack).__name__}")]
    convs = [m for m in stack.modules() if isinstance(m, nn.Conv1d)]
    rows = [check_that(names[0], stack, len(convs) == n,
                       f"{len(convs)} Conv1d layers, the WaveNet has {n} levels",
                       hint="one Conv1d -> BatchNorm1d -> Tanh per level")]
    c = model.config
    for k in range(n):
        want = (2, 2**k, c.n_embd if k == 0 else c.n_hidden, c.n_hidden, False)
        if k >= len(convs):
            rows.append(Result(names[1 + k], "wrong", "missing"))
            continue
        m = convs[k]
        got = (m.kernel_size[0], m.dilation[0], m.in_channels, m.out_channels, m.bias is not None)
        rows.append(check_that(names[1 + k], m, got == want and m.padding[0] == 0,
                               f"expected kernel_size={want[0]}, dilation={want[1]}, in {want[2]}, out {want[3]}, "
                               f"no bias, no padding; got kernel_size={got[0]}, dilation={got[1]}, in {got[2]}, "
                               f"out {got[3]}, bias={got[4]}, padding={m.padding[0]}",
                               hint="level k pairs each position with the one 2**k before it"))
    try:
        conv = CausalConvWaveNet.from_wavenet(model, stack)
        with torch.no_grad(), eval_mode(model, conv):
            got = conv(X.to(model.device))[0][keep.to(model.device)]
            want = model(X_windows.to(model.device))[0]
        rows.append(check(names[-1], got, want, atol=atol,
                          hint="each level: Conv1d(kernel_size=2, dilation=2**k, bias=False), BatchNorm1d, Tanh"))
    except (ValueError, RuntimeError) as e:
        rows.append(Result(names[-1], "error", f"{type(e).__name__}: {e}"))
    return rows


# ---- exercise 4: beat the lesson --------------------------------------------------------------------

def beat_target(name: str, dev: float, target: float) -> Result:
    """Whether `dev` is below `target`, and by how much it beat or missed it."""
    if is_todo(dev):
        return Result(name, "todo", "replace TODO with your answer")
    margin = target - dev
    if margin > 0:
        return Result(name, "close", f"dev {dev:.4f} beats the lesson's {target:.4f} by {margin:.4f}")
    return Result(name, "wrong", f"dev {dev:.4f} misses the lesson's {target:.4f} by {-margin:.4f}",
                  "more capacity (n_embd, n_hidden), AdamW with a cosine schedule (section 8), or both")
