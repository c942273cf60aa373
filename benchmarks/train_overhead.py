"""What `mmlib.train.train` costs over a bare training loop, on lesson 02's MLP: steps per second, side by side.

    python benchmarks/train_overhead.py [--steps 10000] [--rounds 6]

Three loops train lesson 02's final model (context 3, 10-dim embeddings, 200 tanh units, batches of 32,
SGD at 0.1 then 0.01) from the same initialisation on the same minibatches:

- bare:        plain tensors and a hand-written forward pass, the loop lesson 02 writes in the open;
- bare+module: the same loop calling `mmlib.models.MLP` (the model's own cost: input checks, module call);
- train:       `mmlib.train.train(model, splits, TrainConfig(...))` (the trainer's cost on top: schedule,
               divergence watch, bookkeeping).

The three are timed in turn, round after round (in a rotating order), and each one's fastest round is
kept, so a busy moment of the machine does not decide the comparison. One CPU thread, as the lessons use.
The three must produce the same losses to the last bit (checked), so the comparison is of the same work.
A figure, not a test: timings belong to the machine they were measured on.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from mmlib.data import build_splits, load_words
from mmlib.models import MLP, MLPConfig
from mmlib.train import TrainConfig, train
from mmlib.vocab import Vocab

SEED = 2147483647


def bare(cfg: MLPConfig, X: torch.Tensor, Y: torch.Tensor, steps: int, batch_size: int) -> tuple[float, list[float]]:
    g = torch.Generator().manual_seed(SEED)
    model = MLP(cfg, generator=g)
    C, W1, b1, W2, b2 = (p.detach().clone().requires_grad_()
                         for p in (model.C, model.W1, model.b1, model.W2, model.b2))
    params = [C, W1, b1, W2, b2]
    losses = []
    t0 = time.perf_counter()
    for i in range(steps):
        ix = torch.randint(0, len(X), (batch_size,), generator=g)
        emb = C[X[ix]]
        h = torch.tanh(emb.view(emb.shape[0], -1) @ W1 + b1)
        loss = F.cross_entropy(h @ W2 + b2, Y[ix])
        for p in params:
            p.grad = None
        loss.backward()
        lr = 0.1 if i < steps // 2 else 0.01
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
        losses.append(loss.item())
    return time.perf_counter() - t0, losses


def bare_module(cfg: MLPConfig, X: torch.Tensor, Y: torch.Tensor, steps: int,
                batch_size: int) -> tuple[float, list[float]]:
    g = torch.Generator().manual_seed(SEED)
    model = MLP(cfg, generator=g)
    params = list(model.parameters())
    losses = []
    t0 = time.perf_counter()
    for i in range(steps):
        ix = torch.randint(0, len(X), (batch_size,), generator=g)
        _, loss = model(X[ix], Y[ix])
        for p in params:
            p.grad = None
        loss.backward()
        lr = 0.1 if i < steps // 2 else 0.01
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
        losses.append(loss.item())
    return time.perf_counter() - t0, losses


def with_train(cfg: MLPConfig, X: torch.Tensor, Y: torch.Tensor, steps: int,
               batch_size: int) -> tuple[float, list[float]]:
    g = torch.Generator().manual_seed(SEED)
    model = MLP(cfg, generator=g)
    tc = TrainConfig(max_steps=steps, batch_size=batch_size, lr=0.1, lr_late=0.01, progress=False)
    result = train(model, {"train": (X, Y)}, tc, generator=g)
    return result.seconds, result.losses   # seconds: the training steps only, as for the bare loops


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    words = load_words()
    vocab = Vocab.from_words(words)
    X, Y = build_splits(words, vocab, 3)["train"]
    cfg = MLPConfig(vocab_size=len(vocab), block_size=3, n_embd=10, n_hidden=200)
    loops = {"bare": bare, "bare+module": bare_module, "train": with_train}
    best: dict[str, float] = {name: float("inf") for name in loops}
    losses: dict[str, list[float]] = {}
    names = list(loops)
    for r in range(args.rounds):
        for name in names[r % 3:] + names[:r % 3]:   # a different order each round: no loop always goes first
            loop = loops[name]
            seconds, losses[name] = loop(cfg, X, Y, args.steps, 32)
            best[name] = min(best[name], seconds)
            print(f"round {r + 1}: {name:<12} {args.steps / seconds:8,.0f} steps/s")
    same = losses["bare"] == losses["bare+module"] == losses["train"]
    print(f"\nlesson 02's MLP, {args.steps:,} steps of batch 32, one thread, fastest of {args.rounds} rounds "
          f"(torch {torch.__version__}); identical losses in all three: {same}")
    for name in loops:
        sps = args.steps / best[name]
        extra = 100 * (best[name] / best["bare"] - 1)
        print(f"  {name:<12} {sps:8,.0f} steps/s   {extra:+6.1f}% time per step vs bare")


if __name__ == "__main__":
    main()
