"""Draw the course's static figures with matplotlib (no downloads, no data files).

    python images/make_images.py                 # rewrite images/*.png
    python images/make_images.py --out DIR       # write them somewhere else (tests/test_images.py)

A lesson links a figure from its solution notebook as `![...](../../images/NAME.png)`; the learner
notebook built from it gets `../images/NAME.png` (see mmlib/learner_notebooks.py and images/README.md).

- `mlp_architecture.png` (lesson 02): the character-level MLP of Bengio et al. (2003) as the lesson
  builds it - three context characters, one shared embedding table `C`, concatenation, a tanh hidden
  layer, a softmax over the 27 characters, and the paper's optional direct connections.
- `activations.png` (lesson 03): tanh, ReLU and sigmoid with their derivatives, tanh's saturated
  regions marked.
- `wavenet.png` (lesson 05): left, the tree the lesson's WaveNet builds over one window of 8
  characters, neighbours fused two at a time, with each level's layers and shapes; right, the same
  network as causal dilated convolutions (dilation 1, 2, 4) computing every position of a name,
  the tree of one position picked out (after van den Oord et al. 2016, figure 3, redrawn).

The output is deterministic: fixed matplotlib settings (rcParams reset, matplotlib's own DejaVu
fonts), no random numbers except from a seeded generator, and palette PNGs (as
`mmlib.plots.compact_png` makes, but see `palette_png` for the one difference), which keeps each
file small.
"""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure  # no pyplot: no backend, no window, no global figure list
from matplotlib.patches import Circle, FancyArrowPatch, Rectangle
from PIL import Image

HERE = Path(__file__).resolve().parent
MAX_BYTES = 60_000  # per figure: they are committed and shown in notebooks
COLORS = 64         # palette size: the diagram's fills and anti-aliased text need more than 32

ITOS = [".", *"abcdefghijklmnopqrstuvwxyz"]  # the course vocabulary (mmlib.vocab): "." is index 0
STYLE = {
    "font.family": "DejaVu Sans",  # matplotlib ships it, so every machine draws the same glyphs
    "font.size": 10,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "savefig.facecolor": "white",
    "axes.grid": False,
}

# one colour per role, reused across both figures
INK = "#222222"
MUTED = "#666666"
BLUE = "#1f77b4"
ORANGE = "#e07b00"
GREEN = "#2a9d55"
RED = "#c0392b"
PURPLE = "#7b4fa6"


def tanh_saturation_edge(slope: float = 0.02) -> float:
    """The |x| beyond which tanh'(x) = 1 - tanh(x)^2 drops below `slope` (2.64 for 0.02).

    There |tanh(x)| = sqrt(1 - slope) (0.99 for 0.02): lesson 03's "|h| > 0.99" saturation test.
    """
    return math.atanh(math.sqrt(1 - slope))


# ---- lesson 02: the MLP -------------------------------------------------------------------------

def _cells(ax, x0: float, y: float, values, size: float, cmap, edge: str | None = None, lw: float = 1.6):
    """A row of small squares coloured by `values` (an embedding vector), outlined in `edge`."""
    for i, v in enumerate(values):
        ax.add_patch(Rectangle((x0 + i * size, y), size, size, facecolor=cmap(v), edgecolor="white", lw=0.6))
    if edge:
        ax.add_patch(Rectangle((x0, y), size * len(values), size, fill=False, edgecolor=edge, lw=lw))


def _arrow(ax, a, b, color=MUTED, lw=1.2, ls="-", rad=0.0):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, color=color, lw=lw, ls=ls,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=2, shrinkB=2))


LABEL_X = 106  # the right-hand column: what each layer computes, and its shape


def _label(ax, y, text, shape):
    """A layer's name and formula in the right-hand column, its tensor shape under them."""
    ax.text(LABEL_X, y + 0.8, text, ha="left", va="center", fontsize=9.5, color=INK, linespacing=1.25)
    ax.text(LABEL_X, y - 4.0, shape, ha="left", va="center", fontsize=8.5, color=MUTED, family="DejaVu Sans Mono")


