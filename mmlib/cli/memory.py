"""What a training step of `makemore train` needs in memory, checked before anything is written.

The command line builds the model, then calls `check_batch_fits`: `--batch-size 1e8` is refused in one line
that names the largest batch size that fits, not in PyTorch's allocator. (A model too large for the machine
is refused by the model itself, `mmlib.models.check_model_fits`, wherever it is built.)
"""

from __future__ import annotations

import torch

from mmlib.models import Model, device_memory, readable_size
from mmlib.validate import positive_int

TRAINING_BYTES_PER_PARAMETER = 16
"""What training holds per parameter: the weight, its gradient and AdamW's two moving averages, 4 bytes each."""


def _activation_bytes(model: Model, batch_size: int) -> int:
    """The bytes of the tensors one forward pass on `batch_size` full-length examples keeps for backward."""
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:       # views of one tensor (and a weight saved twice) count once
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return t

    device = model.device
    idx = torch.zeros(batch_size, model.block_size, dtype=torch.long, device=device)
    targets = idx if model.per_position else idx[:, 0]
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    was_training = model.training
    try:
        # Training mode, as a step runs; its side effects are undone: BatchNorm's statistics are put back
        # and dropout's draws come from a forked generator, so measuring never changes a run.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.enable_grad():
            model.train()
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                model(idx, targets)
    finally:
        model.train(was_training)
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
    return total


def training_memory(model: Model, batch_size: int) -> tuple[int, int]:
    """An estimate of one training step's memory in bytes: (fixed, per example).

    fixed: the weights, gradients and optimiser state (`TRAINING_BYTES_PER_PARAMETER` each); per example:
    the activations backward needs for one example of full length (`block_size` positions), measured on
    batches of 2 and 4 (BatchNorm needs two) and taking the difference, so weights saved for backward
    cancel out. A step on `batch_size` examples needs about fixed + batch_size * per example.
    """
    positive_int("batch_size", batch_size)
    per_example = max(0, _activation_bytes(model, 4) - _activation_bytes(model, 2)) // 2
    return TRAINING_BYTES_PER_PARAMETER * model.n_parameters(), per_example


def check_batch_fits(model: Model, batch_size: int) -> int:
    """`batch_size` unchanged, or one line saying that a training step on it cannot fit in the device's memory.

    The command line calls it once the model is built (`--batch-size 1e8` is refused before training starts,
    not in the allocator); the line says the largest batch size that would fit.
    """
    fixed, per_example = training_memory(model, batch_size)
    memory = device_memory(model.device)
    need = fixed + batch_size * per_example
    if memory is None or need <= memory:
        return batch_size
    where = f"{model.device.type} memory" if model.device.type != "cpu" else "memory"
    if fixed >= memory:
        raise ValueError(f"training this model needs about {readable_size(fixed)} for its weights, gradients and "
                         f"optimiser alone, more than the {readable_size(memory)} of {where}: make the model smaller")
    most = (memory - fixed) // max(1, per_example)
    raise ValueError(f"batch_size {batch_size:,} needs about {readable_size(need)} per training step "
                     f"({readable_size(per_example)} of activations per example), more than the "
                     f"{readable_size(memory)} of {where}: use a batch_size of at most {most:,}")
