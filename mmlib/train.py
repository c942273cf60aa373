"""One training loop for every model of the course (built in the open in lesson 02; lessons 03 on call it).

    cfg = TrainConfig(steps=200_000, batch_size=32, lr=0.1, lr_late=0.01)
    result = train(model, splits, cfg)       # splits: {"train": (X, Y), "dev": (X, Y), ...}
    result.final                             # {"train": 2.13, "dev": 2.18, ...}

Each step draws a random minibatch of rows of the training split, asks the model for its loss
(`model(X, Y) -> (logits, loss)`, see `mmlib.models`), backpropagates and updates. Two recipes:

- `optimizer="sgd", schedule="step"` (the defaults): the lectures' plain minibatch SGD, `p -= lr * grad`,
  with the learning rate dropping from `lr` to `lr_late` at `decay_step`. Written exactly as lesson 02
  writes it, so the lessons' numbers do not move when they switch to this function.
- `optimizer="adamw", schedule="cosine"`: AdamW with a linear warm-up over `warmup` steps and a cosine
  decay to `lr_min` - the faster recipe lessons 05-06 and the command line use.

Deliberately not here: gradient accumulation, mixed precision, learning-rate finders (lesson 02
builds one by hand), early stopping (the command line keeps the best checkpoint instead).

The model may be a `torch.nn.Module` or anything with the same call and a `parameters()` method
(lesson 03's hand-built layer stacks): the loop only calls it, reads `parameters()` and switches
modes through `mmlib.layers.eval_mode`.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from mmlib.layers import eval_mode
from mmlib.runtime import DEVICES, pick_device
from mmlib.validate import (boolean, choice, learning_rate, non_negative_int, number, optional, positive_int,
                            seed as check_seed)

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "constant")
EVAL_TOKENS = 2**20
"""`evaluate` feeds at most this many characters of context to the model at once (memory, not results)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or grew far above where it started: the learning rate is too high.

    In a notebook it shows as its one-line message, not a traceback: the cause is a parameter, not
    a line of code.
    """

    def _render_traceback_(self) -> list[str]:   # IPython shows these lines instead of the traceback
        return [f"TrainingDiverged: {self}"]


class DivergenceGuard:
    """Stops a training loop whose loss blew up, with one line: at which step, and what to lower.

        guard = DivergenceGuard(vocab_size)          # before the loop
        guard(step, loss.item(), lr)                 # after every step; raises TrainingDiverged

    The loss has diverged when it is NaN/inf, or when, after `window` steps, its mean over the last
    `window` steps is more than twice where it started or twice the loss of a uniform guess,
    ln(vocab_size) (whichever is higher): a run that learns never climbs there. `lr_name` is the
    parameter to lower, as the lesson's parameters cell calls it. The one place this rule lives:
    `train` uses it, and so do the loops lessons 01 and 02 write in the open.
    """

    def __init__(self, vocab_size: int, *, window: int = 100, lr_name: str = "lr"):
        self.uniform = math.log(positive_int("vocab_size", vocab_size))
        self.window: deque[float] = deque(maxlen=positive_int("window", window))
        self.first: float | None = None
        self.lr_name = lr_name

    def __call__(self, step: int, value: float, lr: float) -> None:
        if self.first is None:
            self.first = value
        self.window.append(value)
        if not math.isfinite(value):
            raise TrainingDiverged(f"training stopped at step {step:,}: the loss became {value}; {self._fix(lr)}")
        if len(self.window) == self.window.maxlen and step >= self.window.maxlen:
            mean = sum(self.window) / len(self.window)
            ceiling = 2 * max(self.first, self.uniform)
            if mean > ceiling:
                raise TrainingDiverged(
                    f"training stopped at step {step:,}: the loss is diverging (its mean over the last "
                    f"{len(self.window)} steps, {mean:.2f}, is above {ceiling:.2f}: twice the larger of its start, "
                    f"{self.first:.2f}, and a uniform guess, {self.uniform:.2f}); {self._fix(lr)}")

    def _fix(self, lr: float) -> str:
        return f"lower the learning rate ({self.lr_name}, now {lr:g}) and run again"


@dataclass
class TrainConfig:
    """How to train: the budget, the optimiser and its learning-rate schedule, and where to run."""

    steps: int = 200_000           # optimisation steps, one minibatch each
    batch_size: int = 32           # rows of the training split per step (examples, or words for sequence models)
    optimizer: str = "sgd"         # "sgd": the lectures' plain SGD; "adamw": AdamW
    lr: float = 0.1                # learning rate (the peak, after warm-up, for "cosine")
    schedule: str = "step"         # "step": lr, then lr_late from decay_step; "cosine": warm-up, cosine to lr_min; "constant"
    lr_late: float = 0.01          # "step": the rate from decay_step on
    decay_step: int | None = None  # "step": where the rate drops; None: halfway through `steps`
    warmup: int = 0                # "cosine": steps of linear warm-up from 0 to lr
    lr_min: float = 0.0            # "cosine": the rate at the last step
    weight_decay: float = 0.0      # "adamw": decoupled weight decay, applied to matrices only (not biases, gains)
    betas: tuple[float, float] = (0.9, 0.99)  # "adamw": the moving averages of the gradient and its square
    grad_clip: float | None = None  # clip the gradient's norm to this (None: no clipping)
    eval_every: int = 0            # evaluate the held-out splits every this many steps (0: only at the end)
    eval_rows: int | None = 10_000  # rows per split in those evaluations (None: all); the final one uses all
    seed: int = 42                 # the order of the minibatches (the model's initialisation is seeded where it is made)
    device: str = "cpu"            # "cpu", "cuda" or "mps"
    threads: int | None = None     # cap on PyTorch's CPU threads (None: leave as is)
    progress: bool | None = None   # progress bar; None: on in a terminal or notebook, off under CI and in tests
    live_plot: bool = False        # in JupyterLab, redraw the loss curve at every evaluation

    def __post_init__(self) -> None:
        positive_int("steps", self.steps)
        positive_int("batch_size", self.batch_size)
        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("schedule", self.schedule, SCHEDULES)
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
            raise ValueError("weight_decay is applied by AdamW only; use optimizer='adamw' (or weight_decay=0)")

    @property
    def decay_at(self) -> int:
        """The step at which the "step" schedule drops to `lr_late`."""
        return self.steps // 2 if self.decay_step is None else self.decay_step

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
    span = max(1, cfg.steps - cfg.warmup - 1)
    progress = min(1.0, (step - cfg.warmup) / span)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * progress))


class SGD:
    """The lectures' update, `p -= lr * p.grad` for every parameter, with torch.optim's interface.

    torch.optim.SGD computes `p + (-lr) * grad` in one fused step, which rounds differently in the
    last bit; over 200,000 steps that is enough to move a lesson's printed losses.
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
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

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
    """`SGD` or `torch.optim.AdamW` over the model's parameters (weight decay on matrices only)."""
    params = trainable(model)
    if cfg.optimizer == "sgd":
        return SGD(params, lr_at(0, cfg))
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr_at(0, cfg), betas=cfg.betas)


