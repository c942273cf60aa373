"""The course's models behind one interface (lesson 02 onwards; the command line uses all of them).

Every model is a `torch.nn.Module` with the same call, as in makemore:

    logits, loss = model(idx, targets=None)

and a `block_size`, the number of characters it reads. There are two kinds:

- window models (`per_position = False`: bigram, MLP, WaveNet) read the last `block_size`
  characters, idx (B, block_size), and predict the one after them: logits (B, V), targets (B,).
  Their data is `mmlib.data.build_dataset`: one example per character of every word.
- sequence models (`per_position = True`: transformer, RNN, GRU) read a whole padded word,
  idx (B, T) with T <= block_size, and predict the next character at every position at once:
  logits (B, T, V), targets (B, T), where the target -1 marks padding and is left out of the loss.
  Their data is `mmlib.data.build_sequences`: one example per word.

`loss` is the mean cross-entropy over the targets given (None when `targets` is None), so one
trainer (`mmlib.train`), one evaluation and one sampler (`mmlib.sample`) serve every model.

Each model has a config dataclass (one comment per field, as makemore's `ModelConfig`) that
checks itself when made, and is registered by name, so the command line can build any of them
from a name and a dict: `create("mlp", vocab_size=27, n_hidden=300)`.

The MLP keeps the lectures' names and layout (`C`, `W1`, `b1`, `bngain`, `bnbias`, `W2`, `b2`;
`W` has shape (fan_in, fan_out) and the layer is `x @ W + b`; `bngain` and `bnbias` are (1, n_hidden)),
so the dict of tensors a learner builds by hand in lessons 02-04 loads into it with `load_state_dict`,
and the lessons' numbers are reproduced exactly. Models added later use `torch.nn`'s own layers.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmlib.data import BLOCK_SIZE_WHY, IGNORE, MAX_BLOCK_SIZE
from mmlib.layers import n_levels
from mmlib.runtime import device_of, eval_mode, n_parameters
from mmlib.validate import at_most, boolean, choice, number, positive_int, power_of_two

# ---- the interface ---------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """What every model config has: the vocabulary and how many characters the model reads."""

    vocab_size: int = 27   # characters the model predicts, the start/end token `.` included
    block_size: int = 3    # characters of context the model reads (sequence models: longest word + 1)

    def __post_init__(self) -> None:
        positive_int("vocab_size", self.vocab_size)
        at_most("block_size", positive_int("block_size", self.block_size), MAX_BLOCK_SIZE, BLOCK_SIZE_WHY)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def n_parameters(self) -> int | None:
        """How many parameters the model of this config has, counted without building it (None: not known).

        Every model checks it against the machine's memory before it allocates a weight (`check_model_fits`).
        """
        return None


class Model(nn.Module):
    """The base of every course model: `forward(idx, targets=None) -> (logits, loss)`."""

    Config: ClassVar[type[ModelConfig]] = ModelConfig
    name: ClassVar[str] = ""
    per_position: ClassVar[bool] = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        check_model_fits(config, type(self).__name__)   # before a single weight is allocated
        self.config = config
        self.block_size = config.block_size
        self.vocab_size = config.vocab_size

    def loss(self, logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
        """Mean cross-entropy of `logits` against `targets`; padding (-1) is left out."""
        if targets is None:
            return None
        if logits.ndim > 2:   # (B, T, V) -> (B * T, V); window models' (B, V) go in as they are (no extra ops per step)
            logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
        return F.cross_entropy(logits, targets, ignore_index=IGNORE)

    def check_input(self, idx: torch.Tensor) -> None:
        """A clear error for contexts of the wrong shape (the usual cause: data built for another block size)."""
        if idx.ndim != 2:
            raise ValueError(f"{type(self).__name__} expects idx of shape (batch, positions), got {tuple(idx.shape)}")
        T = idx.shape[1]
        if (self.per_position and T > self.block_size) or (not self.per_position and T != self.block_size):
            want = f"at most {self.block_size}" if self.per_position else f"exactly {self.block_size}"
            raise ValueError(f"{type(self).__name__} reads {want} characters, got idx of shape {tuple(idx.shape)}: "
                             "was the data built with another block_size?")

    def n_parameters(self) -> int:
        """How many numbers training adjusts."""
        return n_parameters(self)

    def hidden_matrices(self) -> list[nn.Parameter]:
        """The weight matrices that map one hidden representation to another, which Muon trains
        (`mmlib.train.MuonAdamW`); none here, so `optimizer="muon"` is refused for a model that names none."""
        return []

    @property
    def device(self) -> torch.device:
        return device_of(self)

    def extra_repr(self) -> str:
        return ", ".join(f"{f.name}={getattr(self.config, f.name)!r}" for f in fields(self.config))


MODELS: dict[str, type[Model]] = {}
"""Every model by name: "bigram", "mlp", ... (lessons 05-06 and the command line add theirs)."""


def register(name: str):
    """Class decorator: make a model buildable by `create(name, ...)`."""

    def add(cls: type[Model]) -> type[Model]:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"a model named {name!r} is already registered ({MODELS[name].__name__})")
        cls.name = name
        MODELS[name] = cls
        return cls

    return add


def create(name: str, *, generator: torch.Generator | None = None, **config: Any) -> Model:
    """The model registered as `name`, made from the config fields given (the rest at their defaults)."""
    if name not in MODELS:
        raise ValueError(f"no model named {name!r}; the models are {', '.join(sorted(MODELS))}")
    cls = MODELS[name]
    known = {f.name for f in fields(cls.Config)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{name} has no setting {', '.join(unknown)}; its settings are {', '.join(sorted(known))}")
    return cls(cls.Config(**config), generator=generator)


# ---- what fits in memory: a model's weights (a training step's activations: mmlib.cli.memory) -----------


def device_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes of memory `device` has: the GPU's own for CUDA, else the machine's (None where it cannot be read)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):   # no sysconf (Windows): ask psutil if it is there
        try:
            import psutil
        except ImportError:
            return None
        return psutil.virtual_memory().total


def readable_size(n: float) -> str:
    """`n` bytes as a person reads them: `1,234 bytes`, `12.3 MB`."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def check_model_fits(config: ModelConfig, what: str = "model") -> None:
    """Refuse, with one line, a model whose weights alone (4 bytes each) exceed the machine's memory.

    Called by every model before it allocates anything, so `n_embd=10**8` says how much memory it would
    need instead of failing inside PyTorch's allocator.
    """
    n = config.n_parameters()
    memory = device_memory("cpu")   # every model is built on the CPU first
    if n is None or memory is None or 4 * n <= memory:
        return
    sizes = ", ".join(f"{f.name}={getattr(config, f.name):,}" for f in fields(config)
                      if f.name != "vocab_size" and f.type == "int")
    raise ValueError(f"this {what} would have {n:,} parameters, {readable_size(4 * n)} of weights at 4 bytes each, "
                     f"more than this machine's {readable_size(memory)} of memory (training needs about four times "
                     f"that): make it smaller ({sizes})")


