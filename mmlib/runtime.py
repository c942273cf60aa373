"""The run-time set-up every lesson starts with: seed, device, threads, plot style (lesson 01).

(Named `runtime`, not `setup`, so that nobody takes it for a setuptools script.) Also the two facts
about a model that do not depend on which model it is: where it runs (`device_of`) and how many
numbers it learns (`n_parameters`).

Seeding matters in a course: with the same seed a learner's numbers match the ones in the text.
"""

from __future__ import annotations

import random

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