def draw_mlp() -> Figure:
    """The lesson 02 network, bottom to top, for the example context "emm" -> next character "a"."""
    rng = np.random.default_rng(3)           # the embedding colours: any fixed numbers will do
    C = rng.integers(1, 7, size=(27, 10)) / 7  # six shades are enough to see the rows differ (and compress)
    cmap = matplotlib.colormaps["PuBu"]
    context, target = "emm", "a"
    ix = [ITOS.index(c) for c in context]
    char_color = {"e": ORANGE, "m": GREEN}

    fig = Figure(figsize=(10.0, 6.9))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 145)
    ax.set_ylim(0, 100)
    ax.axis("off")
    ax.text(72.5, 96, "A character-level MLP (Bengio et al. 2003), as built in lesson 02",
            ha="center", va="center", fontsize=13, weight="bold", color=INK)

    # 1. the context: three character ids
    s = 2.0                                   # one embedding cell's side
    x_strip = [33 + k * 22.5 for k in range(3)]
    y_in = 3.0
    for k, (c, i) in enumerate(zip(context, ix)):
        cx = x_strip[k] + 5 * s
        ax.add_patch(Rectangle((cx - 3.6, y_in), 7.2, 6.5, facecolor="white", edgecolor=char_color[c], lw=1.8))
        ax.text(cx, y_in + 4.1, f"'{c}'", ha="center", va="center", fontsize=11, color=INK)
        ax.text(cx, y_in + 1.5, f"id {i}", ha="center", va="center", fontsize=7.5, color=MUTED)
    _label(ax, y_in + 4.5, 'context: 3 characters ("emm"),\nas ids from the vocabulary', "X: (B, 3)")

    # 2. the shared table C and the three look-ups
    tx, ty, ts = 4.0, 4.0, 1.3                # table origin and cell size
    for r in range(27):
        y = ty + (26 - r) * ts
        for j in range(10):
            ax.add_patch(Rectangle((tx + j * ts, y), ts, ts, facecolor=cmap(C[r, j]), edgecolor="white", lw=0.3))
        ax.text(tx - 0.7, y + ts / 2, ITOS[r], ha="right", va="center", fontsize=6, color=MUTED,
                family="DejaVu Sans Mono")
    for c in set(context):
        r = ITOS.index(c)
        ax.add_patch(Rectangle((tx, ty + (26 - r) * ts), 10 * ts, ts, fill=False, edgecolor=char_color[c], lw=1.6))
    ax.text(tx - 2.5, ty + 27 * ts + 1.5,
            "table C: 27 × 10,\none row per character,\nshared by all 3 positions;\nhere rows 5 ('e') and 13 ('m')\n"
            "are read",
            ha="left", va="bottom", fontsize=8.5, color=INK)

    y_emb = 19.0
    for k, (c, i) in enumerate(zip(context, ix)):
        _cells(ax, x_strip[k], y_emb, C[i], s, cmap, edge=char_color[c])
        _arrow(ax, (x_strip[k] + 5 * s, y_in + 6.5), (x_strip[k] + 5 * s, y_emb), color=char_color[c])
        ax.text(x_strip[k] + 5 * s + 1.2, (y_in + 6.5 + y_emb) / 2, f"C[{i}]", ha="left", va="center",
                fontsize=8.5, color=char_color[c])
    _label(ax, y_emb + s / 2, "embed: look up each character's\nrow of C, 10 numbers each", "C[X]: (B, 3, 10)")

    # 3. concatenation
    y_cat = 33.0
    x_cat0 = 33.0 + 2.5
    for k, i in enumerate(ix):
        _cells(ax, x_cat0 + k * 10 * s, y_cat, C[i], s, cmap)
    ax.add_patch(Rectangle((x_cat0, y_cat), 30 * s, s, fill=False, edgecolor=INK, lw=1.2))
    for k in range(3):
        _arrow(ax, (x_strip[k] + 5 * s, y_emb + s), (x_cat0 + (k * 10 + 5) * s, y_cat), color=MUTED, lw=0.9)
    x_cat1 = x_cat0 + 30 * s
    _label(ax, y_cat + s / 2, "concatenate the three vectors\nemb = C[X].view(B, 30)", "emb: (B, 30)")

    # 4. the hidden layer: tanh units (12 drawn of 200)
    y_h = 51.0
    n_draw, r_h = 13, 1.7
    xs_h = np.linspace(x_cat0 + 2, x_cat1 - 2, n_draw)
    for j in range(1, 30, 5):
        for x in xs_h:
            ax.plot([x_cat0 + (j + 0.5) * s, x], [y_cat + s, y_h - r_h], color="#c6dbef", lw=0.5, zorder=0)
    for k, x in enumerate(xs_h):
        if k == n_draw - 3:
            ax.text(x, y_h, "···", ha="center", va="center", fontsize=11, color=INK)
            continue
        ax.add_patch(Circle((x, y_h), r_h, facecolor="#dbe9f6", edgecolor=BLUE, lw=1.2, zorder=2))
        xx = np.linspace(-1.0, 1.0, 20)       # a tiny tanh curve inside each unit
        ax.plot(x + xx, y_h + 0.8 * np.tanh(3 * xx), color=BLUE, lw=0.9, zorder=3)
    _label(ax, y_h, "hidden layer: 200 tanh units\nh = tanh(emb @ W1 + b1)", "h: (B, 200)")

    # 5. the output layer: 27 logits
    y_o = 67.0
    xs_o = np.linspace(x_cat0 - 1, x_cat1 + 1, 27)
    for x in xs_h:
        for xo in xs_o[1::5]:
            ax.plot([x, xo], [y_h + r_h, y_o - 1.0], color="#ddd0ea", lw=0.5, zorder=0)
    for xo in xs_o:
        ax.add_patch(Rectangle((xo - 0.85, y_o - 1.0), 1.7, 2.0, facecolor="#e9dff3", edgecolor=PURPLE, lw=0.8,
                               zorder=2))
    _label(ax, y_o, "output layer: one logit per character\nlogits = h @ W2 + b2", "logits: (B, 27)")

    # 6. softmax: a probability for every next character; the loss reads the true one
    y_p = 77.0
    probs = rng.uniform(0.5, 1.5, 27)         # a plausible guess after "emm": mostly vowels and endings
    for c, p in {"a": 14, "i": 7, "e": 5, "y": 4, ".": 3, "o": 2.5}.items():
        probs[ITOS.index(c)] = p
    probs /= probs.sum()
    hmax = 9.0 / probs.max()
    for k, (xo, p) in enumerate(zip(xs_o, probs)):
        hit = ITOS[k] == target
        ax.add_patch(Rectangle((xo - 0.85, y_p), 1.7, p * hmax, facecolor=RED if hit else "#b9a3cf",
                               edgecolor="none", zorder=2))
        ax.text(xo, y_p - 0.6, ITOS[k], ha="center", va="top", fontsize=7, family="DejaVu Sans Mono",
                color=RED if hit else MUTED, weight="bold" if hit else "normal")
    ax.plot([xs_o[0] - 1, xs_o[-1] + 1], [y_p, y_p], color=MUTED, lw=0.6)
    ia = ITOS.index(target)
    ax.annotate("the true next character is 'a':\nloss = −log P('a')", (xs_o[ia] + 1.0, y_p + probs[ia] * hmax - 0.8),
                (xs_o[ia] + 7, y_p + 12.0), fontsize=8.5, color=RED, va="center",
                arrowprops=dict(arrowstyle="-|>", color=RED, lw=0.9, mutation_scale=8))
    _label(ax, y_p + 4.5, "softmax: a probability for each\nnext character (F.cross_entropy)", "probs: (B, 27)")

    # the paper's optional direct connections: embeddings straight to the logits (on the left)
    _arrow(ax, (x_cat0 - 0.3, y_cat + s / 2), (xs_o[0] - 0.9, y_o), color=GREEN, lw=1.5, ls=(0, (4, 3)), rad=-0.35)
    ax.text(x_cat0 - 12.5, 61.5, "optional: direct\nconnections\nlogits += emb @ W3\n(Bengio et al. 2003)",
            ha="right", va="center", fontsize=8, color=GREEN)
    return fig