def _randn(*shape: int, generator: torch.Generator | None, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=dtype or torch.float32)


# ---- lesson 01: the bigram model as a table ----------------------------------------------------


@dataclass
class BigramConfig(ModelConfig):
    vocab_size: int = 27   # characters, `.` included
    block_size: int = 1    # a bigram model reads only the previous character

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block_size != 1:
            raise ValueError("a bigram model reads exactly 1 character, so block_size must be 1, "
                             f"got {self.block_size!r}")

    def n_parameters(self) -> int:
        return self.vocab_size ** 2


@register("bigram")
class Bigram(Model):
    """Lesson 01's one-layer net: a (V, V) table of logits, row = previous character.

    `one_hot(x) @ W` picks row x of W, so the net is a lookup: logits = W[x]. Trained to the
    end, softmax(W) is the table of normalised bigram counts (the maximum-likelihood estimate).
    """

    Config = BigramConfig

    def __init__(self, config: BigramConfig, *, generator: torch.Generator | None = None):
        super().__init__(config)
        self.W = nn.Parameter(_randn(config.vocab_size, config.vocab_size, generator=generator))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        self.check_input(idx)
        logits = self.W[idx[:, -1]]          # (B, V)
        return logits, self.loss(logits, targets)

    @classmethod
    def from_counts(cls, X: torch.Tensor, Y: torch.Tensor, vocab_size: int, smoothing: float = 1.0) -> "Bigram":
        """The counting model of lesson 01 as this net: W = log of the smoothed, normalised counts.

        X (N, 1) holds each bigram's first character, Y (N,) its second. Counting is the
        maximum-likelihood fit, so this is where training the net ends up; the course's results
        table scores it on the shared split like every other model.
        """
        positive_int("vocab_size", vocab_size)
        number("smoothing", smoothing, 0, None)
        if X.ndim != 2 or X.shape[1] != 1 or Y.shape != X.shape[:1]:
            raise ValueError(f"from_counts needs X of shape (N, 1) and Y of shape (N,), got {tuple(X.shape)} "
                             f"and {tuple(Y.shape)}: build them with block_size=1")
        N = torch.bincount(X[:, 0] * vocab_size + Y, minlength=vocab_size ** 2).view(vocab_size, vocab_size)
        P = (N.double() + smoothing) / (N.double() + smoothing).sum(1, keepdim=True)
        model = cls(BigramConfig(vocab_size=vocab_size))
        with torch.no_grad():
            model.W.copy_(P.log())
        return model


# ---- lessons 02-04: the MLP of Bengio et al. (2003), optionally with BatchNorm -----------------


@dataclass
class MLPConfig(ModelConfig):
    vocab_size: int = 27          # characters, `.` included
    block_size: int = 3           # characters of context
    n_embd: int = 10              # dimensions of each character's embedding (rows of C)
    n_hidden: int = 200           # tanh units in the hidden layer
    batchnorm: bool = False       # lesson 03: normalise the hidden pre-activations over the batch
    bn_momentum: float = 0.001    # how far each batch moves BatchNorm's running statistics (lesson 03)
    bn_eps: float = 1e-5          # added to the variance before the square root, as torch.nn does
    # Initialisation, as the lectures do it: every tensor is drawn from N(0, 1), in the order
    # C, W1, b1, [bngain, bnbias], W2, b2, and multiplied by its scale.
    emb_scale: float = 1.0        # scales C, the embedding table
    w1_scale: float | str = 1.0   # W1; "kaiming": (5/3) / sqrt(block_size * n_embd), tanh's gain (lesson 03)
    b1_scale: float = 1.0         # scales b1, the hidden layer's bias
    w2_scale: float = 1.0         # W2; lesson 03 uses 0.01 so the untrained net predicts near-uniformly
    b2_scale: float = 1.0         # b2; lesson 03 uses 0
    hidden_bias: bool | None = None  # keep b1; None: only without BatchNorm, whose mean subtraction cancels it
    bn_init_noise: float = 0.0    # lesson 04: bngain = 1 + noise * N(0, 1), bnbias = noise * N(0, 1), so no
                                  # gradient is hidden by a gain of exactly 1 or a bias of exactly 0

    def __post_init__(self) -> None:
        super().__post_init__()
        positive_int("n_embd", self.n_embd)
        positive_int("n_hidden", self.n_hidden)
        boolean("batchnorm", self.batchnorm)
        number("bn_momentum", self.bn_momentum, 0, 1)
        number("bn_eps", self.bn_eps, 0, None, low_open=True)
        for name in ("emb_scale", "b1_scale", "w2_scale", "b2_scale", "bn_init_noise"):
            number(name, getattr(self, name), 0, None)
        if self.w1_scale != "kaiming":
            number("w1_scale", self.w1_scale, 0, None)
        if self.hidden_bias is not None:
            boolean("hidden_bias", self.hidden_bias)

    def n_parameters(self) -> int:
        H, V = self.n_hidden, self.vocab_size
        return V * self.n_embd + self.fan_in * H + H * self.has_b1 + 2 * H * self.batchnorm + H * V + V

    @property
    def fan_in(self) -> int:
        return self.block_size * self.n_embd

    @property
    def w1_std(self) -> float:
        """The standard deviation W1 is drawn with."""
        return (5 / 3) / math.sqrt(self.fan_in) if self.w1_scale == "kaiming" else float(self.w1_scale)

    @property
    def has_b1(self) -> bool:
        return (not self.batchnorm) if self.hidden_bias is None else self.hidden_bias


