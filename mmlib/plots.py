"""Plotting helpers the lessons share (lesson 01 onwards).

Figures are kept small on disk (modest size and dpi, PNG): a committed notebook should open
quickly on the web, and a 27x27 heatmap does not need 300 KB to be readable.
"""

from __future__ import annotations

import math
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


def spread_labels(labels: Sequence[plt.Annotation], spots: Sequence[tuple[float, float]]) -> None:
    """Move each annotation's text to the first of `spots` (offsets in points from its point) where it covers
    no label placed before it, or to the last spot when none is free. Positions are measured on the figure
    as it is laid out (lesson 02's embedding labels, the course's results plot)."""
    from matplotlib.text import Text

    if not labels:
        return
    fig = labels[0].figure
    fig.draw_without_rendering()          # the layout sets where the points are drawn
    renderer = fig.canvas.get_renderer()
    taken = []
    for label in labels:
        for spot in spots:
            label.xyann = spot
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer)     # the text alone, not its line to the point
            if not any(box.overlaps(other) for other in taken):
                break
        taken.append(box)


def label_points(ax: plt.Axes, xy: Sequence[tuple[float, float]], labels: Sequence[str],
                 **text_kw) -> None:
    """Write each label centred on its point (lesson 02's embedding plot); a label that would cover one
    already written moves to the nearest free spot around its point, joined to it by a thin line, so that
    two characters embedded almost at the same place both stay readable.

    Call it once the axes have their final limits and the figure its layout.
    """
    # centred first, then rings of eight directions (points), nearest first
    spots = [(0.0, 0.0)] + [(r * dx, r * dy) for r in (10, 16, 24)
                            for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))]
    texts = [ax.annotate(label, (x, y), xytext=(0, 0), textcoords="offset points", ha="center", va="center",
                         arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.4"}, **text_kw)
             for (x, y), label in zip(xy, labels)]
    spread_labels(texts, spots)
    for text in texts:
        text.arrow_patch.set_visible(tuple(text.xyann) != (0.0, 0.0))   # a line only to a label that moved


def compact_png(fig: plt.Figure, colors: int = 32, *, tight: bool = True) -> bytes:
    """`fig` as a PNG with a palette of `colors` colours: a fifth of the bytes, no visible loss
    for heatmaps and line plots (they hold few distinct colours anyway).

    `tight` crops or widens the picture to what the figure draws, as JupyterLab's own inline figures
    are, so no axis label or title is ever cut at the edge; the explorers keep a fixed size instead
    (False), so that their picture does not jump as a slider moves.
    """
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", **({"bbox_inches": "tight", "pad_inches": 0.05} if tight else {}))
    img = Image.open(buf).convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def show_compact(fig: plt.Figure, colors: int = 32) -> None:
    """Display `fig` in the notebook as a compact PNG (see `compact_png`) and close it."""
    from IPython.display import Image, display

    display(Image(data=compact_png(fig, colors)))
    plt.close(fig)


def layout_problems(fig: plt.Figure, *, tight: bool = False) -> list[str]:
    """What a reader could not read in `fig`: text that two labels draw over each other, and (unless the
    figure is saved `tight`, which widens the picture to its text) text that runs off the figure.

    Only the text matplotlib actually draws counts (tick labels outside the axes' limits are not drawn);
    each problem is one line naming the texts. An empty list: every label is readable.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
    from matplotlib.text import Text

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    drawn = []
    original = RendererAgg.draw_text

    def record(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if mtext is not None and s.strip():
            drawn.append(mtext)
        return original(self, gc, x, y, s, prop, angle, ismath, mtext)

    RendererAgg.draw_text = record
    try:
        fig.draw(renderer)
    finally:
        RendererAgg.draw_text = original
    boxes, seen = [], set()
    for t in drawn:
        if id(t) not in seen:
            seen.add(id(t))
            # Text's own extent: an annotation's would include its arrow, which may cross other labels' space
            boxes.append((t.get_text().replace("\n", " ")[:40], Text.get_window_extent(t, renderer)))
    problems = []
    if not tight:
        width, height = fig.bbox.width, fig.bbox.height
        for text, b in boxes:
            if b.x0 < -0.5 or b.y0 < -0.5 or b.x1 > width + 0.5 or b.y1 > height + 0.5:
                problems.append(f"{text!r} runs off the figure ({b.x0:.0f}..{b.x1:.0f} x {b.y0:.0f}..{b.y1:.0f} "
                                f"px of {width:.0f} x {height:.0f})")
    for i, (text_a, a) in enumerate(boxes):
        for text_b, b in boxes[i + 1:]:
            # more than a pixel each way: glyph boxes of neighbouring lines may touch
            if min(a.x1, b.x1) - max(a.x0, b.x0) > 1 and min(a.y1, b.y1) - max(a.y0, b.y0) > 1:
                problems.append(f"{text_a!r} and {text_b!r} overlap")
    return problems


# ---- lesson 00: an expression graph of scalar Values ---------------------------------------------------

GRAPH_FONT = 8.0                  # points; every size below is in inches, so boxes fit their text at any graph size
_CHAR = 0.6 * GRAPH_FONT / 72     # the advance of one character of a monospace font, in inches
_ROW, _OP_GAP, _PAD = 0.55, 0.75, 0.15


def _node_text(v) -> str:
    label = getattr(v, "label", "")
    return f"{label + ' | ' if label else ''}data {v.data:.4f} | grad {v.grad:.4f}"


def graph_layout(root) -> dict:
    """Where `draw_graph` puts each node of `root`'s expression graph, left (inputs) to right (`root`), in inches.

    Works on any value with `data`, `grad`, `_prev`, `_op` (and optionally `label`): `mmlib.micrograd.Value`
    or the one lesson 00 builds in its cells. A node's column is the length of the longest path from an
    input to it, so every edge points right; within a column, nodes sit near the mean height of the nodes
    they connect to (a few sweeps each way), at least one row apart. Returns {"nodes": [(value, x, y)],
    "ops": [(value, x, y)] (the operation that made each non-input value), "width", "height"}.
    """
    from mmlib.micrograd import topological_order

    order = topological_order(root)
    rank: dict[int, int] = {}
    for v in order:
        rank[id(v)] = 1 + max((rank[id(c)] for c in v._prev), default=-1)
    n_cols = max(rank.values()) + 1
    col_width = [0.0] * n_cols
    for v in order:
        col_width[rank[id(v)]] = max(col_width[rank[id(v)]], len(_node_text(v)) * _CHAR + 2 * _PAD)
    x_left = [0.0] * n_cols
    for c in range(1, n_cols):
        x_left[c] = x_left[c - 1] + col_width[c - 1] + _OP_GAP
    columns: list[list] = [[] for _ in range(n_cols)]
    for v in order:
        columns[rank[id(v)]].append(v)
    y = {id(v): float(i) for col in columns for i, v in enumerate(col)}
    parents: dict[int, list] = {id(v): [] for v in order}
    for v in order:
        for c in v._prev:
            parents[id(c)].append(v)

    def settle(col: list, ideal) -> None:
        col.sort(key=ideal)
        last = -math.inf
        for v in col:
            y[id(v)] = max(ideal(v), last + 1.0)
            last = y[id(v)]

    for _ in range(3):
        for col in reversed(columns[:-1]):            # right to left: a node near the nodes it feeds
            settle(col, lambda v: sum(y[id(p)] for p in parents[id(v)]) / len(parents[id(v)]))
        for col in columns[1:]:                       # left to right: a node near the nodes it is made from
            settle(col, lambda v: sum(y[id(c)] for c in v._prev) / len(v._prev))
    low = min(y.values())
    nodes = [(v, x_left[rank[id(v)]] + col_width[rank[id(v)]] / 2, (y[id(v)] - low) * _ROW) for v in order]
    ops = [(v, x_left[rank[id(v)]] - _OP_GAP / 2, (y[id(v)] - low) * _ROW) for v in order if v._prev]
    return {"nodes": nodes, "ops": ops, "width": x_left[-1] + col_width[-1],
            "height": (max(y.values()) - low) * _ROW}


def draw_graph(root, fig: plt.Figure | None = None, title: str = "") -> plt.Figure:
    """The expression graph of `root`: a box per value (its label, data and grad), a circle per operation.

    Pure matplotlib (no graphviz binary), so it draws the same in JupyterLab, in CI and on the website.
    Inputs (values made from nothing: data and parameters) are blue. `fig` (an explorer's, redrawn in
    place) is cleared and resized to the graph; without it a new pyplot figure is made (show it with
    `show_compact`). The layout is `graph_layout`'s.
    """
    layout = graph_layout(root)
    margin = 0.2
    width, height = layout["width"] + 2 * margin, layout["height"] + 2 * margin + (0.3 if title else 0)
    if fig is None:
        fig = plt.figure(figsize=(width, max(height, 0.8)))
    else:
        fig.clear()
        fig.set_size_inches(width, max(height, 0.8))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-margin, width - margin)
    ax.set_ylim(height - margin, -margin - (0.3 if title else 0))   # y grows downwards: the first row on top
    ax.axis("off")
    where = {id(v): (x, y) for v, x, y in layout["nodes"]}
    half = {id(v): len(_node_text(v)) * _CHAR / 2 + _PAD / 2 for v, _, _ in layout["nodes"]}
    line = {"arrowstyle": "-|>", "lw": 0.8, "color": "0.35", "shrinkA": 0, "shrinkB": 0}
    for v, x, y in layout["ops"]:
        ax.annotate(v._op, (x, y), ha="center", va="center", fontsize=GRAPH_FONT, family="monospace",
                    bbox={"boxstyle": "circle,pad=0.25", "fc": "#fff7e6", "ec": "0.35", "lw": 0.8}, zorder=3)
        ax.annotate("", (where[id(v)][0] - half[id(v)], y), (x + 0.12, y), arrowprops=line, zorder=1)
        uses: dict[int, int] = {}
        for c in v._prev:
            cx, cy = where[id(c)]
            m = sum(p is c for p in v._prev)
            if m == 1:
                ax.annotate("", (x - 0.14, y), (cx + half[id(c)], cy), arrowprops=line, zorder=1)
                continue
            # A value used m times by one operation (a + a) gets m edges: they leave its box and enter the
            # circle at heights spread apart, and bow away from each other, so each one shows on its own
            k = uses[id(c)] = uses.get(id(c), -1) + 1
            dy = (k - (m - 1) / 2) * 0.1
            bend = "arc3,rad=" + str(-0.6 if dy < 0 else 0.6 if dy > 0 else 0)
            ax.annotate("", (x - 0.12, y + dy), (cx + half[id(c)], cy + dy), zorder=1,
                        arrowprops={**line, "connectionstyle": bend})
    for v, x, y in layout["nodes"]:
        ax.text(x, y, _node_text(v), ha="center", va="center", fontsize=GRAPH_FONT, family="monospace", zorder=2,
                bbox={"boxstyle": "round,pad=0.3", "fc": "#dbeafe" if not v._prev else "#f3f4f6", "ec": "0.35",
                      "lw": 0.8})
    if title:
        ax.text(-margin + 0.05, -margin - 0.15, title, ha="left", va="center", fontsize=GRAPH_FONT + 1)
    return fig
