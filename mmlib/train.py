"""One training loop for every model of the course (built in the open in lesson 02; lessons 03 on call it).

    cfg = TrainConfig(max_steps=200_000, batch_size=32, lr=0.1, lr_late=0.01)
    result = train(model, splits, cfg)       # splits: {"train": (X, Y), "dev": (X, Y), ...}
    result.final                             # {"train": 2.13, "dev": 2.18, ...}

Each step draws a minibatch of rows of the training split (`minibatch_rows`), asks the model for its loss
(`model(X, Y) -> (logits, loss)`, see `mmlib.models`), backpropagates and updates. Two recipes:

- `optimizer="sgd", schedule="step"` (the defaults): the lectures' plain minibatch SGD, `p -= lr * grad`
  (`LectureSGD`), with the learning rate dropping from `lr` to `lr_late` at `decay_step`. Written exactly
  as lesson 02 writes it, so the lessons' numbers do not move when they switch to this function.
- `optimizer="adamw", schedule="cosine"`: AdamW with a linear warm-up over `warmup` steps and a cosine
  decay to `lr_min` - the faster recipe lessons 05-06 and the command line use.
- `optimizer="muon"`: Muon (`torch.optim.Muon`'s update, `Muon`) for the model's hidden weight matrices (the
  transformer's blocks), AdamW for the rest, both on the one schedule (`MuonAdamW`).

`train` reads as makemore's loop does: set up (`_start`), then one step at a time (`_step`), an
evaluation every `eval_every` steps (`_evaluate_during`), and a final evaluation of every split
(`_finish`). A caller joins in through a `Callbacks` object.

Deliberately not here: gradient accumulation, mixed precision, learning-rate finders (lesson 02
builds one by hand), early stopping (the command line keeps the best checkpoint instead).

The model may be a `torch.nn.Module` or anything with the same call and a `parameters()` method
(lesson 03's hand-built layer stacks): the loop only calls it, reads `parameters()` and switches
modes through `mmlib.layers.eval_mode`.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from mmlib.data import IGNORE
from mmlib.runtime import DEVICES, device_of, eval_mode, pick_device
from mmlib.validate import boolean, choice, learning_rate, non_negative_int, number, optional, positive_int
from mmlib.validate import seed as check_seed

OPTIMIZERS = ("sgd", "adamw", "muon")
SCHEDULES = ("step", "cosine", "constant")
SAMPLINGS = ("random", "epochs", "lengths")
LENGTH_RUN = 16
"""`sampling="lengths"` sorts this many minibatches' worth of a pass's rows by length at a time."""
EVAL_TOKENS = 2**20
"""`evaluate` feeds at most this many characters of context to the model at once (memory, not results)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or grew far above where it started: the learning rate is too high.

    In a notebook it shows as its one-line message, not a traceback: the cause is a parameter, not
    a line of code.
    """

    def _render_traceback_(self) -> list[str]:   # IPython shows these lines instead of the traceback
        return [f"TrainingDiverged: {self}"]


class DivergenceWarning(UserWarning):
    """A run that goes on but does not learn: its loss stays above a uniform guess (see `DivergenceGuard`)."""


class DivergenceGuard:
    """Stops a training loop whose loss blew up, and speaks up when one does not learn, with one line each.

        guard = DivergenceGuard(vocab_size)          # before the loop
        guard(step, loss.item(), lr)                 # after every step; raises TrainingDiverged
        guard.finish(final_loss)                     # after the loop (optional); warns DivergenceWarning

    Two rules stop a run (`TrainingDiverged`): the loss is NaN/inf, or, after `window` steps, its mean
    over the last `window` steps is more than twice where it started or twice the loss of a uniform
    guess, ln(vocab_size) (whichever is higher): a run that learns never climbs there.

    Two rules only warn (`DivergenceWarning`, once per guard), because a slow run that learns must go on.
    "Above a uniform guess" means by more than `MARGIN`: a net stuck at guessing is no divergence, and
    lesson 03 shows such nets on purpose.
    - after `4 * window` steps, the mean over the last `window` steps is above a uniform guess and has
      fallen less than 10% below the mean over the first `window` steps: the run is not learning
      (lesson 02's CI run at lr=2.5 hovers near 31 from the lecture's initial 26, at lr=0.1 it falls
      from 12.5 to 5.7 by then);
    - `finish`, for runs too short for that: the loss blew up on the way and the run ended above a
      uniform guess. Blew up: its mean over `SPIKE` steps rose above twice the larger of a uniform guess
      and its start, the median of its first `SPIKE` losses (lesson 06's 30-step CI run at lr=2.5 goes
      3.5, 4.1, 8.2, 13.8, 32.2, ... up to 46.8 and ends at 4.24; at lr=5e-3 it never rises and ends at
      2.76). Medians and means, not single minibatches: from the lectures' confidently wrong start,
      lesson 02's runs at lr=0.1 jump between 3.7 and 8.4 from one batch of 32 to the next while they
      learn, and their first loss alone is often far below where they are.
    `lr_name` is the parameter to lower, as the lesson's parameters cell calls it. The four rules are one
    list, `_rules`; `train` uses the guard, and so do the loops lessons 01 and 02 write in the open.
    """

    SPIKE = 5              # steps `finish` averages over, so one unlucky minibatch is not a blow-up
    STALL_WINDOWS = 4      # windows of history before "not learning" may be said
    STALL_DROP = 0.1       # a run that learns has fallen more than this share below its first window's mean
    MARGIN = 0.05          # "above" a loss means above it by more than this share

    def __init__(self, vocab_size: int, *, window: int = 100, lr_name: str = "lr"):
        self.uniform = math.log(positive_int("vocab_size", vocab_size))
        self.window: deque[float] = deque(maxlen=positive_int("window", window))
        self.first: float | None = None
        self.first_window: float | None = None   # the mean over the first `window` steps this guard saw
        self.seen = 0
        self.early: list[float] = []                # the first SPIKE losses
        self.recent: deque[float] = deque(maxlen=self.SPIKE)
        self.peak, self.peak_step = -math.inf, 0   # the highest mean over SPIKE steps so far, and its last step
        self.warned = False
        self.lr_name = lr_name

    def __call__(self, step: int, value: float, lr: float) -> None:
        if self.first is None:
            self.first = value
        self.window.append(value)
        self.seen += 1
        self.recent.append(value)
        if len(self.early) < self.SPIKE:
            self.early.append(value)
        if len(self.recent) == self.SPIKE or self.seen < self.SPIKE:
            spike = sum(self.recent) / len(self.recent)
            if spike > self.peak:
                self.peak, self.peak_step = spike, step
        n = self.window.maxlen
        if self.first_window is None and len(self.window) == n and step >= n and math.isfinite(value):
            self.first_window = sum(self.window) / n
        self._judge(self._rules(step, value, lr, end=None))

    def finish(self, loss: float) -> None:
        """Say so (`DivergenceWarning`) if the loss blew up during the run and it ended above a uniform guess.

        `loss` is the run's final training loss; `train` passes its evaluation on the whole training split.
        """
        if self.first is not None:
            self._judge(self._rules(self.peak_step, loss, None, end=loss))

    def _rules(self, step: int, value: float, lr: float | None, *,
               end: float | None) -> list[tuple[bool, bool, Callable[[], str]]]:
        """Every rule of the guard, in order: (broken, stops the run, what to say). The first three are judged
        after every step (`end` None), the last once the run is over (`end`: its final loss)."""
        n = self.window.maxlen
        full = end is None and len(self.window) == n and step >= n
        mean = sum(self.window) / n if full else math.nan
        ceiling = 2 * max(self.first, self.uniform)
        start = sorted(self.early)[len(self.early) // 2]   # the median of the first SPIKE losses
        above_uniform = (1 + self.MARGIN) * self.uniform
        return [
            # stop: the loss is NaN or inf
            (end is None and not math.isfinite(value), True,
             lambda: f"training stopped at step {step:,}: the loss became {value}; {self._fix(lr)}"),
            # stop: the mean of the last `window` losses climbed above twice its start or a uniform guess
            (full and mean > ceiling, True,
             lambda: f"training stopped at step {step:,}: the loss is diverging (its mean over the last {n} steps, "
                     f"{mean:.2f}, is above {ceiling:.2f}: twice the larger of its start, {self.first:.2f}, and a "
                     f"uniform guess, {self.uniform:.2f}); {self._fix(lr)}"),
            # warn: after STALL_WINDOWS windows, still above a uniform guess and hardly below the first window
            (full and self.seen >= self.STALL_WINDOWS * n and mean > above_uniform
             and mean > (1 - self.STALL_DROP) * self.first_window, False,
             lambda: f"the loss is not falling: after {self.seen:,} steps its mean over the last {n}, {mean:.2f}, "
                     f"is above a uniform guess, {self.uniform:.2f}, and not {self.STALL_DROP:.0%} below its first "
                     f"{n} steps' mean, {self.first_window:.2f}; {self._fix(lr)} (or raise it if the loss hardly "
                     "moves)"),
            # warn, at the end: the loss blew up on the way and the run ended above a uniform guess
            (end is not None and self.peak > 2 * max(start, self.uniform) and end > above_uniform, False,
             lambda: f"this run ended worse than guessing: its loss rose from {self.first:.2f} to a mean of "
                     f"{self.peak:.2f} over {min(self.SPIKE, self.seen)} steps (up to step {self.peak_step:,}) "
                     f"and ended at {end:.2f}, above a uniform guess, {self.uniform:.2f}; {self._fix()}"),
        ]

    def _judge(self, rules: list[tuple[bool, bool, Callable[[], str]]]) -> None:
        """Stop at the first broken rule that stops the run; else warn at the first broken one, once per guard."""
        for broken, stops, message in rules:
            if broken and stops:
                raise TrainingDiverged(message())
        for broken, _, message in rules:
            if broken and not self.warned:
                self._warn(message())

    def _warn(self, message: str) -> None:
        self.warned = True
        # Point at the caller's line (the learner's loop, or their call of `train`), not at this module's.
        level, frame = 1, sys._getframe(0)
        while frame is not None and frame.f_code.co_filename == __file__:
            level, frame = level + 1, frame.f_back
        warnings.warn(DivergenceWarning(message), stacklevel=level)

    def _fix(self, lr: float | None = None) -> str:
        now = "" if lr is None else f", now {lr:g}"
        return f"lower the learning rate ({self.lr_name}{now}) and run again"


@dataclass
class TrainConfig:
    """How to train: the budget, the optimiser and its learning-rate schedule, and where to run."""

    max_steps: int = 200_000       # optimisation steps, one minibatch each (makemore's --max-steps)
    batch_size: int = 32           # rows of the training split per step (examples, or words for sequence models)
    optimizer: str = "sgd"         # "sgd": the lectures' plain SGD; "adamw": AdamW; "muon": Muon for the
                                   # transformer's hidden matrices, AdamW for the rest, on one schedule
    lr: float = 0.1                # learning rate (the peak, after warm-up, for "cosine")
    schedule: str = "step"         # "step": lr, then lr_late from decay_step; "cosine": warm-up, then cosine
                                   # to lr_min; "constant": lr throughout
    lr_late: float = 0.01          # "step": the rate from decay_step on
    decay_step: int | None = None  # "step": where the rate drops; None: halfway through `max_steps`
    warmup: int = 0                # "cosine": steps of linear warm-up from 0 to lr
    lr_min: float = 0.0            # "cosine": the rate at the last step
    weight_decay: float = 0.0      # "adamw", "muon": decoupled weight decay, applied to matrices only (not biases,
                                   # gains)
    betas: tuple[float, float] = (0.9, 0.99)  # "adamw" (and muon's AdamW part): the moving averages of the
                                              # gradient and its square
    grad_clip: float | None = None  # clip the gradient's norm to this (None: no clipping)
    eval_every: int = 0            # evaluate the held-out splits every this many steps (0: only at the end)
    eval_rows: int | None = 10_000  # rows per split in those evaluations (None: all); the final one uses all
    sampling: str = "random"       # "random": each row of a minibatch drawn at random, as the lectures do;
                                   # "epochs": shuffled passes over the training rows, every row once a pass;
                                   # "lengths": "epochs" with the words of a minibatch of like length, so
                                   # less padding (sequence models; each character weighs alike in the loss)
    dropout_from: float = 0.0      # the model's dropout layers are off for this fraction of max_steps, then on
                                   # ("late dropout": the first steps fit faster without it, and cost less)
    seed: int = 42                 # the order of the minibatches (the model's initialisation is seeded where made)
    device: str = "cpu"            # "cpu", "cuda" or "mps"
    threads: int | None = None     # cap on PyTorch's CPU threads (None: leave as is)
    progress: bool | None = None   # progress bar; None: on in a terminal or notebook, off where MMLIB_QUIET=1
    live_plot: bool = False        # redraw the loss curve at every evaluation, in JupyterLab (never under CI/tests)

    def __post_init__(self) -> None:
        positive_int("max_steps", self.max_steps)
        positive_int("batch_size", self.batch_size)
        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("schedule", self.schedule, SCHEDULES)
        choice("sampling", self.sampling, SAMPLINGS)
        number("dropout_from", self.dropout_from, 0, 1, high_open=True)
        learning_rate("lr", self.lr)
        learning_rate("lr_late", self.lr_late)
        optional(non_negative_int, "decay_step", self.decay_step)
        non_negative_int("warmup", self.warmup)
        number("lr_min", self.lr_min, 0, self.lr)
        number("weight_decay", self.weight_decay, 0, None)
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        for b in self.betas:
            number("betas", b, 0, 1, high_open=True)
        optional(number, "grad_clip", self.grad_clip, 0, None, low_open=True)
        non_negative_int("eval_every", self.eval_every)
        optional(positive_int, "eval_rows", self.eval_rows)
        check_seed("seed", self.seed)
        choice("device", self.device, DEVICES)
        optional(positive_int, "threads", self.threads)
        optional(boolean, "progress", self.progress)
        boolean("live_plot", self.live_plot)
        if self.optimizer == "sgd" and self.weight_decay:
            raise ValueError("weight_decay is applied by AdamW only (and Muon), not by plain SGD; use "
                             "optimizer='adamw' (or weight_decay=0)")

    @property
    def decay_at(self) -> int:
        """The step at which the "step" schedule drops to `lr_late`."""
        return self.max_steps // 2 if self.decay_step is None else self.decay_step

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of step `step` (0-based) under `cfg`'s schedule."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        return cfg.lr if step < cfg.decay_at else cfg.lr_late
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(1, cfg.max_steps - cfg.warmup - 1)
    progress = min(1.0, (step - cfg.warmup) / span)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * progress))


class LectureSGD:
    """The lectures' update, `p -= lr * p.grad` for every parameter, with torch.optim's interface.

    Not `torch.optim.SGD`, which computes `p + (-lr) * grad` in one fused step and so rounds
    differently in the last bit; over 200,000 steps that is enough to move a lesson's printed losses.
    """

    def __init__(self, params: list[torch.Tensor], lr: float):
        self.param_groups = [{"params": params, "lr": lr}]

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p -= group["lr"] * p.grad

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: drop them (`set_to_none`, as the lectures' `p.grad = None`) or fill them with 0."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def trainable(model) -> list[torch.Tensor]:
    """The tensors training updates; a clear error for one that cannot learn."""
    params = list(model.parameters())
    if not params:
        raise ValueError("the model has no parameters to train")
    for i, p in enumerate(params):
        if not p.requires_grad:
            raise ValueError(f"parameter {i} {tuple(p.shape)} does not require a gradient: create it with "
                             "requires_grad=True (or as a torch.nn.Parameter)")
    return params


def make_optimizer(model, cfg: TrainConfig):
    """`LectureSGD`, `torch.optim.AdamW` or `MuonAdamW` over the model's parameters (weight decay on matrices only)."""
    params = trainable(model)
    if cfg.optimizer == "sgd":
        return LectureSGD(params, lr_at(0, cfg))
    if cfg.optimizer == "muon":
        hidden = muon_matrices(model)
        ids = {id(p) for p in hidden}
        return MuonAdamW(hidden, _adamw(cfg, [p for p in params if id(p) not in ids]), lr_at(0, cfg), cfg.weight_decay)
    return _adamw(cfg, params)