# ---- lesson 03: activation functions -------------------------------------------------------------

def draw_activations() -> Figure:
    """tanh, ReLU, sigmoid (solid) and their derivatives (dashed); where tanh stops passing gradient."""
    x = np.linspace(-4, 4, 801)
    sig = 1 / (1 + np.exp(-x))
    panels = [
        ("tanh", np.tanh(x), 1 - np.tanh(x) ** 2, BLUE, (-1.15, 1.15)),
        ("ReLU", np.maximum(x, 0), (x > 0).astype(float), ORANGE, (-0.6, 3.0)),
        ("sigmoid", sig, sig * (1 - sig), GREEN, (-0.12, 1.12)),
    ]
    edge = tanh_saturation_edge(0.02)
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 3)
    for ax, (name, f, df, color, ylim) in zip(axes, panels):
        ax.axhline(0, color="#999999", lw=0.7)
        ax.axvline(0, color="#999999", lw=0.7)
        ax.plot(x, f, color=color, lw=2.2, label=name)
        ax.plot(x, df, color=INK, lw=1.5, ls="--", label="its slope (derivative)")
        ax.set_xlim(-4, 4)
        ax.set_ylim(*ylim)
        ax.set_title(name, fontsize=12, weight="bold", color=color)
        ax.set_xlabel("x (pre-activation)")
        ax.grid(alpha=0.25)
    ax = axes[0]
    ax.legend(loc="upper left", fontsize=8, framealpha=0.95)
    for side in (-1, 1):
        lo, hi = sorted((side * edge, side * 4))
        ax.axvspan(lo, hi, color=RED, alpha=0.12, lw=0)
        ax.axvline(side * edge, color=RED, lw=0.9, ls=":")
    ax.text(2.05, -0.64, f"shaded: saturated\n|x| > {edge:.2f}, |tanh| > 0.99\n"
            "slope < 0.02: almost no\ngradient gets through", ha="center", va="center", fontsize=7.5, color=RED,
            bbox=dict(boxstyle="round,pad=0.3", facecolor="white", edgecolor="none", alpha=0.9))
    ax = axes[1]
    ax.legend(loc="upper left", fontsize=8, framealpha=0.95)
    ax.axvspan(-4, 0, color=RED, alpha=0.12, lw=0)   # the same shade as tanh's: no gradient here
    ax.text(-2, 1.1, "x < 0: slope exactly 0\n(a unit that is here for\nevery input is dead)",
            ha="center", va="center", fontsize=7.5, color=RED)
    ax = axes[2]
    ax.legend(loc="upper left", fontsize=8, framealpha=0.95)
    ax.annotate("slope at most 0.25", (0.05, 0.255), (1.0, 0.45), fontsize=7.5, color=INK, va="center",
                arrowprops=dict(arrowstyle="-|>", color=INK, lw=0.8, mutation_scale=8))
    fig.tight_layout()
    return fig