@register("mlp")
class MLP(Model):
    """Embed each of the `block_size` characters, concatenate, one tanh layer, logits (lessons 02-04).

        emb    = C[idx]                      (B, block_size, n_embd)
        hpre   = emb.view(B, -1) @ W1 + b1   (B, n_hidden)
        hpre   = bngain * (hpre - mean) / sqrt(var + eps) + bnbias      with BatchNorm (lesson 03)
        logits = tanh(hpre) @ W2 + b2        (B, vocab_size)

    With BatchNorm, training mode normalises with the batch's mean and (biased) variance and moves
    the running statistics towards them (the running variance with the unbiased estimate, as
    `torch.nn.BatchNorm1d` does); eval mode normalises with the running statistics.
    """

    Config = MLPConfig

    def __init__(self, config: MLPConfig, *, generator: torch.Generator | None = None,
                 dtype: torch.dtype | None = None):
        super().__init__(config)
        c, H = config, config.n_hidden

        def draw(*shape: int) -> torch.Tensor:
            return _randn(*shape, generator=generator, dtype=dtype)

        self.C = nn.Parameter(draw(c.vocab_size, c.n_embd) * c.emb_scale)
        self.W1 = nn.Parameter(draw(c.fan_in, H) * c.w1_std)
        b1 = draw(H) * c.b1_scale   # drawn even when not kept, so the draws after it do not move
        self.register_parameter("b1", nn.Parameter(b1) if c.has_b1 else None)
        if c.batchnorm:
            noise = c.bn_init_noise
            # (1, n_hidden), as the lectures write them: they broadcast over the batch's rows
            gain = 1.0 + noise * draw(1, H) if noise else torch.ones(1, H, dtype=dtype)
            bias = noise * draw(1, H) if noise else torch.zeros(1, H, dtype=dtype)
            self.bngain = nn.Parameter(gain)
            self.bnbias = nn.Parameter(bias)
            self.register_buffer("bnmean_running", torch.zeros(1, H, dtype=dtype))
            self.register_buffer("bnvar_running", torch.ones(1, H, dtype=dtype))
        self.W2 = nn.Parameter(draw(H, c.vocab_size) * c.w2_scale)
        self.b2 = nn.Parameter(draw(c.vocab_size) * c.b2_scale)

    def hidden(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The hidden layer's input (after BatchNorm, if any) and output, each (B, n_hidden)."""
        self.check_input(idx)
        emb = self.C[idx]                                   # (B, block_size, n_embd)
        hpre = emb.view(emb.shape[0], -1) @ self.W1         # (B, n_hidden)
        if self.b1 is not None:
            hpre = hpre + self.b1
        if self.config.batchnorm:
            hpre = self._batchnorm(hpre)
        return hpre, torch.tanh(hpre)

    def _batchnorm(self, hpre: torch.Tensor) -> torch.Tensor:
        if self.training:
            n = hpre.shape[0]
            if n < 2:
                raise ValueError("BatchNorm in training mode needs a batch of at least 2 to compute a variance; "
                                 "use model.eval() (or mmlib.layers.eval_mode) for single examples")
            mean = hpre.mean(0, keepdim=True)                        # (1, n_hidden)
            var = hpre.var(0, keepdim=True, correction=0)            # (1, n_hidden)
            with torch.no_grad():
                m = self.config.bn_momentum
                self.bnmean_running.copy_((1 - m) * self.bnmean_running + m * mean)
                self.bnvar_running.copy_((1 - m) * self.bnvar_running + m * var * (n / (n - 1)))
        else:
            mean, var = self.bnmean_running, self.bnvar_running
        return self.bngain * (hpre - mean) / torch.sqrt(var + self.config.bn_eps) + self.bnbias

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        _, h = self.hidden(idx)
        logits = h @ self.W2 + self.b2                      # (B, vocab_size)
        return logits, self.loss(logits, targets)


# ---- lesson 05: WaveNet (van den Oord et al. 2016), fusing neighbours two at a time -----------


@dataclass
class WaveNetConfig(ModelConfig):
    vocab_size: int = 27     # characters, `.` included
    block_size: int = 8      # characters of context; a power of two (each level halves it)
    n_embd: int = 24         # dimensions of each character's embedding
    n_hidden: int = 128      # units of every fusing layer
    bn_momentum: float = 0.1  # how far each batch moves BatchNorm's running statistics

    def __post_init__(self) -> None:
        super().__post_init__()
        positive_int("n_embd", self.n_embd)
        positive_int("n_hidden", self.n_hidden)
        number("bn_momentum", self.bn_momentum, 0, 1)
        power_of_two("block_size", self.block_size, "WaveNet fuses pairs of positions level by level")

    @property
    def n_levels(self) -> int:
        """Levels of the tree, log2(block_size): `mmlib.layers.n_levels`, the one place it is computed."""
        return n_levels(self.block_size)

    def n_parameters(self) -> int:
        E, H, V = self.n_embd, self.n_hidden, self.vocab_size
        fuse = 2 * E * H + (self.n_levels - 1) * 2 * H * H      # level 1 reads 2 embeddings, the others 2 levels
        return V * E + fuse + self.n_levels * 2 * H + H * V + V


class BatchNormTime(nn.BatchNorm1d):
    """`torch.nn.BatchNorm1d` for (B, T, C) inputs: statistics over batch *and* time (lesson 05's fix)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return super().forward(x)
        return super().forward(x.transpose(1, 2)).transpose(1, 2)   # torch.nn wants (B, C, T)


@register("wavenet")
class WaveNet(Model):
    """Embed the `block_size` characters, then fuse neighbouring pairs level by level (lesson 05).

        x = emb(idx)                                   (B, 8, n_embd)
        level 1: pairs -> Linear -> BatchNorm -> tanh  (B, 4, n_hidden)
        level 2                                        (B, 2, n_hidden)
        level 3                                        (B, n_hidden)
        logits = Linear(x)                             (B, vocab_size)

    Each level sees twice as many characters as the one below, as in WaveNet's dilated
    convolutions, instead of squashing all of them into one layer at once. The Linear layers
    before BatchNorm have no bias (BatchNorm's mean subtraction would cancel it); weights are drawn
    as lesson 05 does, N(0, 1) / sqrt(fan_in), and the output layer's are scaled by 0.1.
    """

    Config = WaveNetConfig

    def __init__(self, config: WaveNetConfig, *, generator: torch.Generator | None = None):
        super().__init__(config)
        c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        levels = []
        fan_in = 2 * c.n_embd
        for _ in range(c.n_levels):
            levels.append(nn.ModuleDict({
                "fuse": nn.Linear(fan_in, c.n_hidden, bias=False),
                "bn": BatchNormTime(c.n_hidden, momentum=c.bn_momentum),
            }))
            fan_in = 2 * c.n_hidden
        self.levels = nn.ModuleList(levels)
        self.lm_head = nn.Linear(c.n_hidden, c.vocab_size)
        with torch.no_grad():
            nn.init.normal_(self.wte.weight, generator=generator)
            for level in self.levels:
                w = level["fuse"].weight
                nn.init.normal_(w, std=w.shape[1] ** -0.5, generator=generator)
            nn.init.normal_(self.lm_head.weight, std=0.1 * c.n_hidden ** -0.5, generator=generator)
            nn.init.zeros_(self.lm_head.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        self.check_input(idx)
        x = self.wte(idx)                                     # (B, T, n_embd)
        for level in self.levels:
            B, T, C = x.shape
            x = x.reshape(B, T // 2, 2 * C)                   # (B, T/2, 2C): neighbours side by side
            x = torch.tanh(level["bn"](level["fuse"](x)))     # (B, T/2, n_hidden)
        logits = self.lm_head(x.squeeze(1))                   # (B, vocab_size)
        return logits, self.loss(logits, targets)

    @torch.no_grad()
    def load_layers(self, net) -> "WaveNet":
        """Copy in the weights of lesson 05's from-scratch stack (`mmlib.layers.hierarchical_stack`).

        Its Linear weights are (fan_in, fan_out), torch.nn's are (fan_out, fan_in): hence the
        transposes. With the same weights the two compute the same function (tests/test_lesson05.py).
        """
        layers = list(net)
        linears = [x for x in layers if hasattr(x, "fan_in")]
        norms = [x for x in layers if hasattr(x, "running_mean")]
        n = len(self.levels)
        if len(linears) != n + 1 or len(norms) != n or not hasattr(layers[0], "num_embeddings"):
            raise ValueError(f"expected an Embedding, then {n} levels of Linear and BatchNorm1d, then a Linear "
                             f"(mmlib.layers.hierarchical_stack); got {net!r}")
        self.wte.weight.copy_(layers[0].weight)
        for level, lin, bn in zip(self.levels, linears, norms):
            level["fuse"].weight.copy_(lin.weight.T)
            level["bn"].weight.copy_(bn.gamma)
            level["bn"].bias.copy_(bn.beta)
            level["bn"].running_mean.copy_(bn.running_mean)
            level["bn"].running_var.copy_(bn.running_var)
        self.lm_head.weight.copy_(linears[-1].weight.T)
        self.lm_head.bias.copy_(linears[-1].bias)
        return self


def dilated_stack(config: WaveNetConfig) -> nn.Sequential:
    """The WaveNet's levels as causal dilated convolutions, (B, n_embd, T + block_size - 1) -> (B, n_hidden, T).

    Level k is `Conv1d(kernel_size=2, dilation=2**k)` (no bias), BatchNorm1d, Tanh: its output at a
    position combines its input there and 2**k positions earlier - the pair the tree fuses at that
    level. Each level's output is 2**k positions shorter (no padding), so after log2(block_size)
    levels every output sees exactly the block_size characters ending at it (lesson 05).
    """
    c, layers, fan_in = config, [], config.n_embd
    for k in range(c.n_levels):
        layers += [nn.Conv1d(fan_in, c.n_hidden, kernel_size=2, dilation=2**k, bias=False),
                   nn.BatchNorm1d(c.n_hidden, momentum=c.bn_momentum), nn.Tanh()]
        fan_in = c.n_hidden
    return nn.Sequential(*layers)


def copy_wavenet_weights(model: WaveNet, stack: nn.Module) -> None:
    """Load a `WaveNet`'s fusing layers and BatchNorms into a stack of Conv1d and BatchNorm1d layers.

    The tree's Linear at level k reads [x[t - d], x[t]] side by side (d = 2**k), its weight (H, 2C)
    holds the earlier position's columns first; a Conv1d's weight (H, C, 2) multiplies the earlier
    position with [:, :, 0] and the later one with [:, :, 1]. The stack's Conv1d and BatchNorm1d
    layers are taken in order; a stack of another shape gets an error that says which layer differs.
    """
    convs = [m for m in stack.modules() if isinstance(m, nn.Conv1d)]
    norms = [m for m in stack.modules() if isinstance(m, nn.BatchNorm1d)]
    n = len(model.levels)
    if len(convs) != n or len(norms) != n:
        raise ValueError(f"the WaveNet has {n} levels, so the stack needs {n} Conv1d and {n} BatchNorm1d layers; "
                         f"it has {len(convs)} Conv1d and {len(norms)} BatchNorm1d")
    with torch.no_grad():
        for k, (level, conv, norm) in enumerate(zip(model.levels, convs, norms)):
            w = level["fuse"].weight                              # (H, 2 * C)
            H, C = w.shape[0], w.shape[1] // 2
            want = (H, C, 2)
            if tuple(conv.weight.shape) != want:
                raise ValueError(f"Conv1d {k} has weight shape {tuple(conv.weight.shape)}, "
                                 f"but level {k} of the WaveNet "
                                 f"needs {want}: Conv1d({C}, {H}, kernel_size=2)")
            if conv.bias is not None:
                raise ValueError(f"Conv1d {k} has a bias; the WaveNet's levels have none (BatchNorm follows): "
                                 "bias=False")
            conv.weight.copy_(w.view(H, 2, C).transpose(1, 2))    # [:, :, 0] the earlier position
            norm.load_state_dict(level["bn"].state_dict())


class CausalConvWaveNet(nn.Module):
    """The WaveNet as dilated causal convolutions: every position of a word in one pass (lesson 05).

    Reads idx (B, T) as `mmlib.data.build_sequences` makes it (a start token, then the word) and
    returns logits (B, T, vocab_size): position t predicts the character after idx[:, :t + 1] from the
    `block_size` characters ending at t, with start tokens in front as the window data has them.
    Where the tree recomputes every node for every window, the convolutions compute each node once
    and share it between the windows that contain it.

    `from_wavenet(model)` copies a trained `WaveNet`'s weights in; in eval mode the two then give the
    same logits at every position (BatchNorm's running statistics are per channel in both). It is an
    evaluation tool: sampling draws one character at a time, for which the window model suffices.
    """

    per_position = True

    def __init__(self, config: WaveNetConfig, stack: nn.Module | None = None):
        super().__init__()
        if not isinstance(config, WaveNetConfig):
            raise TypeError(f"CausalConvWaveNet needs a WaveNetConfig, got {type(config).__name__}")
        c = config
        self.config = config
        self.receptive_field = c.block_size
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.stack = dilated_stack(c) if stack is None else stack
        self.lm_head = nn.Linear(c.n_hidden, c.vocab_size)

    @classmethod
    def from_wavenet(cls, model: WaveNet, stack: nn.Module | None = None) -> "CausalConvWaveNet":
        """The convolutional twin of `model`, with its weights (and `stack` for the levels, if given)."""
        if not isinstance(model, WaveNet):
            raise TypeError(f"from_wavenet needs a WaveNet, got {type(model).__name__}")
        conv = cls(model.config, stack).to(model.device)
        conv.wte.load_state_dict(model.wte.state_dict())
        copy_wavenet_weights(model, conv.stack)
        conv.lm_head.load_state_dict(model.lm_head.state_dict())
        conv.train(model.training)
        return conv

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        if idx.ndim != 2:
            raise ValueError(f"CausalConvWaveNet expects idx of shape (batch, positions), got {tuple(idx.shape)}")
        T = idx.shape[1]
        x = F.pad(idx, (self.receptive_field - 1, 0))         # (B, T + 7): start tokens (id 0) in front
        x = self.wte(x).transpose(1, 2)                       # (B, n_embd, T + 7): Conv1d wants channels first
        x = self.stack(x)                                     # (B, n_hidden, T): 1 + 2 + 4 positions fewer
        if x.shape[-1] != T:
            raise ValueError(f"the stack turned {T + self.receptive_field - 1} positions into {x.shape[-1]}, "
                             f"expected {T}: its dilations should be 1, 2, 4, ... with no padding")
        logits = self.lm_head(x.transpose(1, 2))              # (B, T, vocab_size)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE)


# ---- lesson 06: a GPT-style transformer, predicting every position at once ---------------------


@dataclass
class TransformerConfig(ModelConfig):
    vocab_size: int = 27      # characters, `.` included
    block_size: int = 16      # positions it reads: the longest word + 1 (set from the data)
    n_layer: int = 4          # transformer blocks
    n_head: int = 4           # attention heads per block
    n_embd: int = 64          # width of the residual stream (a multiple of n_head)
    dropout: float = 0.0      # dropout on attention weights and residual branches, in training only
    pos_emb: bool = True      # learned position embeddings (without them, attention cannot tell order); ignored
                              # with rotary
    rotary: bool = False      # rotary position embeddings (RoPE) in attention, in place of learned ones
    norm: str = "layer"       # "layer": LayerNorm; "rms": RMSNorm (no mean subtracted, no bias)
    qk_norm: bool = False     # RMSNorm (with a gain) on every head's queries and keys before attention
    activation: str = "gelu"  # the MLP's nonlinearity: "gelu", or "relu2" (ReLU squared)
    zero_init: bool = False   # the residual branches' output layers (attention's proj, the MLP's second
                              # layer) start at zero, so every block starts as the identity
    members: int = 1          # an ensemble: this many transformers of this shape, trained side by side, each on
                              # its own loss, predicting the mean of their distributions

    def __post_init__(self) -> None:
        super().__post_init__()
        positive_int("n_layer", self.n_layer)
        positive_int("n_head", self.n_head)
        positive_int("n_embd", self.n_embd)
        number("dropout", self.dropout, 0, 1, high_open=True)
        boolean("pos_emb", self.pos_emb)
        boolean("rotary", self.rotary)
        choice("norm", self.norm, NORMS)
        boolean("qk_norm", self.qk_norm)
        choice("activation", self.activation, ACTIVATIONS)
        boolean("zero_init", self.zero_init)
        positive_int("members", self.members)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd must be a multiple of n_head (each head gets n_embd / n_head dimensions), "
                             f"got n_embd={self.n_embd}, n_head={self.n_head}")
        if self.rotary and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rotary needs an even head size (it turns pairs of dimensions), got n_embd / n_head = "
                             f"{self.n_embd // self.n_head}")

    @property
    def learned_positions(self) -> bool:
        """Whether the model has a table of position embeddings (`wpe`)."""
        return self.pos_emb and not self.rotary

    def n_parameters(self) -> int:
        E, V = self.n_embd, self.vocab_size
        norm = 2 * E if self.norm == "layer" else E           # LayerNorm: a gain and a bias; RMSNorm: a gain
        qk = 2 * (E // self.n_head) if self.qk_norm else 0     # a gain for the queries and one for the keys
        block = 12 * E * E + 9 * E + 2 * norm + qk          # qkv, proj and the MLP's two layers with biases, 2 norms
        one = V * E + self.block_size * E * self.learned_positions + self.n_layer * block + norm + E * V + V
        return self.members * one


NORMS = {"layer": nn.LayerNorm, "rms": nn.RMSNorm}
"""The transformer's normalisation layers by `TransformerConfig.norm`."""
ACTIVATIONS = ("gelu", "relu2")


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021) of x (..., T, head_size): each pair of dimensions (i, i + d/2)
    turned by the angle position * frequency_i, so a query-key product depends on their positions' difference."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)


def rotary_angles(block_size: int, head_size: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (block_size, head_size / 2) of every position's angles, frequencies base^(-2i / head_size)."""
    freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
    angle = torch.outer(torch.arange(block_size, dtype=torch.float32), freq)
    return angle.cos(), angle.sin()


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions 0..t only (lesson 06)."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.n_head = c.n_head
        self.qkv = nn.Linear(c.n_embd, 3 * c.n_embd)
        self.proj = nn.Linear(c.n_embd, c.n_embd)
        self.attn_drop = nn.Dropout(c.dropout)    # its rate, on or off, for the attention weights' dropout
        self.drop = nn.Dropout(c.dropout)
        head_size = c.n_embd // c.n_head
        self.q_norm = nn.RMSNorm(head_size) if c.qk_norm else None
        self.k_norm = nn.RMSNorm(head_size) if c.qk_norm else None
        self.rotary = c.rotary
        if c.rotary:   # not in the state dict: made from the config
            cos, sin = rotary_angles(c.block_size, head_size)
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of every head, each (B, n_head, T, head_size)."""
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rotary:
            q, k = rotate(q, self.cos[:T], self.sin[:T]), rotate(k, self.cos[:T], self.sin[:T])
        return q, k, v

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights (B, n_head, T, T): row t is how much position t takes from each position.

        softmax(q k^T / sqrt(head_size)) with the future masked out, as `forward` computes them
        (there inside `F.scaled_dot_product_attention`, which never shows them), without dropout.
        """
        q, k, _ = self.heads(x)
        T = q.shape[2]
        att = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])                        # (B, nh, T, T)
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        return att.masked_fill(future, float("-inf")).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.heads(x)                                                                   # (B, nh, T, hs)
        p = self.attn_drop.p if self.attn_drop.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)                # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)                                          # heads side by side
        return self.drop(self.proj(y))


