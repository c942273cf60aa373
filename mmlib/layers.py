"""Layers with the same call shapes as `torch.nn`, written out in plain tensors (lesson 03).

Lesson 03 builds these in the open ("PyTorch-ifying" the MLP); from then on the lessons import them
from here. Each layer is a callable object:

    layer(x)            forward; the result is also kept in `layer.out` so the diagnostics of
                        lesson 03 can look at every layer's activations (and, after
                        `layer.out.retain_grad()`, their gradients) once a batch has gone through
    layer.parameters()  the tensors an optimiser updates, in a fixed order

Shapes follow `torch.nn` (`Linear` maps (..., fan_in) to (..., fan_out), `BatchNorm1d` normalises
(N, C) over the batch), with one deliberate difference kept from the lectures: `Linear.weight` has
shape (fan_in, fan_out), so the forward pass is `x @ W + b` with no transpose. `tests/test_layers.py`
checks each layer against its `torch.nn` twin with tolerances.

Left out on purpose: modules-within-modules, hooks, `state_dict`, dtype handling. The course needs
a handful of layers it can read in one sitting, not a framework.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_features(layer: str, x: torch.Tensor, want: int, dim: int = -1) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{layer} expects a tensor, got {type(x).__name__}")
    if x.ndim == 0 or x.shape[dim] != want:
        raise ValueError(
            f"{layer} expects inputs with {want} features in dimension {dim}, got shape {tuple(x.shape)}"
            " (did the layer before it have a different width?)"
        )


class Linear:
    """`y = x @ weight + bias`, like `torch.nn.Linear(fan_in, fan_out)` (lesson 03).

    The weight is drawn from N(0, 1) and divided by sqrt(fan_in) ("Kaiming-style"), so for inputs of
    unit variance each output also has roughly unit variance; `gain` multiplies it (lesson 03 uses
    5/3 in front of `tanh`). The bias starts at zero. `generator` makes the draw reproducible.
    `torch.nn.Linear` stores the transposed weight, shape (fan_out, fan_in), and draws it uniformly;
    the call shape and the result for equal weights are the same.
    """

    def __init__(self, fan_in: int, fan_out: int, bias: bool = True, *,
                 generator: torch.Generator | None = None, gain: float = 1.0,
                 device: str | torch.device | None = None):
        self.fan_in = _positive_int("fan_in", fan_in)
        self.fan_out = _positive_int("fan_out", fan_out)
        if not isinstance(gain, (int, float)) or isinstance(gain, bool) or gain != gain or abs(gain) == float("inf"):
            raise ValueError(f"gain must be a finite number, got {gain!r}")
        # Drawn on the CPU with the (CPU) generator, then moved: the same seed gives the same
        # weights on every device.
        w = torch.randn((fan_in, fan_out), generator=generator) * (gain / fan_in**0.5)
        self.weight = w.to(device).requires_grad_()
        self.bias = torch.zeros(fan_out, device=device, requires_grad=True) if bias else None
        self.out: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_features("Linear", x, self.fan_in)
        self.out = x @ self.weight
        if self.bias is not None:
            self.out = self.out + self.bias
        return self.out

    def parameters(self) -> list[torch.Tensor]:
        return [self.weight] + ([] if self.bias is None else [self.bias])

    def __repr__(self) -> str:
        return f"Linear({self.fan_in}, {self.fan_out}, bias={self.bias is not None})"


class BatchNorm1d:
    """Batch normalisation, like `torch.nn.BatchNorm1d(dim)` (lesson 03).

    Training mode (`self.training = True`, the default): each feature is standardised with the mean
    and variance of the current batch, then scaled by `gamma` and shifted by `beta` (the learned
    gain and bias), and the running statistics move towards the batch's by `momentum`:
    `running = (1 - momentum) * running + momentum * batch`. Eval mode uses the running statistics
    instead, so one example's output no longer depends on the others in its batch - which is what
    sampling and evaluation need.

    As in PyTorch, the batch is normalised with the biased variance (divide by n) and the running
    variance is updated with the unbiased one (divide by n - 1). Inputs are (N, C), or (N, L, C)
    - the lectures' layout for sequences, where PyTorch's is (N, C, L) - normalised over N and L.
    """

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1, *,
                 device: str | torch.device | None = None):
        self.dim = _positive_int("dim", dim)
        if not eps > 0:
            raise ValueError(f"eps must be positive (it keeps the division finite), got {eps!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be between 0 and 1, got {momentum!r}")
        self.eps = eps
        self.momentum = momentum
        self.training = True
        # parameters, trained with backprop
        self.gamma = torch.ones(dim, device=device, requires_grad=True)
        self.beta = torch.zeros(dim, device=device, requires_grad=True)
        # buffers, updated by the running averages below (no gradient)
        self.running_mean = torch.zeros(dim, device=device)
        self.running_var = torch.ones(dim, device=device)
        self.out: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_features("BatchNorm1d", x, self.dim)
        if x.ndim not in (2, 3):
            raise ValueError(f"BatchNorm1d expects (N, C) or (N, L, C) inputs, got shape {tuple(x.shape)}")
        dims = (0,) if x.ndim == 2 else (0, 1)
        if self.training:
            n = x.numel() // self.dim
            if n < 2:
                raise ValueError(
                    "BatchNorm1d in training mode needs more than one value per feature to compute a "
                    f"variance, got shape {tuple(x.shape)}; use eval mode (layer.training = False) "
                    "for single examples"
                )
            xmean = x.mean(dims, keepdim=True)
            xvar = x.var(dims, keepdim=True, correction=0)
            with torch.no_grad():
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(m * xmean.flatten())
                self.running_var.mul_(1 - m).add_(m * xvar.flatten() * n / (n - 1))
        else:
            xmean, xvar = self.running_mean, self.running_var
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)
        self.out = self.gamma * xhat + self.beta
        return self.out

    def parameters(self) -> list[torch.Tensor]:
        return [self.gamma, self.beta]

    def __repr__(self) -> str:
        return f"BatchNorm1d({self.dim}, eps={self.eps:g}, momentum={self.momentum:g})"


class Tanh:
    """`torch.tanh` as a layer, like `torch.nn.Tanh()` (lesson 03). No parameters."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.out = torch.tanh(x)
        return self.out

    def parameters(self) -> list[torch.Tensor]:
        return []

    def __repr__(self) -> str:
        return "Tanh()"


class ReLU:
    """`max(x, 0)` as a layer, like `torch.nn.ReLU()` (lesson 03). No parameters."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.out = torch.relu(x)
        return self.out

    def parameters(self) -> list[torch.Tensor]:
        return []

    def __repr__(self) -> str:
        return "ReLU()"


def parameters(layers: Iterable) -> list[torch.Tensor]:
    """Every layer's parameters, in layer order (what the training loop updates)."""
    return [p for layer in layers for p in layer.parameters()]


def train_mode(layers: Iterable, training: bool = True) -> None:
    """Put every layer that has a `training` flag (BatchNorm1d) into training or eval mode.

    Sampling and evaluation need `train_mode(layers, False)`; training needs it back on
    (lesson 03: sampling in training mode is an easy mistake, reported for the original lecture code).
    """
    if not isinstance(training, bool):
        raise ValueError(f"training must be True or False, got {training!r}")
    for layer in layers:
        if hasattr(layer, "training"):
            layer.training = training
