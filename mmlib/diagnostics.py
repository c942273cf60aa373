"""The four health checks of a deep network, as reusable functions (lesson 03).

Lesson 03 looks at a network through four windows, each one a function here that returns plain
numbers (so tests and widgets can use them) and a `plot_*` function that draws them:

1. activations   `activation_stats`  per nonlinearity layer: mean, std, % saturated, histogram
2. gradients     `gradient_stats`    the same for the gradient arriving at each nonlinearity
3. weight grads  `weight_stats`      per weight matrix: grad mean/std and the grad:data ratio
4. updates       `update_ratios`     per weight matrix: log10(std(lr * grad) / std(weight)), watched
                                     over training; about -3 (an update of 1/1000 of the weight's
                                     scale per step) is the rule of thumb the lecture uses

`Recorder` keeps the first three (and the update ratios) at chosen steps of a training run, for
`mmlib.widgets.training_explorer`; `recorder.callbacks(layers, weights)` hands it every step of
`mmlib.train.train`. Layers are those of `mmlib.layers`: anything with `.out`, and for the gradients
`retain_grads(layers)` must run before `loss.backward()` (`LayerModel(..., keep_grads=True)` does it).
`gradients_on` runs one forward and backward pass for a look at a network's state, and
`four_diagnostics` prints and draws all four at once.

"Saturated" means the nonlinearity passes (almost) no gradient: |tanh| > 0.97, where its slope
1 - tanh^2 is below 0.06, or ReLU output exactly 0, where its slope is 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import torch

from mmlib.layers import ReLU, Tanh, retain_grads  # noqa: F401 (retain_grads: lesson 03 imports it from here)
from mmlib.train import Callbacks, StepInfo
from mmlib.validate import positive_int

TANH_SATURATION = 0.97
"""|tanh(x)| above this counts as saturated (slope below 1 - 0.97**2 = 0.059), as in the lecture."""

UPDATE_RATIO_REFERENCE = -3.0
"""log10 of the update:data ratio the lecture aims for: each step moves a weight by ~1/1000 of its scale."""


@dataclass(frozen=True)
class Stats:
    """Summary of one tensor: `mean`, `std`, `saturated` (a fraction, None where it has no meaning),
    and a density histogram (`centers`, `density`) of its finite values. `finite` is False when the
    tensor holds inf or NaN; the numbers then describe only its finite part."""

    name: str
    mean: float
    std: float
    saturated: float | None
    centers: torch.Tensor
    density: torch.Tensor
    finite: bool = True
    numel: int = 0

    def line(self) -> str:
        """One readable line, e.g. `layer 1 tanh: mean -0.01, std 0.64, saturated 3.20%`."""
        # 3 significant digits: activations are ~0.1-1, gradients ~1e-3-1e-6
        s = f"{self.name}: mean {self.mean:+.3g}, std {self.std:.3g}"
        if self.saturated is not None:
            s += f", saturated {100 * self.saturated:.2f}%"
        if not self.finite:
            s += " (holds inf/NaN!)"
        return s


def saturation(t: torch.Tensor, kind: str) -> float | None:
    """Fraction of entries where the nonlinearity `kind` ("tanh", "relu", other: None) passes no gradient."""
    if kind == "tanh":
        return (t.abs() > TANH_SATURATION).float().mean().item()
    if kind == "relu":
        return (t == 0).float().mean().item()
    return None


def describe(name: str, t: torch.Tensor, *, kind: str | None = None, bins: int = 50) -> Stats:
    """Mean, std, saturation and a density histogram of `t` (lesson 03's printouts and plots).

    A tensor with inf or NaN entries is described by its finite entries and flagged, so a plot of a
    diverging network shows what it can and says what it cannot, instead of failing.
    """
    t = t.detach().float().cpu().flatten()
    ok = torch.isfinite(t)
    finite = bool(ok.all())
    v = t[ok]
    if v.numel() == 0:
        empty = torch.zeros(0)
        return Stats(name, math.nan, math.nan, None, empty, empty, False, t.numel())
    mean = v.mean().item()
    std = v.std().item() if v.numel() > 1 else 0.0
    sat = saturation(v, kind) if kind else None
    lo, hi = v.min().item(), v.max().item()
    if hi - lo < 1e-12:  # a constant tensor (e.g. all zeros): one narrow bar around the value
        lo, hi = lo - 0.5, hi + 0.5
    density, edges = torch.histogram(v, bins=bins, range=(lo, hi), density=True)
    return Stats(name, mean, std, sat, (edges[:-1] + edges[1:]) / 2, density, finite, t.numel())


def _kind(layer) -> str | None:
    if isinstance(layer, Tanh):
        return "tanh"
    if isinstance(layer, ReLU):
        return "relu"
    return None


def _watched(layers: Sequence, kinds: tuple[type, ...] | None) -> list[tuple[int, object]]:
    """(position, layer) of the layers whose outputs the diagnostics look at."""
    kinds = (Tanh, ReLU) if kinds is None else kinds
    return [(i, layer) for i, layer in enumerate(layers) if isinstance(layer, kinds)]


def activation_stats(layers: Sequence, kinds: tuple[type, ...] | None = None, bins: int = 50) -> list[Stats]:
    """Diagnostic 1: the output distribution of each nonlinearity layer (default: Tanh and ReLU).

    Healthy: a spread of values, few saturated. A std shrinking layer by layer means the signal
    dies out with depth; a large saturated share means most units pass no gradient.
    """
    out = []
    for i, layer in _watched(layers, kinds):
        if getattr(layer, "out", None) is None:
            raise ValueError(f"layer {i} ({layer!r}) has no output yet: run a forward pass first")
        k = _kind(layer)
        out.append(describe(f"layer {i} ({type(layer).__name__.lower()})", layer.out, kind=k, bins=bins))
    return out


def gradient_stats(layers: Sequence, kinds: tuple[type, ...] | None = None, bins: int = 50) -> list[Stats]:
    """Diagnostic 2: the distribution of d loss / d output of each nonlinearity layer.

    Needs `retain_grads(layers)` before `loss.backward()`. Healthy: about the same spread in every
    layer; shrinking or growing towards the input means vanishing or exploding gradients.
    """
    out = []
    for i, layer in _watched(layers, kinds):
        out_t = getattr(layer, "out", None)
        # reading .grad of a non-leaf tensor that does not retain it only warns; check first
        kept = isinstance(out_t, torch.Tensor) and (out_t.is_leaf or out_t.retains_grad)
        grad = out_t.grad if kept else None
        if grad is None:
            raise ValueError(f"layer {i} ({layer!r}) has no output gradient: call retain_grads(layers) "
                             "after the forward pass and before loss.backward()")
        out.append(describe(f"layer {i} ({type(layer).__name__.lower()})", grad, bins=bins))
    return out


@dataclass(frozen=True)
class WeightStats:
    """Diagnostic 3 for one weight matrix: its gradient's `Stats` and `grad_data` = std(grad) / std(weight)."""

    name: str
    shape: tuple[int, ...]
    grad: Stats
    grad_data: float

    def line(self) -> str:
        return (f"weight {str(self.shape):>10} | mean {self.grad.mean:+e} | std {self.grad.std:e} | "
                f"grad:data ratio {self.grad_data:e}")


def _named(params) -> list[tuple[str, torch.Tensor]]:
    if isinstance(params, dict):
        return list(params.items())
    return [(f"param {i}", p) for i, p in enumerate(params)]


def weight_stats(params, bins: int = 50) -> list[WeightStats]:
    """Diagnostic 3: for every 2-D parameter (a weight matrix or embedding table) after `backward()`.

    `params` is a list or a name -> tensor dict. A grad:data ratio far above the others means that
    matrix would be changed much faster than the rest by the same learning rate.
    """
    out = []
    for name, p in _named(params):
        if p.ndim != 2:
            continue
        if p.grad is None:
            raise ValueError(f"{name} has no gradient: run loss.backward() first")
        g = describe(name, p.grad, bins=bins)
        ratio = (p.grad.std() / p.data.std()).item() if p.numel() > 1 else math.nan
        out.append(WeightStats(name, tuple(p.shape), g, ratio))
    return out


@torch.no_grad()
def update_ratios(params, lr: float) -> list[float]:
    """Diagnostic 4 at one step: log10(std(lr * grad) / std(weight)) for every parameter.

    Call it after `backward()` and before (or instead of) the update. Values far below -3 mean that
    parameter learns too slowly; far above it, too fast. A weight with zero spread gives -inf/NaN,
    kept as is (`plot_update_ratios` leaves such points out).
    """
    out = []
    for _, p in _named(params):
        if p.grad is None or p.numel() < 2:
            out.append(math.nan)
            continue
        out.append(((lr * p.grad).std() / p.data.std()).log10().item())
    return out


# ---- drawing -----------------------------------------------------------------------------------

def plot_distributions(stats: Sequence[Stats], ax: plt.Axes | None = None, title: str = "") -> plt.Axes:
    """One line per layer: the density histograms of `activation_stats` or `gradient_stats`."""
    ax = ax or plt.subplots(figsize=(9, 3))[1]
    for s in stats:
        label = s.name + (f" {100 * s.saturated:.1f}% sat" if s.saturated is not None else "")
        ax.plot(s.centers.numpy(), s.density.numpy(), label=label)
    if title:
        ax.set_title(title)
    if stats:
        ax.legend(fontsize=7)
    return ax


def plot_weight_grads(stats: Sequence[WeightStats], ax: plt.Axes | None = None) -> plt.Axes:
    """Diagnostic 3 drawn: the gradient histogram of each weight matrix."""
    ax = ax or plt.subplots(figsize=(9, 3))[1]
    for s in stats:
        ax.plot(s.grad.centers.numpy(), s.grad.density.numpy(), label=f"{s.name} {s.shape}")
    ax.set_title("weight gradient distribution")
    if stats:
        ax.legend(fontsize=7)
    return ax


def plot_update_ratios(history: Sequence[Sequence[float]] | torch.Tensor, names: Sequence[str] | None = None,
                       ax: plt.Axes | None = None, step: int | None = None) -> plt.Axes:
    """Diagnostic 4 drawn: log10 update:data ratio of each parameter over training, with the -3 line.

    `history` is (steps, n_params), e.g. a list of `update_ratios(...)` results; `step` draws a
    vertical marker (the training explorer uses it).
    """
    h = torch.as_tensor(history, dtype=torch.float64)
    if h.ndim != 2:
        raise ValueError(f"history must be (steps, n_params), got shape {tuple(h.shape)}")
    ax = ax or plt.subplots(figsize=(9, 3))[1]
    names = list(names) if names is not None else [f"param {i}" for i in range(h.shape[1])]
    for j in range(h.shape[1]):
        y = h[:, j].clone()
        y[~torch.isfinite(y)] = math.nan  # a zero-spread weight: leave the point out
        ax.plot(y.numpy(), label=names[j])
    ax.axhline(UPDATE_RATIO_REFERENCE, color="k", ls="--", lw=1, label="1e-3 reference")
    if step is not None:
        ax.axvline(step, color="grey", lw=1)
    ax.set_xlabel("recorded step")
    ax.set_ylabel("log10(update / data)")
    ax.set_title("update:data ratio over training")
    ax.legend(fontsize=7)
    return ax


# ---- recording a run ---------------------------------------------------------------------------

@dataclass
class Recorder:
    """Statistics of a training run, kept every `every` steps (for `widgets.training_explorer`).

    In the training loop, after `loss.backward()` (with `retain_grads(layers)` before it) and before
    the update, call `recorder.record(step, layers, params, lr)`. The update:data ratios are kept
    at every call (they are cheap); the histograms only every `every` steps.
    """

    every: int = 100
    names: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    activations: list[list[Stats]] = field(default_factory=list)
    gradients: list[list[Stats]] = field(default_factory=list)
    ud_steps: list[int] = field(default_factory=list)
    ud: list[list[float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        positive_int("every", self.every)

    def record(self, step: int, layers: Sequence, params, lr: float, loss: float | None = None) -> None:
        named = [(n, p) for n, p in _named(params) if p.ndim == 2]
        if not self.names:
            self.names = [f"{n} {tuple(p.shape)}" for n, p in named]
        self.ud_steps.append(step)
        self.ud.append(update_ratios(dict(named), lr))
        self.losses.append(math.nan if loss is None else float(loss))
        if step % self.every == 0:
            self.steps.append(step)
            self.activations.append(activation_stats(layers))
            self.gradients.append(gradient_stats(layers))

    def callbacks(self, layers: Sequence, params) -> Callbacks:
        """This recorder as `mmlib.train.train(..., callbacks=...)`: `record` at every step, after the
        backward pass and before the update (when the gradients are there and not yet used)."""
        return _RecordSteps(self, layers, params)

    def __len__(self) -> int:
        return len(self.steps)


class _RecordSteps(Callbacks):
    def __init__(self, recorder: Recorder, layers: Sequence, params):
        self.recorder, self.layers, self.params = recorder, layers, params

    def on_step(self, info: StepInfo) -> None:
        self.recorder.record(info.step, self.layers, self.params, info.lr, info.loss.item())


def gradients_on(model, X: torch.Tensor, Y: torch.Tensor) -> float:
    """One forward and backward pass of `model` on (X, Y), from cleared gradients; nothing is updated.

    Afterwards every parameter's `.grad` (and, for a `LayerModel(..., keep_grads=True)`, every layer's
    output gradient) holds the gradient of this batch's loss: the state the diagnostics read.
    Returns the loss.
    """
    for p in model.parameters():
        p.grad = None
    _, loss = model(X, Y)
    loss.backward()
    return loss.item()


def four_diagnostics(layers: Sequence, weights: dict, recorder: Recorder, *, decay_step: int,
                     title: str = "") -> tuple[list[Stats], list[Stats], list[WeightStats]]:
    """Lesson 03's four diagnostics of a layer stack after a backward pass, printed and drawn.

    1-3 read the layers' outputs, their gradients and the weights' gradients as they are now;
    4 is the update:data ratio `recorder` kept over training, summarised as its mean log10 before
    and from `decay_step` (where the learning rate dropped). Returns the statistics of 1-3.
    """
    from mmlib.plots import show_compact

    acts, grads, wstats = activation_stats(layers), gradient_stats(layers), weight_stats(weights)
    print("activations:", *("  " + s.line() for s in acts), sep="\n")
    print("gradients:", *("  " + s.line() for s in grads), sep="\n")
    print("weight gradients:", *("  " + s.line() for s in wstats), sep="\n")
    ud = torch.tensor(recorder.ud)  # (steps, weights): log10 update:data ratio at every step
    print(f"update:data ratio, mean log10 before / from the decay step (step {decay_step:,}):")
    for name, before, after in zip(recorder.names, ud[:decay_step].nanmean(0), ud[decay_step:].nanmean(0)):
        print(f"  {name:<20} {before:+.2f} -> {after:+.2f}  (change {after - before:+.2f})")
    fig, axes = plt.subplots(2, 2, figsize=(12, 6))
    plot_distributions(acts, axes[0, 0], "activation distribution")
    plot_distributions(grads, axes[0, 1], "gradient distribution")
    plot_weight_grads(wstats, axes[1, 0])
    plot_update_ratios(recorder.ud, recorder.names, axes[1, 1])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    show_compact(fig)
    return acts, grads, wstats
