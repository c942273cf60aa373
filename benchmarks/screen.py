"""A quality screen of the transformer's recipe (issue 33): one run of the command line's recipe with settings changed.

    python benchmarks/screen.py --seed 42 --threads 1 --json benchmarks/results/screen33/base-42.json
    python benchmarks/screen.py --train optimizer=muon --model rotary=true --json ...

Trains `mmlib.cli.recipes.RECIPES["transformer"]` on `--words` as `benchmarks/recipes.py` does (`run`: the same split,
initialisation and minibatches for a seed), with `--train` and `--model` settings laid over the recipe's, and writes
the final dev loss, the dev curve, the training time and the machine's load average before and after. With a fixed
seed and thread count the dev loss does not depend on the machine's load; the time does.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recipes import load, run  # noqa: E402

from mmlib.cli.recipes import RECIPES  # noqa: E402
from mmlib.data import load_words  # noqa: E402
from mmlib.vocab import Vocab  # noqa: E402


def settings(pairs: list[str]) -> dict:
    """key=value pairs, each value a Python literal (true/false/none accepted)."""
    out = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        text = {"true": "True", "false": "False", "none": "None"}.get(text.lower(), text)
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", default=str(ROOT / "data" / "names.txt"))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--every", type=int, default=500, help="evaluate dev every this many steps")
    ap.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE", 
                    help="TrainConfig settings over the recipe's")
    ap.add_argument("--model", nargs="*", default=[], metavar="KEY=VALUE", help="model settings over the recipe's")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    recipe = RECIPES["transformer"]
    train_cfg, model_cfg = {**recipe.train, **settings(args.train)}, {**recipe.model, **settings(args.model)}
    words = load_words(args.words)
    start, t0 = load(), time.perf_counter()
    r = run("transformer", train_cfg, model_cfg, words, Vocab.from_words(words), every=args.every,
            threads=args.threads, seed=args.seed)
    out = {"command": " ".join(["python", *sys.argv]), "words": args.words, "seed": args.seed,
           "threads": args.threads, "train": train_cfg, "model": model_cfg, "dev": r["dev"], "seconds": r["seconds"],
           "wall": time.perf_counter() - t0, "load_start": start, "load_end": load(), "cpus": os.cpu_count(),
           "curve": r["curve"]}
    Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(f"dev {r['dev']:.4f} in {r['seconds']:.1f} s of training; load {start} -> {out['load_end']}")


if __name__ == "__main__":
    main()