def trim_padding(X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of padded sequences cut after the last column that holds a target (lesson 06).

    Names are padded to the longest name of the file, but a random batch rarely holds it: the
    columns after its own longest name are padding in every row. A sequence model predicts
    position t from positions 0..t only, so dropping them changes neither the outputs at the
    other positions nor the loss, and saves their computation (about a quarter of it on names).
    """
    keep = int((Y != -1).any(0).nonzero().max()) + 1 if (Y != -1).any() else 1
    return X[:, :keep], Y[:, :keep]


@torch.no_grad()
def evaluate(model, X: torch.Tensor, Y: torch.Tensor) -> float:
    """The model's mean loss on all of (X, Y), in eval mode, on the model's device.

    Large splits go through in chunks; each chunk's mean is weighted by its number of targets
    (padding excluded), so the result is the mean over every target of the split.
    """
    if len(X) == 0:
        raise ValueError("cannot evaluate on an empty split: the word file is too small for train/dev/test")
    device = _device_of(model)
    rows = max(1, EVAL_TOKENS // max(1, X.shape[1]))
    total, count = 0.0, 0
    with eval_mode(model):
        for i in range(0, len(X), rows):
            xb, yb = X[i:i + rows].to(device), Y[i:i + rows].to(device)
            _, loss = model(xb, yb)
            n = int((yb != -1).sum())
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
    steps: int

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else math.nan


@dataclass
class StepInfo:
    """What `on_step` receives: called after backward, before the update, so gradients are there to read."""

    step: int
    loss: torch.Tensor
    lr: float
    model: Any


def _device_of(model) -> torch.device:
    return next(iter(model.parameters())).device


def _progress_wanted(cfg: TrainConfig) -> bool:
    if cfg.progress is not None:
        return cfg.progress
    return not (os.environ.get("CI") or os.environ.get("MMLIB_QUIET") or os.environ.get("PYTEST_CURRENT_TEST"))


def _check_splits(splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]], cfg: TrainConfig) -> None:
    if "train" not in splits:
        raise ValueError(f"splits needs a 'train' entry, got {sorted(splits)}")
    for name, (X, Y) in splits.items():
        if len(X) != len(Y):
            raise ValueError(f"split {name!r}: X has {len(X)} rows but Y has {len(Y)}")
    if len(splits["train"][0]) == 0:
        raise ValueError("the training split is empty: the word file is too small")


def train(model, splits: Mapping[str, tuple[torch.Tensor, torch.Tensor]], cfg: TrainConfig, *,
          generator: torch.Generator | None = None, state: TrainState | None = None,
          on_step: Callable[[StepInfo], None] | None = None,
          on_eval: Callable[[int, dict[str, float]], None] | None = None,
          before_step: Callable[[int], None] | None = None) -> TrainResult:
    """Train `model` on `splits["train"]` with `cfg`; return the losses and the final loss of every split.

    `generator` draws the minibatches (None: a new one seeded with `cfg.seed`); passing the
    generator that initialised the model continues one random stream, as the lectures do.
    `state` resumes an earlier run (see `TrainState`); `on_step(info)` sees every step's gradients
    before the update (lesson 03's statistics recorder); `on_eval(step, losses)` sees every
    evaluation (the command line saves its best checkpoint there). `before_step(step)` runs before
    anything of a step happens; an exception raised there (the command line's Ctrl-C) leaves model,
    BatchNorm statistics, optimiser and `state` exactly as the previous step left them.

    Stops with `TrainingDiverged` when the loss becomes NaN/inf or, after 100 steps, its average
    over the last 100 steps is more than twice where it started (or twice the loss of a uniform
    guess, if that is higher): then the learning rate is too high.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    _check_splits(splits, cfg)
    device = pick_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if hasattr(model, "to"):
        model.to(device)
    splits = {k: (X.to(device), Y.to(device)) for k, (X, Y) in splits.items()}
    Xtr, Ytr = splits["train"]
    on_accelerator = device.type != "cpu"
    if state is None:
        state = TrainState(generator if generator is not None else torch.Generator().manual_seed(cfg.seed))
    opt = make_optimizer(model, cfg)
    if state.optimizer_state:
        opt.load_state_dict(state.optimizer_state)
    state.optimizer = opt
    params = [p for group in opt.param_groups for p in group["params"]]
    held_out = [k for k in splits if k != "train"]
    trim = bool(getattr(model, "per_position", False)) and Ytr.ndim == 2

    bar = _ProgressBar(cfg.steps, state.step) if _progress_wanted(cfg) else None
    plot = _LivePlot() if cfg.live_plot else None
    guard = None   # made at the first step, when the logits say how many classes there are
    drawn_from = state.generator.get_state()
    if hasattr(model, "train") and callable(model.train):
        model.train()
    try:
        t0 = time.perf_counter()
        while state.step < cfg.steps:
            step = state.step
            # An interruption before the update leaves the state as it was at the start of the step
            # (the `finally` below puts the generator back), so a resumed run redraws this batch.
            drawn_from = state.generator.get_state()
            if before_step is not None:
                before_step(step)
            lr = lr_at(step, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            ix = torch.randint(0, len(Xtr), (cfg.batch_size,), generator=state.generator)   # drawn on the CPU
            if on_accelerator:
                ix = ix.to(device)
            xb, yb = Xtr[ix], Ytr[ix]
            if trim:
                xb, yb = trim_padding(xb, yb)
            logits, loss = model(xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            if on_step is not None:
                on_step(StepInfo(step, loss, lr, model))
            opt.step()
            value = loss.item()
            state.losses.append(value)
            state.step += 1
            if guard is None:
                guard = DivergenceGuard(logits.shape[-1])
                guard.first = state.losses[0]   # a resumed run compares with where the whole run started
            guard(step, value, lr)
            if bar is not None:
                bar.update(value)
            if cfg.eval_every and state.step % cfg.eval_every == 0 and state.step < cfg.steps:
                state.seconds += time.perf_counter() - t0
                losses = {k: _subset_loss(model, *splits[k], cfg.eval_rows) for k in ["train", *held_out]}
                state.evals.append({"step": state.step, **losses})
                if bar is not None:
                    bar.show_eval(losses)
                if plot is not None:
                    plot.update(state)
                if on_eval is not None:
                    on_eval(state.step, losses)
                t0 = time.perf_counter()
        state.seconds += time.perf_counter() - t0
    finally:
        if state.step < cfg.steps and len(state.losses) == state.step:
            state.generator.set_state(drawn_from)
        if bar is not None:
            bar.close()
    final = {k: evaluate(model, *splits[k]) for k in ["train", *held_out]}
    state.evals.append({"step": state.step, **final})
    if plot is not None:
        plot.update(state)
    if on_eval is not None:
        on_eval(state.step, final)
    return TrainResult(list(state.losses), list(state.evals), final, state.seconds, len(state.losses))


def _subset_loss(model, X: torch.Tensor, Y: torch.Tensor, rows: int | None) -> float:
    """The loss on the first `rows` rows (a fixed subset, so evaluations are comparable over a run)."""
    return evaluate(model, X[:rows], Y[:rows]) if rows else evaluate(model, X, Y)


class _ProgressBar:
    """One line: step, minibatch loss (smoothed) and the latest held-out losses (tqdm.auto)."""

    def __init__(self, total: int, start: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=start, unit="step", mininterval=0.5, dynamic_ncols=True, leave=True)
        self.smooth: float | None = None
        self.evals = ""

    def update(self, loss: float) -> None:
        self.smooth = loss if self.smooth is None else 0.98 * self.smooth + 0.02 * loss
        self.bar.update(1)
        if self.bar.n % 200 == 0:
            self.bar.set_postfix_str(f"loss {self.smooth:.4f}{self.evals}", refresh=False)

    def show_eval(self, losses: dict[str, float]) -> None:
        self.evals = "".join(f" | {k} {v:.4f}" for k, v in losses.items())

    def close(self) -> None:
        self.bar.close()


class _LivePlot:
    """The loss curve redrawn in place in JupyterLab at every evaluation."""

    def __init__(self):
        from IPython.display import display

        self.handle = display(display_id=True)

    def update(self, state: TrainState) -> None:
        import matplotlib.pyplot as plt

        from mmlib.plots import compact_png, plot_loss
        from IPython.display import Image

        smooth = max(1, len(state.losses) // 200)
        ax = plot_loss(state.losses, log=True, smooth=smooth, label=f"train minibatch (mean of {smooth})")
        for k in (k for k in state.evals[0] if k != "step") if state.evals else ():
            ax.plot([e["step"] for e in state.evals], [math.log10(e[k]) for e in state.evals], marker=".", label=k)
        ax.legend()
        self.handle.update(Image(data=compact_png(ax.figure)))
        plt.close(ax.figure)
