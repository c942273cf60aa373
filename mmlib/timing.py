"""Timing a piece of code the way the lessons and benchmarks do (lessons 02 and 04, `benchmarks/`).

A single measurement on a shared machine mostly measures whatever else the machine was doing, so
`seconds_per_call` runs the code in several rounds and keeps the fastest: the round least disturbed.
On a GPU, work is queued and the call returns before it is done, so each round waits for the
device before reading the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from mmlib.validate import positive_ints


def synchronize(device: str | torch.device | None) -> None:
    """Wait for the queued work of a `cuda` or `mps` device (nothing to wait for on the CPU)."""
    kind = torch.device(device).type if device is not None else "cpu"
    if kind == "cuda":
        torch.cuda.synchronize()
    elif kind == "mps":
        torch.mps.synchronize()


def seconds_per_call(fn: Callable[[], object], *, reps: int = 1, rounds: int = 3,
                     device: str | torch.device | None = None) -> float:
    """Seconds one call of `fn()` takes: `rounds` rounds of `reps` calls each, the fastest round.

    Lesson 02 times a loss on a minibatch (`reps=300`: one call is too short to time alone);
    lesson 04 times one call of each of two gradient routines over 20 rounds (the first call of
    an operation also pays one-off set-up costs, which the minimum leaves out).
    """
    positive_ints(reps=reps, rounds=rounds)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        synchronize(device)
        best = min(best, (time.perf_counter() - t0) / reps)
    return best
