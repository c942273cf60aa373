"""Fast recipes, measured: the command line's training recipes against the lectures', side by side in one run.

    python benchmarks/recipes.py                          # names.txt; about 15 minutes on 2 CPU cores
    flock /tmp/mm-heavy.lock python benchmarks/recipes.py  # a measured run (one at a time on a shared machine)
    python benchmarks/recipes.py --data data/cities.txt --scale 0.1

Three parts, one process, the same word file and split (seed 42) for all:

1. WaveNet, lecture 05's recipe (plain SGD, 200,000 steps of batch 32, lr 0.1 then 0.01 from step
   150,000) against the command line's recipe for it (`mmlib.cli.RECIPES["wavenet"]`: AdamW, warm-up,
   cosine decay, batches of 256): the lecture's final dev loss, and the training time the fast recipe
   needs to reach it (the first evaluation at or below it; evaluations every `--every` steps are not
   counted as training time). The ratio is the speed-up.
2. Every model at the command line's defaults (`makemore train --model NAME`): its best dev loss, the
   step and training time at which it got there, and the whole run's steps and time.
3. Sampling: words per second for each trained model (1,000 words drawn at once).

Printed figures, not a test: wall times depend on the machine and on what else runs on it. Each
recipe runs as it is used: the lecture's batch-32 steps on one thread (`--lecture-threads`, as lessons
02-05 run them: matrices of 32 rows gain nothing from a second thread), the command line's recipes on
`--threads` (default: PyTorch's own choice, every core, as `makemore train` runs them; large batches are
what can use them). `--threads 1` compares the two on one core each.
`--scale` multiplies every step budget (0.01 for a quick look that the script runs).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmlib.cli import MODEL_DEFAULTS, RECIPES  # noqa: E402
from mmlib.data import build_splits, load_words, sequence_length  # noqa: E402
from mmlib.models import MODELS, create  # noqa: E402
from mmlib.sample import sample_words  # noqa: E402
from mmlib.train import TrainConfig, TrainState, train  # noqa: E402
from mmlib.vocab import Vocab  # noqa: E402

LECTURE = {"optimizer": "sgd", "schedule": "step", "steps": 200_000, "batch_size": 32, "lr": 0.1, "lr_late": 0.01,
           "decay_step": 150_000}
"""Lecture 05's recipe for the WaveNet (the lecture's final model: 24-dim embeddings, 128 hidden, context 8)."""


def scaled(recipe: dict, scale: float) -> dict:
    r = dict(recipe)
    for k in ("steps", "decay_step", "warmup"):
        if r.get(k):
            r[k] = max(1, int(r[k] * scale))
    return r


def run(name: str, recipe: dict, words: list[str], vocab: Vocab, *, every: int, threads: int, seed: int = 42,
        target: float | None = None) -> dict:
    """Train `name` with `recipe`, evaluating dev every `every` steps; the curve, the best point, the time to `target`."""
    cls = MODELS[name]
    config = dict(MODEL_DEFAULTS.get(name, {}))
    if cls.per_position:
        config["block_size"] = sequence_length(words)
    model = create(name, generator=torch.Generator().manual_seed(seed), vocab_size=len(vocab), **config)
    block = model.block_size
    splits = build_splits(words, vocab, block, seed, per_position=cls.per_position)
    splits.pop("test")
    state = TrainState(torch.Generator().manual_seed(seed))
    curve: list[tuple[int, float, float]] = []      # (step, training seconds so far, dev loss)
    recipe = {k: v for k, v in recipe.items() if k not in ("eval_every", "eval_rows")}
    cfg = TrainConfig(**recipe, eval_every=every, eval_rows=None, seed=seed, threads=threads, progress=False)
    result = train(model, splits, cfg, state=state, on_eval=lambda step, losses: curve.append(
        (step, state.seconds, losses["dev"])))
    step, seconds, dev = min(curve, key=lambda c: c[2])
    reach = next(((s, t) for s, t, d in curve if target is not None and d <= target), None)
    return {"name": name, "model": model, "recipe": recipe, "curve": curve, "best_dev": dev, "best_step": step,
            "best_seconds": seconds, "steps": result.steps, "seconds": result.seconds, "final_dev": result.final["dev"],
            "reach": reach, "n_parameters": model.n_parameters()}


def samples_per_second(model, vocab: Vocab, n: int = 1000, repeats: int = 3) -> float:
    g = torch.Generator().manual_seed(0)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        sample_words(model, vocab, n, g=g)
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "names.txt"), help="the word file (default: data/names.txt)")
    ap.add_argument("--threads", type=int, default=None,
                    help="PyTorch CPU threads for the command line's recipes (default: PyTorch's, every core)")
    ap.add_argument("--lecture-threads", type=int, default=1,
                    help="PyTorch CPU threads for the lecture's recipe (default: 1, as the lessons run it)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every step budget by this (default: 1)")
    ap.add_argument("--every", type=int, default=200, help="evaluate dev every this many steps in the fast "
                    "runs (default: 200; the lecture run evaluates every 10,000)")
    ap.add_argument("--models", default=",".join(sorted(RECIPES, key=list(RECIPES).index)),
                    help="models for part 2 (default: all)")
    args = ap.parse_args()
    threads = torch.get_num_threads() if args.threads is None else args.threads
    words = load_words(args.data)
    vocab = Vocab.from_words(words)
    print(f"{args.data}: {len(words):,} words, {len(vocab)} characters; torch {torch.__version__}; "
          f"threads: lecture {args.lecture_threads}, command line {threads}; step budgets x{args.scale:g}\n", flush=True)

    every = lambda steps: max(1, min(args.every, steps // 5))  # noqa: E731

    lecture = scaled(LECTURE, args.scale)
    lec = run("wavenet", lecture, words, vocab, every=max(1, lecture["steps"] // 20), threads=args.lecture_threads)
    fast_recipe = scaled(RECIPES["wavenet"], args.scale)
    fast = run("wavenet", fast_recipe, words, vocab, every=every(fast_recipe["steps"]), threads=threads,
               target=lec["final_dev"])
    print("## 1. WaveNet: the lecture's recipe against the command line's\n")
    print("| recipe | steps x batch | dev loss | training time (s) |")
    print("|---|---|---|---|")
    print(f"| lecture 05: SGD, lr {lecture['lr']:g} then {lecture['lr_late']:g} from step {lecture['decay_step']:,} | "
          f"{lec['steps']:,} x {lecture['batch_size']} | {lec['final_dev']:.4f} | {lec['seconds']:.1f} |")
    fr = fast_recipe
    label = (f"makemore: AdamW lr {fr['lr']:g}, warm-up {fr['warmup']}, cosine to {fr['lr_min']:g}, "
             f"weight decay {fr['weight_decay']:g}")
    print(f"| {label} | {fast['steps']:,} x {fr['batch_size']} | {fast['final_dev']:.4f} | {fast['seconds']:.1f} |")
    if fast["reach"]:
        s, t = fast["reach"]
        print(f"\nThe fast recipe reaches the lecture's dev loss {lec['final_dev']:.4f} at step {s:,} after {t:.1f} s "
              f"of training: {lec['seconds'] / t:.1f}x less time than the lecture's {lec['seconds']:.1f} s.")
    else:
        print(f"\nThe fast recipe does NOT reach the lecture's dev loss {lec['final_dev']:.4f} "
              f"(best {fast['best_dev']:.4f}); whole-run ratio {lec['seconds'] / fast['seconds']:.1f}x.")

    print("\n## 2. Every model at the command line's defaults\n")
    print("| model | parameters | steps x batch | best dev | at step | time to best (s) | whole run (s) | steps/s | samples/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        recipe = scaled(RECIPES[name], args.scale)
        r = fast if name == "wavenet" else run(name, recipe, words, vocab, every=every(recipe["steps"]),
                                               threads=threads)
        sps = samples_per_second(r["model"], vocab)
        print(f"| {name} | {r['n_parameters']:,} | {r['steps']:,} x {recipe['batch_size']} | {r['best_dev']:.4f} | "
              f"{r['best_step']:,} | {r['best_seconds']:.1f} | {r['seconds']:.1f} | {r['steps'] / r['seconds']:.0f} | "
              f"{sps:,.0f} |", flush=True)
    print(f"\n(batch: examples for window models, words for sequence models; samples/s: 1,000 words drawn at once, "
          f"best of 3; the lecture-recipe WaveNet samples at {samples_per_second(lec['model'], vocab):,.0f}/s)")


if __name__ == "__main__":
    main()