def _adamw(cfg: TrainConfig, params: list[torch.Tensor]) -> torch.optim.AdamW:
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr_at(0, cfg), betas=cfg.betas)


def muon_matrices(model) -> list[torch.Tensor]:
    """The weight matrices Muon trains: the model's `hidden_matrices()`; a one-line ValueError for a model without.

    Muon orthogonalises the update of a matrix that maps one hidden representation to another; an embedding
    table (a lookup, not a map), the output layer, biases and norms' gains are no such matrices. Only the
    transformer names its hidden matrices (`Transformer.hidden_matrices`)."""
    inner = getattr(model, "module", model)          # DistributedDataParallel holds the model as .module
    find = getattr(inner, "hidden_matrices", None)
    hidden = list(find()) if callable(find) else []
    if not hidden:
        name = getattr(inner, "name", "") or type(inner).__name__
        raise ValueError(f"optimizer muon trains a model's hidden weight matrices and the {name} model has none "
                         "(the transformer has them): use adamw")
    return hidden


class Muon(torch.optim.Muon):
    """`torch.optim.Muon` with its Newton-Schulz iteration in float32, the matrices of one shape at once.

    The update is torch's (Jordan et al. 2024, "Muon: an optimizer for hidden layers"): Nesterov momentum, the
    update matrix orthogonalised by `ns_steps` iterations of the quintic x -> a x + b (x x^T) x + c (x x^T)^2 x
    (`orthogonalise`), decoupled weight decay, then a step of lr scaled for the matrix's shape (`adjust_lr_fn`).
    torch computes the iteration in bfloat16, one matrix at a time: on a CPU without bfloat16 arithmetic that
    costs many times a training step of the course's transformer (`benchmarks/muon_step.py` measures it). The
    same arithmetic in float32 on a stack of same-shaped matrices is one batched product per term instead of
    sixteen small ones; its state (a momentum buffer per matrix) is torch's, so is its state dict.
    """

    @torch.no_grad()
    def step(self, closure=None) -> None:
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            by_shape: dict[torch.Size, list[tuple[torch.Tensor, torch.Tensor]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                by_shape.setdefault(p.shape, []).append((p, update))
            for shape, pairs in by_shape.items():
                ortho = orthogonalise(torch.stack([u for _, u in pairs]), group["ns_coefficients"], group["ns_steps"],
                                      group["eps"])
                step = lr * _muon_lr_ratio(group["adjust_lr_fn"], shape)
                for (p, _), o in zip(pairs, ortho):
                    p.mul_(1 - lr * group["weight_decay"])
                    p.add_(o, alpha=-step)


def orthogonalise(G: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float) -> torch.Tensor:
    """Newton-Schulz's approximation of U V^T for each matrix U S V^T of the stack G (n, rows, cols), in float32.

    Scaled to a Frobenius norm of 1, every singular value is at most 1; each iteration pushes them towards 1
    (to between about 0.7 and 1.2 after 5, which serves as well as exactly 1: Jordan et al.). Computed on the
    wide side (rows <= cols), so x x^T is the smaller Gram matrix."""
    a, b, c = coefficients
    tall = G.shape[-2] > G.shape[-1]
    X = G.float().mT if tall else G.float()
    X = X / X.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = X @ X.mT
        X = torch.baddbmm(X, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), X, beta=a)
    return (X.mT if tall else X).to(G.dtype)


def _muon_lr_ratio(adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """What `torch.optim.Muon` multiplies the learning rate by for a matrix of `shape` (rows, cols)."""
    rows, cols = shape[:2]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return math.sqrt(max(1, rows / cols))         # "original" (torch's default)


class MuonAdamW:
    """Muon (`Muon`) for the hidden matrices, AdamW for every other parameter: one optimiser to the trainer.

    `param_groups` holds both optimisers' groups, so the schedule sets one learning rate for all of them; with
    `adjust_lr_fn="match_rms_adamw"` Muon scales it by 0.2 sqrt(max(rows, columns)) for each matrix, so that its
    update has the root-mean-square of an AdamW update and AdamW's learning rate and weight decay carry over
    (Liu et al. 2025, "Muon is scalable for LLM training"). Momentum 0.95 with Nesterov's step and 5
    Newton-Schulz iterations, `torch.optim.Muon`'s defaults. Its state is both optimisers' states.
    """

    def __init__(self, hidden: list[torch.Tensor], adamw: torch.optim.AdamW, lr: float, weight_decay: float):
        self.muon = Muon(hidden, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
        self.adamw = adamw

    @property
    def param_groups(self) -> list[dict]:
        """Both optimisers' groups (read afresh: `load_state_dict` replaces each optimiser's list)."""
        return self.muon.param_groups + self.adamw.param_groups

    @torch.no_grad()
    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])


def trim_padding(X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of padded sequences cut after the last column that holds a target (lesson 06).

    Names are padded to the longest name of the file, but a random batch rarely holds it: the
    columns after its own longest name are padding (`IGNORE`) in every row. A sequence model predicts
    position t from positions 0..t only, so dropping them changes neither the outputs at the
    other positions nor the loss, and saves their computation (about a quarter of it on names).
    """
    real = Y != IGNORE
    keep = int(real.any(0).nonzero().max()) + 1 if real.any() else 1
    return X[:, :keep], Y[:, :keep]


@torch.no_grad()
def evaluate(model, X: torch.Tensor, Y: torch.Tensor) -> float:
    """The model's mean loss on all of (X, Y), in eval mode, on the model's device.

    Large splits go through in chunks; each chunk's mean is weighted by its number of targets
    (padding, `IGNORE`, excluded), so the result is the mean over every target of the split.
    """
    if len(X) == 0:
        raise ValueError("cannot evaluate on an empty split: the word file is too small for train/dev/test")
    device = device_of(model)
    rows = max(1, EVAL_TOKENS // max(1, X.shape[1]))
    total, count = 0.0, 0
    with eval_mode(model):
        for i in range(0, len(X), rows):
            xb, yb = X[i:i + rows].to(device), Y[i:i + rows].to(device)
            _, loss = model(xb, yb)
            n = int((yb != IGNORE).sum())
            total += loss.item() * n
            count += n
    return total / count


@dataclass
class TrainState:
    """Where a run stands: the step, the minibatch generator, the optimiser, the losses so far.

    `train` updates it as it goes, so the caller still holds it after an interruption (Ctrl-C)
    and can save it (`state_dict`) and resume from it: with the same model weights, a resumed run
    draws the same minibatches and takes the same steps as one that never stopped.
    """

    generator: torch.Generator
    step: int = 0
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    optimizer: Any = None                         # the live optimiser, once `train` has made it
    optimizer_state: dict | None = None           # a saved optimiser state, loaded when `train` resumes

    def state_dict(self) -> dict[str, Any]:
        opt = self.optimizer.state_dict() if self.optimizer is not None else self.optimizer_state
        return {"step": self.step, "losses": list(self.losses), "evals": list(self.evals), "seconds": self.seconds,
                "generator": self.generator.get_state(), "optimizer": opt}

    @classmethod
    def from_state_dict(cls, d: Mapping[str, Any]) -> "TrainState":
        g = torch.Generator()
        g.set_state(d["generator"])
        return cls(g, d["step"], list(d["losses"]), list(d["evals"]), d["seconds"], optimizer_state=d.get("optimizer"))


@dataclass
class TrainResult:
    """What a run produced."""

    losses: list[float]            # the minibatch loss of every step
    evals: list[dict[str, float]]  # {"step": s, "train": ..., "dev": ...} at every evaluation
    final: dict[str, float]        # the loss on each whole split at the end, in eval mode
    seconds: float                 # wall time of the training steps (evaluations excluded)
    steps: int                     # steps taken, over all the runs that led here (a resumed run counts all)
    digest: str = ""               # `state_digest` of the model the run left ("" for a model without a state_dict)
    targets: dict[str, int] = field(default_factory=dict)  # the targets (characters to predict) of each split: what
                                   # a check compares with the lesson's splits (dev examples in the training data)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else math.nan


@dataclass
class StepInfo:
    """What `Callbacks.on_step` receives: the step, its minibatch loss (a tensor), its learning rate, the model."""

    step: int
    loss: torch.Tensor
    lr: float
    model: Any


class Callbacks:
    """Where a caller joins `train`: three hooks, each a no-op here; subclass and override those you need.

        class Watch(Callbacks):
            def on_eval(self, step, losses):
                print(step, losses)

        train(model, splits, cfg, callbacks=Watch())

    - `before_step(step)` runs at the start of every step, before anything of it happens (before its
      minibatch is drawn). It may raise to stop the run (the command line's Ctrl-C does): model,
      BatchNorm statistics, optimiser and `TrainState` are then exactly as the previous step left
      them, so a run resumed from that state takes the same steps as one that never stopped.
    - `on_step(info)` runs after the backward pass and before the update (`StepInfo`: step, loss, lr,
      model), so the gradients are there to read and not yet used (lesson 03's `Recorder` reads them).
      It may read anything and should change nothing; if it raises, the update is not made and the
      run resumes from this step (but the forward pass has already moved BatchNorm's running
      statistics: stop in `before_step` for an exact resume).
    - `on_eval(step, losses)` runs after every evaluation (every `eval_every` steps, on `eval_rows`
      rows) and after the final one (all rows), with `losses` = {"train": ..., "dev": ...} and `step`
      the number of steps taken. It may save the model (the command line keeps its best checkpoint
      here); its time is not counted in the run's `seconds`.
    """

    def before_step(self, step: int) -> None:
        """Runs before step `step` (0-based) draws its minibatch."""

    def on_step(self, info: StepInfo) -> None:
        """Runs after the backward pass of step `info.step`, before its update."""

    def on_eval(self, step: int, losses: dict[str, float]) -> None:
        """Runs after each evaluation, `step` steps into the run."""


def train(model, splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]], cfg: TrainConfig, *,
          generator: torch.Generator | None = None, state: TrainState | None = None,
          callbacks: Callbacks | None = None) -> TrainResult:
    """Train `model` on `splits["train"]` with `cfg`; return the losses and the final loss of every split.

    `generator` draws the minibatches (None: a new one seeded with `cfg.seed`); passing the
    generator that initialised the model continues one random stream, as the lectures do.
    `state` resumes an earlier run (see `TrainState`): the result is then that of a run that never
    stopped. `callbacks` joins in at every step and evaluation (see `Callbacks`: what runs when, and
    what it may change).

    Stops with `TrainingDiverged` when the loss becomes NaN/inf or, after 100 steps, its average
    over the last 100 steps is more than twice where it started (or twice the loss of a uniform
    guess, if that is higher): then the learning rate is too high (see `DivergenceGuard`).
    """
    run = _start(model, splits, cfg, generator, state, callbacks)
    try:
        t0 = time.perf_counter()
        while run.state.step < cfg.max_steps:
            _step(run)
            if cfg.eval_every and run.state.step % cfg.eval_every == 0 and run.state.step < cfg.max_steps:
                run.state.seconds += time.perf_counter() - t0
                _evaluate_during(run)
                t0 = time.perf_counter()
        run.state.seconds += time.perf_counter() - t0
    finally:
        _stop(run)
    return _finish(run)


@dataclass(slots=True)
class _Run:
    """What one call of `train` works with, made by `_start` (slots: the step reads it thousands of times)."""

    model: Any
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]   # on the training device
    cfg: TrainConfig
    state: TrainState
    optimizer: Any
    params: list[torch.Tensor]
    device: torch.device
    on_accelerator: bool                  # not the CPU (read once: torch.device.type costs a microsecond)
    trim: bool                            # cut sequence batches after their last target (`trim_padding`)
    callbacks: Callbacks
    watch_steps: bool                     # callbacks.on_step is not the no-op: a StepInfo per step is worth making
    bar: _ProgressBar | None
    plot: _LivePlot | None
    guard: DivergenceGuard | None = None  # made at the first step, when the logits say how many classes there are
    drawn_from: torch.Tensor | None = None  # the generator's state before this step's draw, until the step is done
    dropouts: list[torch.nn.Dropout] = field(default_factory=list)  # switched on at `dropout_from` (else empty)
    lengths: tuple[int, ...] | None = None   # "lengths" sampling: each training row's number of targets
    targets_per_row: float = 0.0             # ... and their mean


def _start(model, splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]], cfg: TrainConfig,
           generator: torch.Generator | None, state: TrainState | None, callbacks: Callbacks | None) -> _Run:
    """Check the arguments, move model and data to the device, make the optimiser; model in training mode."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if callbacks is not None and not isinstance(callbacks, Callbacks):
        raise TypeError(f"callbacks must be a mmlib.train.Callbacks (subclass it and override the hooks you need), "
                        f"got {type(callbacks).__name__}")
    _check_splits(splits)
    device = pick_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if hasattr(model, "to"):
        model.to(device)
    splits = {k: (X.to(device), Y.to(device)) for k, (X, Y) in splits.items()}
    if state is None:
        state = TrainState(generator if generator is not None else torch.Generator().manual_seed(cfg.seed))
    opt = make_optimizer(model, cfg)
    if state.optimizer_state:
        opt.load_state_dict(state.optimizer_state)
    state.optimizer = opt
    callbacks = callbacks if callbacks is not None else Callbacks()
    run = _Run(model, splits, cfg, state, opt, params=[p for group in opt.param_groups for p in group["params"]],
               device=device, on_accelerator=device.type != "cpu",
               trim=bool(getattr(getattr(model, "module", model), "per_position", False))   # DDP holds it as .module
               and splits["train"][1].ndim == 2,
               callbacks=callbacks, watch_steps=type(callbacks).on_step is not Callbacks.on_step,
               bar=_ProgressBar(cfg.max_steps, state.step) if _progress_wanted(cfg) else None,
               plot=_LivePlot() if _live_plot_wanted(cfg) else None)
    if cfg.sampling == "lengths":
        run.lengths = _row_lengths(splits["train"][1], run.trim)
        run.targets_per_row = sum(run.lengths) / len(run.lengths)
    if cfg.dropout_from and hasattr(model, "modules"):
        run.dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    if hasattr(model, "train") and callable(model.train):
        model.train()
    return run


def _step(run: _Run) -> None:
    """One step, as lesson 02 writes it: draw a minibatch, forward, backward, update; then watch the loss."""
    state, cfg, opt = run.state, run.cfg, run.optimizer
    step = state.step
    # From here until the step is done, an exception puts the generator back (`_stop`): a resumed run redraws
    # this batch. An exception in before_step comes before anything of the step has happened.
    run.drawn_from = state.generator.get_state()
    run.callbacks.before_step(step)
    lr = lr_at(step, cfg)
    for group in opt.param_groups:
        group["lr"] = lr
    if run.dropouts:                 # late dropout: off until dropout_from, then as the model has it
        on = step >= cfg.dropout_from * cfg.max_steps
        for layer in run.dropouts:
            layer.training = on
    X, Y = run.splits["train"]
    ix = minibatch_rows(step, cfg.batch_size, len(X), state.generator, cfg.sampling, run.lengths)  # on the CPU
    if run.on_accelerator:
        ix = ix.to(run.device)
    xb, yb = X[ix], Y[ix]
    if run.trim:
        xb, yb = trim_padding(xb, yb)
    logits, loss = run.model(xb, yb)
    opt.zero_grad(set_to_none=True)
    if run.lengths is None:
        loss.backward()
    else:   # the loss is a mean over the batch's characters: a batch of short words, fewer characters, weighs as
        # much as one of long words unless scaled by its count, and the dev loss is a mean over characters
        (loss * ((yb != IGNORE).sum() / (len(yb) * run.targets_per_row))).backward()
    if cfg.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(run.params, cfg.grad_clip)
    if run.watch_steps:
        run.callbacks.on_step(StepInfo(step, loss, lr, run.model))
    opt.step()
    value = loss.item()
    state.losses.append(value)
    state.step += 1
    run.drawn_from = None
    if run.guard is None:
        run.guard = DivergenceGuard(logits.shape[-1])
        run.guard.first = state.losses[0]   # a resumed run compares with where the whole run started
    run.guard(step, value, lr)
    if run.bar is not None:
        run.bar.update(value)


def minibatch_rows(step: int, batch_size: int, n_rows: int, generator: torch.Generator,
                   sampling: str = "random", lengths: tuple[int, ...] | None = None) -> torch.Tensor:
    """The rows (indices into the training split) that step `step` trains on.

    "random" draws each row from `generator`, independently: in a run of many passes over the data some
    rows come up far more often than others. "epochs" reads the rows from an endless stream of shuffled
    orders of all `n_rows` rows, one order per pass, step `step` taking the stream's `batch_size` rows from
    `step * batch_size` on; every row is trained on once a pass (on the transformer's 24 passes over the
    names, that lowered the dev loss on every seed tried). A pass's order depends only on the generator's
    seed and the pass, so a resumed run (with the same batch size) rebuilds it without saving it, and
    `generator` is not drawn from.

    "lengths" (sequence models, `lengths` each row's number of targets) makes a minibatch of words of like
    length: a pass's shuffled order is cut into runs of `LENGTH_RUN` minibatches, each run sorted by length and
    cut into minibatches, and the pass's minibatches are shuffled. `trim_padding` then cuts a batch after its
    own longest word, which is rarely far beyond the others: on the names about 7.6 positions a row, against
    12 for a batch drawn at random, so a step costs about a quarter less. Every pass trains on
    `n_rows // batch_size` whole minibatches (the rows its order puts last wait for another pass).
    """
    if sampling == "random":
        return torch.randint(0, n_rows, (batch_size,), generator=generator)
    choice("sampling", sampling, SAMPLINGS)
    if sampling == "lengths":
        if lengths is None or len(lengths) != n_rows:
            raise ValueError(f"sampling='lengths' needs the length of each of the {n_rows} rows (lengths=)")
        per_pass = n_rows // batch_size
        if per_pass == 0:
            raise ValueError(f"sampling='lengths' makes whole minibatches of {batch_size} rows, but there are "
                             f"only {n_rows}: lower batch_size")
        p, i = divmod(step, per_pass)
        return _length_pass(generator.initial_seed(), p, batch_size, lengths)[i]
    start = step * batch_size
    first, last = start // n_rows, (start + batch_size - 1) // n_rows
    stream = torch.cat([_pass_order(generator.initial_seed(), p, n_rows) for p in range(first, last + 1)])
    offset = start - first * n_rows
    return stream[offset:offset + batch_size]


@functools.lru_cache(maxsize=2)   # a step needs the current pass and, across a pass's end, the next
def _pass_order(seed: int, p: int, n_rows: int) -> torch.Tensor:
    """Pass `p`'s shuffled order of the rows 0..n_rows-1, a function of `seed` and `p` only."""
    return torch.randperm(n_rows, generator=_pass_generator(seed, p))


def _pass_generator(seed: int, p: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + p) % 2**63)


@functools.lru_cache(maxsize=1)
def _length_pass(seed: int, p: int, batch_size: int, lengths: tuple[int, ...]) -> torch.Tensor:
    """Pass `p`'s minibatches (n_rows // batch_size, batch_size) for "lengths" sampling, in training order."""
    g = _pass_generator(seed, p)
    per_pass = len(lengths) // batch_size
    order = torch.randperm(len(lengths), generator=g)[:per_pass * batch_size]
    length = torch.tensor(lengths)[order]
    run = LENGTH_RUN * batch_size
    batches = torch.cat([order[i:i + run][length[i:i + run].argsort(stable=True)] for i in range(0, len(order), run)])
    return batches.view(per_pass, batch_size)[torch.randperm(per_pass, generator=g)]


def _row_lengths(Y: torch.Tensor, sequences: bool) -> tuple[int, ...]:
    """Each training row's number of targets, for "lengths" sampling (which only sequence models can use; a
    split smaller than a minibatch is refused by `minibatch_rows`, at the first step)."""
    if not sequences:
        raise ValueError("sampling='lengths' puts words of like length in a minibatch, for models that read whole "
                         "words (transformer, rnn, gru); this model's rows all have one length: use 'epochs'")
    return tuple((Y != IGNORE).sum(1).tolist())


def _evaluate_during(run: _Run) -> None:
    """The evaluation every `eval_every` steps: the first `eval_rows` rows of every split."""
    rows = run.cfg.eval_rows
    _record_eval(run, {k: evaluate(run.model, X[:rows], Y[:rows]) for k, (X, Y) in _train_first(run.splits)})


def _stop(run: _Run) -> None:
    """After the last step, or an exception: a step left half done gives its minibatch back; the bar closes."""
    if run.drawn_from is not None:
        run.state.generator.set_state(run.drawn_from)
    if run.bar is not None:
        run.bar.close()
        run.bar = None


def _finish(run: _Run) -> TrainResult:
    """The final evaluation, of every split in full, and the result."""
    final = {k: evaluate(run.model, X, Y) for k, (X, Y) in _train_first(run.splits)}
    if run.guard is not None:
        run.guard.finish(final["train"])   # a run too short for the guard's windows still hears if it got worse
    _record_eval(run, final)
    s = run.state
    digest = state_digest(run.model) if hasattr(run.model, "state_dict") else ""
    targets = {k: int((Y != IGNORE).sum()) for k, (_, Y) in run.splits.items()}
    return TrainResult(list(s.losses), list(s.evals), final, s.seconds, len(s.losses), digest, targets)


def state_digest(model) -> str:
    """A fingerprint of the exact values of every parameter and buffer in `model.state_dict()`, and of the settings
    its modules print (`repr`: a Dropout's p, a LayerNorm's eps), which change what the model does without a value.

    `train` returns the one of the model it leaves (`TrainResult.digest`): a later change to the model (more
    training, an edit in place) then shows, and a lesson's check can tell that the model a run's results belong to
    is no longer the one in the notebook (`mmlib.checks.train_your_model`).
    """
    h = hashlib.sha1(repr(model).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _record_eval(run: _Run, losses: dict[str, float]) -> None:
    run.state.evals.append({"step": run.state.step, **losses})
    if run.bar is not None:
        run.bar.show_eval(losses)
    if run.plot is not None:
        run.plot.update(run.state)
    run.callbacks.on_eval(run.state.step, losses)


def _train_first(splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> list:
    """The splits with "train" first: the order evaluations are reported in."""
    return [("train", splits["train"]), *((k, v) for k, v in splits.items() if k != "train")]


def _check_splits(splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    if "train" not in splits:
        raise ValueError(f"splits needs a 'train' entry, got {sorted(splits)}")
    for name, (X, Y) in splits.items():
        if len(X) != len(Y):
            raise ValueError(f"split {name!r}: X has {len(X)} rows but Y has {len(Y)}")
    if len(splits["train"][0]) == 0:
        raise ValueError("the training split is empty: the word file is too small")


QUIET = "MMLIB_QUIET"
"""The environment variable that turns progress bars and live plots off where nobody watches them: set to 1 by
the tests (tests/conftest.py, so also in CI) and by `run_notebook(quiet=True)` for the committed notebooks."""


def _quiet() -> bool:
    """MMLIB_QUIET set to anything but "" or "0": no live output (a `TrainConfig.progress` given still wins)."""
    return os.environ.get(QUIET, "") not in ("", "0")


def _progress_wanted(cfg: TrainConfig) -> bool:
    return cfg.progress if cfg.progress is not None else not _quiet()


def _live_plot_wanted(cfg: TrainConfig) -> bool:
    """`live_plot` asked for, in a notebook's kernel (JupyterLab), and not a run that must stay quiet."""
    return cfg.live_plot and not _quiet() and _in_notebook()


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class _ProgressBar:
    """One line: step, the minibatch loss smoothed and the latest held-out losses (tqdm.auto).

    A single minibatch's loss is noise; its exponential moving average over about the last 50 steps
    (`DECAY`) follows the trend. It is updated at every step, so whenever the bar redraws it shows the
    loss of that moment, whatever the run's length.
    """

    DECAY = 0.98

    def __init__(self, total: int, start: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=start, unit="step", mininterval=0.5, dynamic_ncols=True, leave=True)
        self.smooth: float | None = None
        self.evals = ""

    def update(self, loss: float) -> None:
        self.smooth = loss if self.smooth is None else self.DECAY * self.smooth + (1 - self.DECAY) * loss
        self.bar.set_postfix_str(self.postfix(), refresh=False)   # drawn at the bar's next redraw
        self.bar.update(1)

    def postfix(self) -> str:
        """The bar's text: `avg loss`, the moving average (short, so a narrow terminal keeps it), then the latest
        evaluation."""
        return ("" if self.smooth is None else f"avg loss {self.smooth:.4f}") + self.evals

    def show_eval(self, losses: dict[str, float]) -> None:
        self.evals = "".join(f" | {k} {v:.4f}" for k, v in losses.items())
        self.bar.set_postfix_str(self.postfix(), refresh=False)

    def close(self) -> None:
        self.bar.close()


class _LivePlot:
    """The loss curve redrawn in place in JupyterLab at every evaluation."""

    def __init__(self):
        from IPython.display import display

        self.handle = display(display_id=True)

    def update(self, state: TrainState) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import Image

        from mmlib.plots import compact_png, plot_loss

        smooth = max(1, len(state.losses) // 200)
        ax = plot_loss(state.losses, log=True, smooth=smooth, label=f"train minibatch (mean of {smooth})")
        for k in (k for k in state.evals[0] if k != "step") if state.evals else ():
            ax.plot([e["step"] for e in state.evals], [math.log10(e[k]) for e in state.evals], marker=".", label=k)
        ax.legend()
        self.handle.update(Image(data=compact_png(ax.figure)))
        plt.close(ax.figure)
