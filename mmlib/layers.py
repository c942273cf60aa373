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

`build_stack` builds lesson 03's deep network as a list of these layers, and `LayerModel` gives a
stack the course's model call, `logits, loss = model(idx, targets)`, so `mmlib.train.train` trains
it and `mmlib.sample` samples from it (lesson 03 puts an embedding table in front: `LayerModel.mlp`).

Lesson 05 adds `Embedding`, `FlattenConsecutive` and `Sequential` (a list of layers called in
turn), `hierarchical_stack` (the WaveNet in these layers) and `BatchNorm1dOverBatch` (the first,
buggy BatchNorm for (N, L, C) inputs, kept to be looked at).

Left out on purpose: hooks, `state_dict`, dtype handling. The course needs a handful of layers it
can read in one sitting, not a framework.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from mmlib.runtime import eval_mode, n_parameters  # noqa: F401  (eval_mode: lesson 03 imports it from here)
from mmlib.validate import boolean, choice, number, positive_int, power_of_two

NONLINEARITIES = ("tanh", "relu", "none")
OUTPUT_GAIN = 0.1
"""`build_stack` scales the output layer's weights down so the network starts unsure of itself (lesson 03)."""


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
        self.fan_in = positive_int("fan_in", fan_in)
        self.fan_out = positive_int("fan_out", fan_out)
        number("gain", gain)
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
        self.dim = positive_int("dim", dim)
        self.eps = number("eps", eps, 0, None, low_open=True)   # > 0: it keeps the division finite
        self.momentum = number("momentum", momentum, 0, 1)
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


def retain_grads(layers: Iterable) -> None:
    """Ask autograd to keep the gradient of every layer's output (call between forward and backward).

    Autograd frees the gradients of intermediate tensors once it has passed them on; lesson 03's
    gradient diagnostics (`mmlib.diagnostics.gradient_stats`) read them, so they must be kept.
    """
    for layer in layers:
        out = getattr(layer, "out", None)
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.retain_grad()


def train_mode(layers: Iterable, training: bool = True) -> None:
    """Put every layer that has a `training` flag (BatchNorm1d) into training or eval mode.

    Sampling and evaluation need `train_mode(layers, False)`; training needs it back on
    (lesson 03: sampling in training mode is an easy mistake, reported for the original lecture code).
    """
    boolean("training", training)
    for layer in layers:
        if hasattr(layer, "training"):
            layer.training = training


def check_stack_settings(gain: float, depth: int, width: int, nonlinearity: str) -> None:
    """The settings of `build_stack` (and of lesson 03's explorer sliders), with clear errors."""
    number("gain", gain, 0, None)
    positive_int("depth", depth)
    positive_int("width", width)
    choice("nonlinearity", nonlinearity, NONLINEARITIES)


def build_stack(n_in: int, n_out: int, *, gain: float, depth: int, width: int, nonlinearity: str = "tanh",
                batchnorm: bool = False, output_gain: float = OUTPUT_GAIN,
                generator: torch.Generator | None = None,
                device: str | torch.device | None = None) -> tuple[list, list[int]]:
    """`depth` blocks of `Linear(gain) -> [BatchNorm1d] -> [Tanh | ReLU]`, then `Linear(width, n_out)` (lesson 03).

    Returns the layers and the index of each block's last layer (whose output the diagnostics show).
    The hidden Linear layers have no bias when BatchNorm follows (BatchNorm would remove it anyway);
    the output layer's weights are scaled by `output_gain`.
    """
    check_stack_settings(gain, depth, width, nonlinearity)
    layers: list = []
    ends: list[int] = []
    fan_in = n_in
    for _ in range(depth):
        layers.append(Linear(fan_in, width, bias=not batchnorm, generator=generator, gain=float(gain), device=device))
        if batchnorm:
            layers.append(BatchNorm1d(width, device=device))
        if nonlinearity == "tanh":
            layers.append(Tanh())
        elif nonlinearity == "relu":
            layers.append(ReLU())
        ends.append(len(layers) - 1)
        fan_in = width
    layers.append(Linear(width, n_out, generator=generator, gain=output_gain, device=device))
    return layers, ends


