"""makemore train under torchrun: two CPU processes (gloo) train one model with DistributedDataParallel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed

from mmlib.cli import runs
from mmlib.data import NAMES
from mmlib.vocab import Vocab

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this PyTorch build has no gloo backend")
def test_two_processes_take_one_averaged_step_and_write_one_checkpoint(tmp_path):
    words = tmp_path / "names.txt"
    words.write_text("".join(NAMES.read_text(encoding="utf-8").splitlines(keepends=True)[:400]), encoding="utf-8")
    out = tmp_path / "run"
    argv = ["-m", "mmlib", "train", "-i", words, "-o", out, "--model", "mlp", "--n-embd", "4", "--n-hidden", "16",
            "--max-steps", "1", "--eval-every", "1", "--batch-size", "8", "--samples", "2", "--threads", "1",
            "--optimizer", "adamw", "--schedule", "constant", "--lr", "0.01", "--weight-decay", "0",
            "--grad-clip", "none"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *map(str, argv)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MMLIB_QUIET": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Both processes compared fingerprints of their parameters after every step (the check raises otherwise).
    assert "2 processes agree on the parameters" in proc.stdout
    assert proc.stdout.count("step 1/1 |") == 1, "only process 0 prints"
    assert sorted(p.name for p in out.iterdir()) == sorted(runs.RUN_FILES), "one checkpoint, written once"
    meta = runs.read_run(out)
    assert meta["world_size"] == 2 and meta["step"] == 1

    # The first step is AdamW on the mean of the two processes' gradients, each on its own minibatch
    # (process r draws with seed + r): recompute it in one process and compare.
    model = runs.build_model(meta, seed=meta["train_config"]["seed"])
    vocab = Vocab(meta["vocab"][1:])
    X, Y = runs.splits_of(out, meta, runs.run_words(out), vocab)["train"]
    grads = []
    for r in range(2):
        g = torch.Generator().manual_seed(meta["train_config"]["seed"] + r)
        ix = torch.randint(0, len(X), (8,), generator=g)
        model.zero_grad()
        model(X[ix], Y[ix])[1].backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for p, g0, g1 in zip(model.parameters(), *grads):
        p.grad = (g0 + g1) / 2
    torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.9, 0.99), weight_decay=0.0).step()
    after = torch.load(out / "last.pt", weights_only=True)
    assert after["state"]["step"] == 1 and len(after["generators"]) == 2, "each process's minibatch generator is kept"
    for name, p in model.named_parameters():
        torch.testing.assert_close(after["weights"][name], p.detach(), atol=1e-6, rtol=1e-5, msg=name)
    assert not all(torch.equal(a, b) for a, b in zip(*grads)), "the two processes drew different minibatches"