def stack_heads(heads: list[nn.Module]) -> torch.Tensor:
    """The (3 * n_embd, n_embd) `qkv` weight of `CausalSelfAttention` made of single heads' `query`, `key` and
    `value` layers: first every head's queries (head 0, head 1, ...), then their keys, then their values -
    the order in which `CausalSelfAttention.heads` splits and views them."""
    return torch.cat([torch.cat([getattr(h, part).weight for h in heads]) for part in ("query", "key", "value")])


class ReLU2(nn.Module):
    """relu(x)^2, the MLP's nonlinearity in the speedruns of nanoGPT (So et al. 2021, "Primer")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


class Block(nn.Module):
    """Communication (attention), then computation (an MLP), each on a pre-normalised residual branch."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.ln1 = NORMS[c.norm](c.n_embd)
        self.attn = CausalSelfAttention(c)
        self.ln2 = NORMS[c.norm](c.n_embd)
        self.mlp = nn.Sequential(nn.Linear(c.n_embd, 4 * c.n_embd), nn.GELU() if c.activation == "gelu" else ReLU2(),
                                 nn.Linear(4 * c.n_embd, c.n_embd), nn.Dropout(c.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


@register("transformer")
class Transformer(Model):
    """A GPT-style decoder: token (+ position) embeddings, `n_layer` blocks, LayerNorm, logits (lesson 06).

    Reads idx (B, T), T <= block_size, and returns logits (B, T, vocab_size): position t predicts
    the character after idx[:, :t + 1].

    The weights start as PyTorch's layers start them (and makemore's transformer), drawn from
    `generator`: embeddings from N(0, 1), like lesson 02's `C`; every Linear's weights and biases
    from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); LayerNorm's gain 1 and bias 0. GPT-2's N(0, 0.02) suits
    its 768-wide layers (about 1/sqrt(768)); for the course's 64-wide ones it is about six times
    smaller than 1/sqrt(64) = 0.125, and in lesson 06's recipe search that model learned markedly slower.

    The config's `rotary`, `norm`, `qk_norm`, `activation` and `zero_init` are the architecture changes of the
    public nanoGPT speedruns (rotary positions, RMSNorm, QK-norm, ReLU^2, zero-initialised output layers), for the
    command line's recipe to try; each is off by default, where the model is lesson 06's.

    With `members=k` above 1 the model is an ensemble: k such transformers (`self.members`, drawn one after the
    other from `generator`, so the first is the one `members=1` makes), each trained on its own loss - in
    training the loss is their mean, so no member's gradient depends on another - and predicting, in eval mode,
    the mean of their distributions: logits log(mean of softmax), the loss that mixture's. On 30,000 names a
    transformer overfits long before it stops improving on the training words; models that start elsewhere
    overfit differently, and their mean generalises better than any of them (Lakshminarayanan et al. 2017;
    for language models with little data, Kim et al. 2025, "Pre-training under infinite compute").
    """

    Config = TransformerConfig
    per_position = True

    def __init__(self, config: TransformerConfig, *, generator: torch.Generator | None = None):
        super().__init__(config)
        c = config
        self.members = None
        if c.members > 1:
            self.members = nn.ModuleList(Transformer(replace(c, members=1), generator=generator)
                                         for _ in range(c.members))
            return
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.block_size, c.n_embd) if c.learned_positions else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.ln_f = NORMS[c.norm](c.n_embd)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Embedding):
                    nn.init.normal_(m.weight, generator=generator)
                elif isinstance(m, nn.Linear):
                    bound = 1 / math.sqrt(m.in_features)
                    nn.init.uniform_(m.weight, -bound, bound, generator=generator)
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            if c.zero_init:   # after the draws, so every other weight is the one the default model gets
                for block in self.blocks:
                    for layer in (block.attn.proj, block.mlp[2]):
                        layer.weight.zero_()
                        layer.bias.zero_()

    def hidden_matrices(self) -> list[nn.Parameter]:
        """The blocks' weight matrices: attention's `qkv` and `proj`, the MLP's two layers (Muon trains these)."""
        if self.members is not None:
            return [w for member in self.members for w in member.hidden_matrices()]
        return [m.weight for block in self.blocks for m in block.modules() if isinstance(m, nn.Linear)]

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        self.check_input(idx)
        if self.members is not None:
            return self.ensemble(idx, targets)
        T = idx.shape[1]
        x = self.wte(idx)                                                    # (B, T, n_embd)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))             # (T, n_embd) broadcast over B
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))                                  # (B, T, vocab_size)
        return logits, self.loss(logits, targets)

    def _one_transformer(self, what: str) -> None:
        if self.members is not None:
            raise ValueError(f"{what} works on one transformer; this is an ensemble of {len(self.members)}: call it "
                             f"on a member, model.members[i].{what}(...)")

    def ensemble(self, idx: torch.Tensor, targets: torch.Tensor | None):
        """The members' forward: in training, the first member's logits and the mean of the members' losses;
        in eval mode, the mixture's logits log(mean_k softmax(logits_k)) and its loss."""
        outs = [member(idx, targets) for member in self.members]
        if self.training and targets is not None:
            return outs[0][0], sum(loss for _, loss in outs) / len(outs)
        logp = torch.stack([F.log_softmax(logits, dim=-1) for logits, _ in outs]).logsumexp(0)
        logits = logp - math.log(len(outs))
        return logits, self.loss(logits, targets)

    @torch.no_grad()
    def load_heads(self, net: nn.Module) -> "Transformer":
        """Copy in the weights of lesson 06's transformer built from single heads, in the lecture's names.

        `net` has `token_embedding_table`, `position_embedding_table`, `blocks` (each with `ln1`, `sa`, `ln2`,
        `ffwd`), `ln_f` and `lm_head`; each block's `sa.heads` are heads with `query`, `key` and `value`
        layers without bias, and `sa.proj` their projection; `ffwd.net` is Linear, GELU, Linear. The heads'
        queries, keys and values stack into each block's one `qkv` matrix (`stack_heads`), whose bias is
        then zero. With the same weights the two compute the same function (tests/test_lesson06.py).
        """
        self._one_transformer("load_heads")
        blocks = list(net.blocks)
        if len(blocks) != len(self.blocks) or (self.wpe is None) != (net.position_embedding_table is None):
            raise ValueError(f"expected {len(self.blocks)} blocks and {'no ' if self.wpe is None else ''}position "
                             f"embeddings, got {len(blocks)} blocks")
        self.wte.weight.copy_(net.token_embedding_table.weight)
        if self.wpe is not None:
            self.wpe.weight.copy_(net.position_embedding_table.weight)
        for i, (mine, theirs) in enumerate(zip(self.blocks, blocks)):
            heads = list(theirs.sa.heads)
            if len(heads) != mine.attn.n_head:
                raise ValueError(f"block {i} has {len(heads)} heads; this model has {mine.attn.n_head}")
            mine.attn.qkv.weight.copy_(stack_heads(heads))
            mine.attn.qkv.bias.zero_()
            pairs = {"sa.proj": (mine.attn.proj, theirs.sa.proj), "ln1": (mine.ln1, theirs.ln1),
                     "ln2": (mine.ln2, theirs.ln2), "ffwd.net[0]": (mine.mlp[0], theirs.ffwd.net[0]),
                     "ffwd.net[2]": (mine.mlp[2], theirs.ffwd.net[2])}
            for part, (a, b) in pairs.items():
                try:
                    a.load_state_dict(b.state_dict())
                except RuntimeError:
                    raise ValueError(f"block {i}'s {part} ({type(b).__name__}) does not fit this model's "
                                     f"{type(a).__name__} (a block without LayerNorm, or of another width?)") from None
        self.ln_f.load_state_dict(net.ln_f.state_dict())
        self.lm_head.load_state_dict(net.lm_head.state_dict())
        return self

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """The attention weights of every layer for `idx` (B, T), in eval mode: a list of n_layer
        tensors (B, n_head, T, T), row t of a head's map summing to 1 over positions 0..t."""
        self._one_transformer("attention_maps")
        self.check_input(idx)
        maps = []
        with eval_mode(self):
            x = self.wte(idx)
            if self.wpe is not None:
                x = x + self.wpe(torch.arange(idx.shape[1], device=idx.device))
            for block in self.blocks:
                maps.append(block.attn.weights(block.ln1(x)))
                x = block(x)
        return maps