# ---- lesson 05: WaveNet -------------------------------------------------------------------------

def conv_inputs(level: int, t: int) -> list[int]:
    """The positions of level `level - 1` that a dilated causal convolution at `level` reads at `t`.

    Kernel size 2, dilation 2**(level - 1): the position itself and the one 2**(level - 1) before it.
    """
    return [t - 2 ** (level - 1), t]


def tree_nodes(t: int, levels: int) -> set[tuple[int, int]]:
    """Every (level, position) the output at position `t` of the top level depends on (its receptive tree)."""
    nodes, frontier = {(levels, t)}, [(levels, t)]
    while frontier:
        k, u = frontier.pop()
        if k:
            for v in conv_inputs(k, u):
                if (k - 1, v) not in nodes:
                    nodes.add((k - 1, v))
                    frontier.append((k - 1, v))
    return nodes


def draw_wavenet() -> Figure:
    """Left: one window as a tree of pairwise fusions; right: every position as dilated convolutions."""
    fig = Figure(figsize=(12.5, 5.4))
    left = fig.add_axes((0.0, 0.0, 0.5, 0.9))
    right = fig.add_axes((0.52, 0.0, 0.48, 0.9))
    fig.text(0.5, 0.955, "WaveNet (van den Oord et al. 2016) as lesson 05 builds it", ha="center", va="center",
             fontsize=13, weight="bold", color=INK)
    for ax in (left, right):
        ax.axis("off")
    colours = [MUTED, BLUE, GREEN, PURPLE]

    # left: one window of 8 characters, fused two at a time
    context, target = ".isabell", "a"
    ax = left
    ax.set_xlim(-1.2, 12.6)
    ax.set_ylim(-1.4, 5.1)
    ax.text(3.5, 4.85, "one window: a tree over 8 characters", ha="center", fontsize=11, color=INK, weight="bold")
    xs = {(0, i): float(i) for i in range(8)}
    for k in range(1, 4):
        for j in range(8 >> k):
            xs[k, j] = (xs[k - 1, 2 * j] + xs[k - 1, 2 * j + 1]) / 2
    for (k, j), x in xs.items():
        if k:
            for c in (2 * j, 2 * j + 1):
                ax.plot([xs[k - 1, c], x], [k - 1 + 0.22, k - 0.22], color=colours[k], lw=1.6, zorder=1)
    for (k, j), x in xs.items():
        if k == 0:
            ch = context[j]
            ax.text(x, 0, ch, ha="center", va="center", fontsize=12, family="DejaVu Sans Mono",
                    color=MUTED if ch == "." else INK,
                    bbox=dict(boxstyle="round,pad=0.3", facecolor="white", edgecolor="#bbbbbb"))
        else:
            seen = context[j * 2**k:(j + 1) * 2**k]
            ax.text(x, k, seen, ha="center", va="center", fontsize=8.5, family="DejaVu Sans Mono", color=INK,
                    bbox=dict(boxstyle="round,pad=0.3", facecolor="#f4f8fc", edgecolor=colours[k], lw=1.4))
    _arrow(ax, (xs[3, 0], 3.25), (xs[3, 0], 3.95), color=RED, lw=1.4)
    ax.text(xs[3, 0], 4.25, f"logits: next character '{target}'", ha="center", va="center", fontsize=9.5, color=RED)
    ax.text(3.5, -0.75, "context (B, 8) → embeddings (B, 8, 24)", ha="center", fontsize=8.5, color=MUTED,
            family="DejaVu Sans Mono")
    rows = [("level 1: pairs of characters",
             "FlattenConsecutive(2) → (B, 4, 48)\nLinear → BatchNorm → tanh: (B, 4, 128)"),
            ("level 2: pairs of pairs", "FlattenConsecutive(2) → (B, 2, 256)\nLinear → BatchNorm → tanh: (B, 2, 128)"),
            ("level 3: the whole window", "FlattenConsecutive(2) → (B, 256)\nLinear → BatchNorm → tanh: (B, 128)")]
    for k, (title, body) in enumerate(rows, 1):
        ax.text(8.1, k + 0.17, title, ha="left", va="center", fontsize=9, color=colours[k], weight="bold")
        ax.text(8.1, k - 0.25, body, ha="left", va="center", fontsize=7.5, color=MUTED, family="DejaVu Sans Mono",
                linespacing=1.3)
    ax.text(8.1, -0.1, "each node: a vector of 128\nunits that sees the characters\nwritten in it",
            ha="left", va="center", fontsize=8, color=INK)

    # right: every position, causal dilated convolutions
    ax = right
    seq = ".......isabella"                     # 7 start tokens, then the name: windows end at positions 7..
    T, levels = len(seq), 3
    out = T - 1                                 # the picked-out output: after "isabella", predicting "."
    tree = tree_nodes(out, levels)
    ax.set_xlim(-0.8, T + 1.8)
    ax.set_ylim(-1.4, 5.1)
    ax.text((T - 1) / 2, 4.85, "every position at once: causal dilated convolutions", ha="center", fontsize=11,
            color=INK, weight="bold")
    for k in range(1, levels + 1):
        for t in range(2 ** k - 1, T):
            for u in conv_inputs(k, t):
                if u >= 2 ** (k - 1) - 1:
                    on = (k, t) in tree
                    ax.plot([u, t], [k - 1, k], color=colours[k] if on else "#dddddd", lw=1.8 if on else 0.7,
                            zorder=2 if on else 1)
        ax.text(T - 0.4, k, f"dilation {2 ** (k - 1)}", ha="left", va="center", fontsize=8.5, color=colours[k])
    for k in range(levels + 1):
        for t in range(2 ** k - 1, T):
            on = (k, t) in tree
            ax.scatter([t], [k], s=70, facecolor=colours[k] if on else "white",
                       edgecolor=colours[k] if on else "#bbbbbb", lw=1.0, zorder=3)
    for t, ch in enumerate(seq):
        ax.text(t, -0.45, ch, ha="center", va="center", fontsize=10, family="DejaVu Sans Mono",
                color=INK if (0, t) in tree else MUTED)
    _arrow(ax, (out, 3.2), (out, 3.9), color=RED, lw=1.4)
    ax.text(out - 0.2, 4.25, "next: '.'", ha="right", va="center", fontsize=9.5, color=RED)
    ax.text((T - 1) / 2, -1.05, "each output sees the 8 characters ending at it; a node is computed once and shared\n"
            "by every output above it (the tree recomputes it for each window)", ha="center", va="center",
            fontsize=8, color=MUTED)
    return fig