# ---- lesson 05: embeddings, fusing neighbours, a container ---------------------------------------


class Embedding:
    """A table of `num_embeddings` learned vectors, like `torch.nn.Embedding` (lesson 05).

    `layer(idx)` looks up one row per id: idx of any shape (B, T) gives (B, T, embedding_dim).
    It is lesson 02's `C[X]`, made a layer. The table is drawn from N(0, 1), as PyTorch does.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, *, generator: torch.Generator | None = None,
                 device: str | torch.device | None = None):
        self.num_embeddings = positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = positive_int("embedding_dim", embedding_dim)
        self.weight = torch.randn((num_embeddings, embedding_dim), generator=generator).to(device).requires_grad_()
        self.out: torch.Tensor | None = None

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        if not isinstance(idx, torch.Tensor) or idx.is_floating_point() or idx.is_complex():
            got = getattr(idx, "dtype", type(idx).__name__)
            raise TypeError(f"Embedding expects a tensor of integer ids, got {got}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_embeddings):
            raise ValueError(f"Embedding has {self.num_embeddings} rows, so ids must lie in "
                             f"0..{self.num_embeddings - 1}; got ids from {int(idx.min())} to {int(idx.max())} "
                             "(is the vocabulary larger than the table?)")
        self.out = self.weight[idx]
        return self.out

    def parameters(self) -> list[torch.Tensor]:
        return [self.weight]

    def __repr__(self) -> str:
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"


class FlattenConsecutive:
    """Put every `n` neighbouring positions side by side: (B, T, C) -> (B, T // n, n * C) (lesson 05).

    Positions 0..n-1 become the first new position, n..2n-1 the second, and so on; within a new
    position the old ones follow each other, so its features are [x[t], x[t+1], ..., x[t+n-1]].
    It is `x.view(B, T // n, n * C)`: in memory, neighbouring positions already lie one after the
    other. When a single position remains, that dimension is dropped, (B, 1, n * C) -> (B, n * C),
    as `torch.nn.Flatten` would leave it; `FlattenConsecutive(T)` is lesson 02's `view(B, -1)`.

    A number of positions that `n` does not divide is refused (in a stack built by
    `hierarchical_stack` that cannot happen: it refuses a block size that is not a power of two).
    """

    def __init__(self, n: int):
        self.n = positive_int("n", n)
        self.out: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"FlattenConsecutive({self.n}) expects (batch, positions, channels), got {shape}"
                             + (": its positions were already fused into one - does the stack have more "
                                "FlattenConsecutive levels than log2(block_size)?" if isinstance(x, torch.Tensor)
                                and x.ndim == 2 else ""))
        B, T, C = x.shape
        if T % self.n:
            raise ValueError(f"FlattenConsecutive({self.n}) fuses groups of {self.n} neighbouring positions, but got "
                             f"{T} positions (shape {tuple(x.shape)}), which {self.n} does not divide: "
                             "use a block size that is a power of two")
        x = x.reshape(B, T // self.n, C * self.n)
        if x.shape[1] == 1:
            x = x.squeeze(1)
        self.out = x
        return self.out

    def parameters(self) -> list[torch.Tensor]:
        return []

    def __repr__(self) -> str:
        return f"FlattenConsecutive({self.n})"


class Sequential:
    """Layers called one after the other, like `torch.nn.Sequential` (lesson 05).

    `Sequential([a, b, c])(x)` is `c(b(a(x)))`; `parameters()` lists every layer's, in order;
    `eval_mode(net)` reaches the layers inside. Indexing and `len` work as on the list.
    """

    def __init__(self, layers: Iterable):
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not callable(layer) or not hasattr(layer, "parameters"):
                raise TypeError(f"layer {i} of Sequential ({layer!r}) is not a layer: it needs a call and parameters()")
        self.out: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        self.out = x
        return self.out

    def parameters(self) -> list[torch.Tensor]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self) -> str:
        return "Sequential(\n" + "".join(f"  ({i}): {layer!r}\n" for i, layer in enumerate(self.layers)) + ")"


class BatchNorm1dOverBatch(BatchNorm1d):
    """Lesson 05's exhibit: BatchNorm as first written for 2-D inputs, averaging over dimension 0 only.

    On (N, L, C) inputs it keeps a mean and variance for every (position, channel) pair instead of
    one per channel, each from N numbers instead of N * L, and its running statistics silently
    take the shape (1, L, C) by broadcasting. It trains without an error, which is why the bug
    is easy to miss; `BatchNorm1d` is the fix. Kept so the lesson (and a test) can show the symptom.
    """

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_features("BatchNorm1d", x, self.dim)
        if self.training:
            xmean = x.mean(0, keepdim=True)                   # (1, C), or (1, L, C) for (N, L, C) input
            xvar = x.var(0, keepdim=True, correction=0)
            n = x.shape[0]
            with torch.no_grad():
                m = self.momentum
                # not in place: the (C,) buffers become (1, L, C) by broadcasting, as in the lecture
                self.running_mean = (1 - m) * self.running_mean + m * xmean
                self.running_var = (1 - m) * self.running_var + m * xvar * n / (n - 1)
        else:
            xmean, xvar = self.running_mean, self.running_var
        self.out = self.gamma * (x - xmean) / torch.sqrt(xvar + self.eps) + self.beta
        return self.out

    def __repr__(self) -> str:
        return f"BatchNorm1dOverBatch({self.dim}, eps={self.eps:g}, momentum={self.momentum:g})"


def n_levels(block_size: int) -> int:
    """How many times pairs are fused before one position is left: log2(block_size) (lesson 05)."""
    power_of_two("block_size", block_size, "each level of the tree fuses neighbouring pairs, halving the positions")
    return block_size.bit_length() - 1


def hierarchical_stack(vocab_size: int, block_size: int, n_embd: int, n_hidden: int, *,
                       norm: type = BatchNorm1d, generator: torch.Generator | None = None,
                       device: str | torch.device | None = None) -> Sequential:
    """The WaveNet of lesson 05 in these layers, for any block size that is a power of two.

        Embedding(vocab_size, n_embd)                                   (B, T)  -> (B, T, n_embd)
        log2(T) times: FlattenConsecutive(2), Linear (no bias), norm, Tanh     -> (B, T/2, n_hidden), ...
        Linear(n_hidden, vocab_size), weights scaled by 0.1             (B, n_hidden) -> (B, vocab_size)

    A block size that is not a power of two is refused here, before anything is built. `norm` is
    the normalisation layer's class (`BatchNorm1dOverBatch` shows the lesson's bug). The weights are
    drawn in layer order from `generator`: N(0, 1) for the table, N(0, 1) / sqrt(fan_in) for each
    Linear (the lesson uses no tanh gain: BatchNorm sets the scale).
    """
    levels = n_levels(block_size)
    positive_int("vocab_size", vocab_size)
    positive_int("n_embd", n_embd)
    positive_int("n_hidden", n_hidden)
    layers: list = [Embedding(vocab_size, n_embd, generator=generator, device=device)]
    fan_in = 2 * n_embd
    for _ in range(levels):
        layers += [FlattenConsecutive(2), Linear(fan_in, n_hidden, bias=False, generator=generator, device=device),
                   norm(n_hidden, device=device), Tanh()]
        fan_in = 2 * n_hidden
    layers.append(Linear(n_hidden, vocab_size, generator=generator, gain=OUTPUT_GAIN, device=device))
    return Sequential(layers)


class LayerModel:
    """A stack of these layers behind the course's model call, `logits, loss = model(idx, targets)` (lessons 03, 05).

        logits, loss = model(idx, targets=None)       idx (B, block_size) -> logits (B, vocab_size)

    `mmlib.train.train` trains it, `mmlib.train.evaluate` scores it and `mmlib.sample.sample_words`
    samples from it like any model of `mmlib.models`; the loss is the mean cross-entropy of the logits
    against `targets`. `eval_mode` finds its BatchNorm layers through `.layers`.

    Lesson 05 passes a stack that starts with an `Embedding` (`hierarchical_stack`); lesson 03's deep
    MLP (`LayerModel.mlp`) passes its embedding table as `C`, looked up and flattened before the
    layers as in the lecture, `C[idx].view(B, -1)`. With `keep_grads=True` every forward pass that
    builds a graph keeps each layer's output gradient (`retain_grads`), for lesson 03's diagnostics.
    """

    per_position = False

    def __init__(self, layers: Iterable, block_size: int, *, C: torch.Tensor | None = None, keep_grads: bool = False):
        if not isinstance(layers, Iterable) or isinstance(layers, torch.Tensor):
            raise TypeError(f"LayerModel needs a list of layers or a Sequential, got {type(layers).__name__}")
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not callable(layer) or not hasattr(layer, "parameters"):
                raise TypeError(f"layer {i} ({layer!r}) is not a layer: it needs a call and parameters()")
        self.block_size = positive_int("block_size", block_size)
        self.C = C                                   # (vocab_size, n_embd), requires_grad; None: no table
        if C is not None:
            first = self.layers[0] if self.layers else None
            if not isinstance(first, Linear) or first.fan_in != block_size * C.shape[1]:
                raise ValueError(f"after the table C the first layer must be a Linear reading block_size * "
                                 f"n_embd = {block_size} * {C.shape[1]} features, got {first!r}")
        self.keep_grads = boolean("keep_grads", keep_grads)

    @classmethod
    def mlp(cls, vocab_size: int, block_size: int, n_embd: int, *, generator: torch.Generator | None = None,
            device: str | torch.device | None = None, keep_grads: bool = False, **stack) -> "LayerModel":
        """Lesson 03's deep MLP: `C` drawn from N(0, 1), then `build_stack(block_size * n_embd, vocab_size, **stack)`,
        both from `generator` in that order (the lecture's), e.g. `gain=5/3, depth=5, width=100, batchnorm=True`."""
        positive_int("vocab_size", vocab_size)
        positive_int("block_size", block_size)
        positive_int("n_embd", n_embd)
        C = torch.randn((vocab_size, n_embd), generator=generator).to(device).requires_grad_()
        layers, _ = build_stack(block_size * n_embd, vocab_size, generator=generator, device=device, **stack)
        return cls(layers, block_size, C=C, keep_grads=keep_grads)

    def __call__(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        if idx.ndim != 2 or idx.shape[1] != self.block_size:
            raise ValueError(f"this model reads exactly {self.block_size} characters, got idx of shape "
                             f"{tuple(idx.shape)}: was the data built with another block_size?")
        x = idx if self.C is None else self.C[idx].view(idx.shape[0], -1)   # (B, block_size * n_embd)
        for layer in self.layers:
            x = layer(x)
        if self.keep_grads:
            retain_grads(self.layers)
        return x, None if targets is None else F.cross_entropy(x, targets)   # logits (B, vocab_size)

    def parameters(self) -> list[torch.Tensor]:
        """Every parameter, the table `C` first (as `torch.nn.Module.parameters()` lists them in order)."""
        return ([] if self.C is None else [self.C]) + parameters(self.layers)

    def n_parameters(self) -> int:
        return n_parameters(self)

    def weights(self) -> dict[str, torch.Tensor]:
        """The embedding table and every Linear layer's weight, named for the diagnostics: `C`, `0: Linear`, ..."""
        table = {} if self.C is None else {"C": self.C}
        return table | {f"{i}: Linear": layer.weight for i, layer in enumerate(self.layers)
                         if isinstance(layer, Linear)}

    def __repr__(self) -> str:
        table = "" if self.C is None else f"C {tuple(self.C.shape)}, "
        return f"LayerModel(block_size={self.block_size}, {table}layers {self.layers})"
