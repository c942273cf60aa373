"""`makemore train` on several processes: torchrun's environment, DistributedDataParallel, and their checks.

    torchrun --nproc_per_node 4 -m mmlib train ...

Each process draws its own minibatches (process r with seed + r), DDP averages the gradients, and
only process 0 prints and writes. At every evaluation the processes compare fingerprints of their
parameters, so a run that lost sync stops with one line instead of saving a model no process holds.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mmlib.cli.runs import CLIError
from mmlib.models import Model


@dataclass
class Distributed:
    """This process's place among the `torchrun` processes (None outside torchrun: one process)."""

    rank: int
    world: int
    local_rank: int

    @classmethod
    def from_env(cls) -> "Distributed | None":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))

    def start(self, device: str) -> None:
        import torch.distributed as dist

        if device == "cuda":
            if torch.cuda.device_count() <= self.local_rank:
                raise CLIError(f"process {self.rank} wants GPU {self.local_rank}, but PyTorch sees "
                               f"{torch.cuda.device_count()} GPUs here; start fewer processes per node")
            torch.cuda.set_device(self.local_rank)
        dist.init_process_group("nccl" if device == "cuda" else "gloo")

    def wrap(self, model: Model, device: str) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[self.local_rank] if device == "cuda" else None)

    def max(self, value: int) -> int:
        """The largest of every process's `value`, on every process (so all stop at the same step, and all
        report the signal that one of them was sent)."""
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def gather(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def check_agreement(self, model: torch.nn.Module, step: int) -> None:
        """Stop with one line when the processes hold different parameters (DDP lost sync)."""
        if len(set(self.gather(parameters_digest(model)))) != 1:
            raise CLIError(f"the {self.world} processes hold different parameters at step {step:,}: DDP lost sync")

    def stop(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def is_rank0(dist: Distributed | None) -> bool:
    return dist is None or dist.rank == 0


def parameters_digest(model: torch.nn.Module) -> str:
    """A fingerprint of every parameter, to check that all processes hold the same model.

    Buffers are left out: BatchNorm's running statistics follow each process's own batches until
    DDP copies process 0's over them at the next forward pass."""
    h = hashlib.sha256()
    for k, v in model.named_parameters():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def printer(rank0: bool) -> Callable[[str], None]:
    """`say(line)`: a line on stdout from process 0 only, above the progress bar."""
    from tqdm.auto import tqdm

    def say(line: str) -> None:
        if rank0:
            tqdm.write(line, file=sys.stdout)
            sys.stdout.flush()

    return say
