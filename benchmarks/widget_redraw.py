"""How long lesson 03's initialisation explorer takes to redraw when its gain slider moves.

    python benchmarks/widget_redraw.py [--rounds 5]

The explorer as lesson 03 builds it: 256 contexts of the course's names (context 3, each character a random
10-dim embedding, so 30 inputs), a 5-layer tanh network of 100 units. Each move of the gain slider rebuilds the
network and draws its statistics (forward, backward, histograms); the lesson's redraw cell moves it through the
same five gains as here and prints the mean. A redraw should feel live, well under a second; this is where that
is measured (the tests check only that the moves happened). Each round moves the slider through the five gains;
the report is each gain's fastest round, so a busy moment of the machine does not decide it. One CPU thread,
as the lessons use. A figure, not a test: timings belong to the machine they were measured on.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")   # no window: the figure is drawn, as in a notebook, and not shown

import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
import torch  # noqa: E402

from mmlib.data import build_splits, load_words  # noqa: E402
from mmlib.vocab import Vocab  # noqa: E402
from mmlib.widgets import init_explorer  # noqa: E402

SEED = 2147483647                       # lesson 03's seed
GAINS = (0.5, 1.0, 3.0, 5.0, 5 / 3)     # the moves of lesson 03's redraw cell


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    words = load_words()
    vocab = Vocab.from_words(words)
    Xtr, Ytr = build_splits(words, vocab, 3)["train"]
    ix = torch.randint(0, Xtr.shape[0], (256,), generator=torch.Generator().manual_seed(SEED))
    C = torch.randn(len(vocab), 10, generator=torch.Generator().manual_seed(SEED))
    explorer = init_explorer(C[Xtr[ix]].view(len(ix), -1), Ytr[ix], len(vocab), gain=5 / 3, depth=5, width=100)
    best = {gain: float("inf") for gain in GAINS}
    for r in range(args.rounds):
        times = {}
        for gain in GAINS:
            explorer.gain.value = round(gain, 2)
            times[gain] = explorer.redraw_seconds
            best[gain] = min(best[gain], times[gain])
            plt.close("all")
        print(f"round {r + 1}: " + "  ".join(f"gain {g:.2f} {1000 * t:4.0f} ms" for g, t in times.items()))
    print(f"\nlesson 03's init explorer (256 x 30 inputs, 5 tanh layers of 100), fastest of {args.rounds} rounds "
          f"(torch {torch.__version__}): mean {1000 * sum(best.values()) / len(best):.0f} ms per redraw, "
          f"slowest gain {1000 * max(best.values()):.0f} ms")


if __name__ == "__main__":
    main()