# ---- the command line: recurrent models, RNN (Mikolov et al. 2010) and GRU (Cho et al. 2014) ------


@dataclass
class RNNConfig(ModelConfig):
    vocab_size: int = 27     # characters, `.` included
    block_size: int = 16     # positions it reads: the longest word + 1 (set from the data)
    n_embd: int = 64         # dimensions of each character's embedding
    n_hidden: int = 128      # dimensions of the hidden state carried from one position to the next

    gates: ClassVar[int] = 1   # Linear layers in the cell: the GRU has three (reset, update, candidate)

    def __post_init__(self) -> None:
        super().__post_init__()
        positive_int("n_embd", self.n_embd)
        positive_int("n_hidden", self.n_hidden)

    def n_parameters(self) -> int:
        E, H, V = self.n_embd, self.n_hidden, self.vocab_size
        return V * E + H + self.gates * ((E + H) * H + H) + H * V + V


def _uniform_linear(layer: nn.Linear, generator: torch.Generator | None) -> None:
    """torch.nn's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from `generator`."""
    bound = layer.weight.shape[1] ** -0.5
    nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
    if layer.bias is not None:
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


class RNNCell(nn.Module):
    """One step of Elman's recurrent net: h_t = tanh(W [x_t; h_{t-1}] + b)."""

    def __init__(self, c: RNNConfig):
        super().__init__()
        self.xh = nn.Linear(c.n_embd + c.n_hidden, c.n_hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.xh(torch.cat([x, h], dim=1)))               # (B, n_hidden)


