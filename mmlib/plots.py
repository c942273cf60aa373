"""Plotting helpers the lessons share (lesson 01 onwards).

Figures are kept small on disk (modest size and dpi, PNG): a committed notebook should open
quickly on the web, and a 27x27 heatmap does not need 300 KB to be readable.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch


def use_course_style() -> None:
    """Matplotlib defaults for every lesson: small PNG figures, readable fonts."""
    plt.rcParams.update({
        "figure.figsize": (6, 3.5),
        "figure.dpi": 80,
        "savefig.dpi": 80,
        "font.size": 9,
        "axes.grid": True,
        "grid.alpha": 0.3,
    })


def plot_bigram_counts(N: torch.Tensor, itos: Sequence[str], size: float = 10.0) -> plt.Figure:
    """The count matrix as a heatmap: row = first character, column = the one after it.

    Each cell shows its count; the colour is on a log scale so that rare pairs stay visible
    next to the thousands of `a.` and `n.` endings.
    """
    n = N.shape[0]
    if N.shape != (n, n) or len(itos) != n:
        raise ValueError(f"expected a square ({len(itos)}, {len(itos)}) count matrix, got {tuple(N.shape)}")
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow((N.float() + 1).log().numpy(), cmap="Blues")
    ax.grid(False)
    ax.set_xticks(range(n), list(itos))
    ax.set_yticks(range(n), list(itos))
    ax.tick_params(length=0, labeltop=True, labelbottom=False)
    ax.set_xlabel("next character")
    ax.set_ylabel("first character")
    top = N.max().item()
    for i in range(n):
        for j in range(n):
            c = int(N[i, j])
            if c:
                ax.text(j, i, c, ha="center", va="center", fontsize=6,
                        color="white" if c > top ** 0.75 else "black")
    fig.tight_layout()
    return fig


def plot_loss(losses: Sequence[float] | torch.Tensor, *, log: bool = False, smooth: int = 1,
              label: str = "train", ax: plt.Axes | None = None) -> plt.Axes:
    """A training curve; `smooth` averages each run of that many steps (minibatch losses are noisy)."""
    y = torch.as_tensor(losses, dtype=torch.float32).flatten()
    if log:
        y = y.log10()
    if smooth > 1:
        y = y[: len(y) // smooth * smooth].view(-1, smooth).mean(1)
    x = torch.arange(len(y)) * smooth
    ax = ax or plt.subplots()[1]
    ax.plot(x.numpy(), y.numpy(), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("log10 loss" if log else "loss")
    return ax


def compact_png(fig: plt.Figure, colors: int = 32) -> bytes:
    """`fig` as a PNG with a palette of `colors` colours: a fifth of the bytes, no visible loss
    for heatmaps and line plots (they hold few distinct colours anyway)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    img = Image.open(buf).convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def show_compact(fig: plt.Figure, colors: int = 32) -> None:
    """Display `fig` in the notebook as a compact PNG (see `compact_png`) and close it."""
    from IPython.display import Image, display

    display(Image(data=compact_png(fig, colors)))
    plt.close(fig)