def palette_png(fig: Figure, exact: int = 16, colors: int = COLORS) -> bytes:
    """`fig` as a PNG with a palette of `colors` colours (like `mmlib.plots.compact_png`).

    compact_png's median cut suits plots, but on these figures it merged small flat areas (the red
    target bar and the orange 'e' became one brown), and PIL's maximum-coverage quantizer turned the
    pale red shading peach. So the palette here is the `exact` most frequent colours of the
    figure, kept exactly (backgrounds, fills, shading), plus maximum-coverage colours for the
    rest (anti-aliased edges, text), and every pixel takes its nearest palette colour, computed
    here exactly (in a trial, PIL's own mapping onto a given palette left most pixels slightly off).
    No dithering, so flat areas stay flat and compress well.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    rgb = Image.open(buf).convert("RGB")
    a = np.asarray(rgb).astype(np.int64)
    packed = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
    values, where, counts = np.unique(packed.ravel(), return_inverse=True, return_counts=True)

    def unpack(v):
        return np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], axis=1)

    frequent = unpack(values[np.lexsort((values, -counts))[:exact]])  # ties broken by colour value
    rest = rgb.quantize(colors - exact, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
    palette = np.concatenate([frequent, np.array(rest.getpalette()[: 3 * (colors - exact)]).reshape(-1, 3)])
    distance = ((unpack(values)[:, None, :] - palette[None, :, :]) ** 2).sum(-1)  # (distinct colours, palette)
    index = distance.argmin(1)[where].reshape(packed.shape).astype(np.uint8)
    img = Image.fromarray(index, mode="P")
    img.putpalette(palette.astype(np.uint8).ravel().tolist())
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


FIGURES = {"mlp_architecture.png": draw_mlp, "activations.png": draw_activations, "wavenet.png": draw_wavenet}


def make_all(out_dir: Path = HERE) -> dict[str, int]:
    """Draw every figure into `out_dir`; returns each file's size in bytes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = {}
    with matplotlib.rc_context():
        matplotlib.rcdefaults()               # no matplotlibrc or course style leaks in
        matplotlib.rcParams.update(STYLE)
        for name, draw in FIGURES.items():
            fig = draw()
            data = palette_png(fig)
            (out_dir / name).write_bytes(data)
            sizes[name] = len(data)
    return sizes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Redraw the course figures (images/*.png).")
    ap.add_argument("--out", type=Path, default=HERE, help="folder to write into (default: images/)")
    args = ap.parse_args(argv)
    for name, n in make_all(args.out).items():
        flag = "" if n <= MAX_BYTES else f"  (over the {MAX_BYTES // 1000} KB limit)"
        print(f"{args.out / name}: {n / 1000:.1f} KB{flag}")


if __name__ == "__main__":
    main()