class GRUCell(nn.Module):
    """One step of the gated recurrent unit (Cho et al. 2014).

        r  = sigmoid(W_r [x; h])          reset gate: how much of the old state the candidate sees
        z  = sigmoid(W_z [x; h])          update gate: how much of the state is replaced
        h~ = tanh(W_h [x; r * h])         the candidate state
        h' = (1 - z) * h + z * h~

    With z near 0 the state passes through unchanged, so information (and gradient) survives
    many steps, which the plain RNN's repeated tanh squashes.
    """

    def __init__(self, c: RNNConfig):
        super().__init__()
        self.xr = nn.Linear(c.n_embd + c.n_hidden, c.n_hidden)
        self.xz = nn.Linear(c.n_embd + c.n_hidden, c.n_hidden)
        self.xh = nn.Linear(c.n_embd + c.n_hidden, c.n_hidden)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        xh = torch.cat([x, h], dim=1)                                       # (B, n_embd + n_hidden)
        r = torch.sigmoid(self.xr(xh))
        z = torch.sigmoid(self.xz(xh))
        hbar = torch.tanh(self.xh(torch.cat([x, r * h], dim=1)))
        return (1 - z) * h + z * hbar                                       # (B, n_hidden)


class Recurrent(Model):
    """Read a word one character at a time, carrying a hidden state from each position to the next.

        h_0    = a learned start state                      (1, n_hidden)
        h_t    = cell(emb(idx[:, t]), h_{t-1})              (B, n_hidden)
        logits = lm_head(h_t) at every position t           (B, T, vocab_size)

    Position t's state has seen idx[:, :t + 1] and nothing after, so, like the transformer, the
    model predicts every position at once and never looks ahead. The state of step t feeds step
    t + 1; feeding the start state to every step instead (a bug of the original makemore) turns
    the model into a bigram model that cannot see past the last character.
    """

    per_position = True
    Cell: ClassVar[type[nn.Module]] = RNNCell
    Config = RNNConfig

    def __init__(self, config: RNNConfig, *, generator: torch.Generator | None = None):
        super().__init__(config)
        c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.h0 = nn.Parameter(torch.zeros(1, c.n_hidden))
        self.cell = self.Cell(c)
        self.lm_head = nn.Linear(c.n_hidden, c.vocab_size)
        with torch.no_grad():
            nn.init.normal_(self.wte.weight, generator=generator)
            for m in self.cell.modules():
                if isinstance(m, nn.Linear):
                    _uniform_linear(m, generator)
            _uniform_linear(self.lm_head, generator)

    def states(self, idx: torch.Tensor) -> torch.Tensor:
        """The hidden state after each position, (B, T, n_hidden)."""
        self.check_input(idx)
        B, T = idx.shape
        emb = self.wte(idx)                                                 # (B, T, n_embd)
        h = self.h0.expand(B, -1)                                           # (B, n_hidden)
        hs = []
        for t in range(T):
            h = self.cell(emb[:, t], h)                                     # this step's state feeds the next
            hs.append(h)
        return torch.stack(hs, dim=1)                                       # (B, T, n_hidden)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.lm_head(self.states(idx))                             # (B, T, vocab_size)
        return logits, self.loss(logits, targets)


@dataclass
class GRUConfig(RNNConfig):
    gates: ClassVar[int] = 3


@register("rnn")
class RNN(Recurrent):
    """Elman's recurrent net as a language model (Mikolov et al. 2010)."""


@register("gru")
class GRU(Recurrent):
    """The recurrent net with gated updates of Cho et al. (2014)."""

    Cell = GRUCell
    Config = GRUConfig
