"""Milliseconds per training step of the command line's transformer with AdamW, with Muon, and with torch's own Muon.

    python benchmarks/muon_step.py --threads 1 --rounds 10 --steps 20

Three copies of the recipe's transformer (same initialisation) train side by side on data/names.txt: AdamW
(`optimizer="adamw"`), `mmlib.train.Muon` (`optimizer="muon"`: the Newton-Schulz iteration in float32, matrices of
one shape together) and `torch.optim.Muon` (bfloat16, one matrix at a time) in its place. Each round runs `--steps`
steps of each in turn, so a change in the machine's load touches all three alike; printed: the median over the
rounds of each one's milliseconds per step (draw, forward, backward, update), and of its update alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmlib.cli.recipes import RECIPES  # noqa: E402
from mmlib.data import NAMES, build_splits, load_words, sequence_length  # noqa: E402
from mmlib.models import create  # noqa: E402
from mmlib.train import TrainConfig, make_optimizer, minibatch_rows, trim_padding  # noqa: E402
from mmlib.vocab import Vocab  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20, help="steps of each optimiser per round")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    recipe = RECIPES["transformer"]
    words = load_words(NAMES)
    vocab = Vocab.from_words(words)
    config = {**recipe.model, "block_size": sequence_length(words), "vocab_size": len(vocab)}
    X, Y = build_splits(words, vocab, config["block_size"], 42, per_position=True)["train"]
    runs = {}
    for name in ("adamw", "muon", "torch.optim.Muon"):
        model = create("transformer", generator=torch.Generator().manual_seed(42), **config)
        cfg = TrainConfig(**{**recipe.train, "optimizer": "muon" if name != "adamw" else "adamw", "progress": False})
        opt = make_optimizer(model, cfg)
        if name == "torch.optim.Muon":
            opt.muon = torch.optim.Muon(model.hidden_matrices(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                        adjust_lr_fn="match_rms_adamw")
        runs[name] = {"model": model, "opt": opt, "cfg": cfg, "step": 0, "g": torch.Generator().manual_seed(42),
                      "ms": [], "update_ms": []}
    for _ in range(args.rounds):
        for r in runs.values():
            total = update = 0.0
            for _ in range(args.steps):
                t0 = time.perf_counter()
                ix = minibatch_rows(r["step"], r["cfg"].batch_size, len(X), r["g"], "epochs")
                xb, yb = trim_padding(X[ix], Y[ix])
                _, loss = r["model"](xb, yb)
                r["opt"].zero_grad(set_to_none=True)
                loss.backward()
                t1 = time.perf_counter()
                r["opt"].step()
                t2 = time.perf_counter()
                total, update = total + t2 - t0, update + t2 - t1
                r["step"] += 1
            r["ms"].append(1e3 * total / args.steps)
            r["update_ms"].append(1e3 * update / args.steps)
    print(f"{args.threads} thread(s), {args.rounds} rounds of {args.steps} steps each, median ms per step:")
    for name, r in runs.items():
        ms, update = statistics.median(r["ms"]), statistics.median(r["update_ms"])
        print(f"  {name:17s} step {ms:7.1f} ms   update {update:7.1f} ms")


if __name__ == "__main__":
    main()
