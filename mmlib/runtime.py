"""The run-time set-up every lesson starts with: seed, device, threads, plot style (lesson 01).

(Named `runtime`, not `setup`, so that nobody takes it for a setuptools script.) Also the facts and
switches of a model that do not depend on which model it is: where it runs (`device_of`), how many
numbers it learns (`n_parameters`), and evaluation mode for a `with` block (`eval_mode`).

Seeding matters in a course: with the same seed a learner's numbers match the ones in the text.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from mmlib import validate
from mmlib.validate import choice, positive_int

DEVICES = ("cpu", "cuda", "mps")


def pick_device(name: str = "cpu") -> torch.device:
    """`torch.device(name)` after checking the hardware is there.

    The default is the CPU, on which every lesson is tested; `cuda` and `mps` are used only
    when asked for, and asking for one this machine lacks is an error rather than a silent
    fallback, so a learner always knows where the work ran.
    """
    choice("device", name, DEVICES)
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but PyTorch sees no CUDA GPU here; use device='cpu'")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device='mps' was asked for but Apple's MPS backend is not available here; use device='cpu'")
    return torch.device(name)


def device_of(model) -> torch.device:
    """The device `model`'s parameters are on: where its inputs must go.

    `model` is a `torch.nn.Module` or anything with a `parameters()` method (lesson 03's layer
    stacks return a list), as `mmlib.train.train` accepts.
    """
    first = next(iter(model.parameters()), None)
    if first is None:
        raise ValueError(f"{type(model).__name__} has no parameters, so it is on no device; give it at least one")
    return first.device


def n_parameters(model) -> int:
    """How many numbers training adjusts in `model` (any model `device_of` accepts)."""
    return sum(p.numel() for p in model.parameters())


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's and PyTorch's global generators and return a fresh `torch.Generator`.

    Lessons pass the returned generator explicitly (`torch.randn(..., generator=g)`) wherever
    randomness enters, as the lectures do, so a cell's output depends only on the cells above it.
    """
    validate.seed("seed", seed)
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def setup(seed: int = 42, device: str = "cpu", threads: int | None = None) -> tuple[torch.device, torch.Generator]:
    """Seed everything, check the device and set the plotting defaults the lessons share.

    `threads` caps PyTorch's CPU threads: lessons that train on minibatches of 32 pass 1, because
    splitting such small matrix products across threads costs more than it saves (and far more
    on a busy machine). Returns `(device, g)`: the `torch.device` to put tensors on and a seeded
    CPU generator.
    """
    from mmlib.plots import use_course_style

    if threads is not None:
        torch.set_num_threads(positive_int("threads", threads))
    dev = pick_device(device)
    g = seed_everything(seed)
    use_course_style()
    torch.set_printoptions(precision=4, sci_mode=False, linewidth=110)
    return dev, g


# ---- evaluation mode, for any model of the course -------------------------------------------------


def _modes(obj) -> list:
    """Every object under `obj` that has a `training` flag: a torch.nn.Module's submodules, or the
    layers of a list (or of an object with a `.layers` list)."""
    if isinstance(obj, torch.nn.Module):
        return list(obj.modules())
    if isinstance(obj, (list, tuple)):
        return [x for item in obj for x in _modes(item)]
    found = [obj] if hasattr(obj, "training") else []
    return found + [x for x in getattr(obj, "layers", []) for x in _modes(x)]


@contextmanager
def eval_mode(*models) -> Iterator[None]:
    """Evaluation mode inside the `with` block, and back to the mode each layer was in after it.

    Works on `torch.nn.Module`s and on lists of this module's layers alike:

        with eval_mode(model):
            logits, _ = model(X)      # BatchNorm uses its running statistics

    Restoring the mode found (rather than switching training back on) means a model that was
    already in eval mode stays there, and a nested `eval_mode` does not undo the outer one.
    """
    layers = [x for m in models for x in _modes(m)]
    before = [x.training for x in layers]
    for x in layers:
        x.training = False
    try:
        yield
    finally:
        for x, mode in zip(layers, before):
            x.training = mode
