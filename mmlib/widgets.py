"""Interactive explorers for lessons 00, 03, 05 and 06: ipywidgets sliders, matplotlib histograms and heatmaps.

- `neuron_explorer()` (lesson 00): sliders for one tanh neuron's two inputs, two weights and bias; its
  expression graph redrawn with every node's value and gradient after `backward()`.
- `init_explorer(x, y, n_classes)`: sliders for the weight gain, depth and width of a stack of
  `Linear -> [BatchNorm1d] -> nonlinearity` blocks, a choice of nonlinearity (tanh, ReLU, none)
  and BatchNorm on/off. Each change builds the stack afresh, pushes one batch forwards and
  backwards, and redraws the per-layer activation and gradient histograms with their mean, std
  and saturation. Lesson 03 uses it to show what the initialisation does to a deep network.
- `training_explorer(recorder)`: a slider over the steps a `mmlib.diagnostics.Recorder` kept,
  showing the histograms and the update:data ratios at that step.
- `receptive_field_explorer(model, vocab)` (lesson 05): a name and a position in it; shows the
  WaveNet's tree over the characters it reads there - which characters every node of every level
  sees - and the model's most likely next characters at that position.
- `attention_explorer(model, vocab, name)` (lesson 06): a name, a layer and a head of a trained
  transformer; the head's attention weights as a heatmap, and where each position looks.
- `sampling_explorer(model, vocab, known)` (lesson 06): temperature and top-k sliders; the samples
  and the share of them that the training file does not hold.

The computation is separate from the drawing: `init_stats(...)`, `training_snapshot(...)`,
`receptive_field(...)`, `attention_map(...)`, `neuron_graph(...)` and `sample_summary(...)` are pure functions returning
the numbers (tests drive them, and the explorers' `.result`), and the explorers only draw what those
return. Each redraw prints one text line naming the slider values, then one line per layer, above the
plot, so a reader (or a browser test) can read the numbers.

Extreme settings are explained rather than hidden: gain 0 (all-zero activations), large gains
(saturation, overflow to inf) and the like add a `note:` line; histograms show finite values only.
"""

from __future__ import annotations

import base64
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mmlib.diagnostics import Recorder, Stats, describe, plot_distributions, plot_update_ratios
from mmlib.layers import NONLINEARITIES, build_stack, check_stack_settings, n_levels
from mmlib.plots import compact_png, draw_graph
from mmlib.runtime import device_of, eval_mode
from mmlib.validate import non_negative_int, positive_int
from mmlib.vocab import BOUNDARY, Vocab, no_boundary

# ---- the computation -----------------------------------------------------------------------------

@dataclass
class InitResult:
    """What one forward/backward pass through a freshly initialised stack looks like."""

    gain: float
    depth: int
    width: int
    nonlinearity: str
    batchnorm: bool
    loss: float
    activations: list[Stats]
    gradients: list[Stats]
    notes: list[str] = field(default_factory=list)

    def header(self) -> str:
        return (f"gain={self.gain:.2f} depth={self.depth} width={self.width} "
                f"nonlinearity={self.nonlinearity} batchnorm={'on' if self.batchnorm else 'off'} "
                f"| initial loss {self.loss:.4f}")

    def text(self) -> str:
        lines = [self.header(), "activations (output of each hidden block):"]
        lines += ["  " + s.line() for s in self.activations]
        lines += ["gradients (d loss / d that output):"]
        lines += ["  " + s.line() for s in self.gradients]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _notes(r: InitResult) -> list[str]:
    notes = []
    acts, grads = r.activations, r.gradients
    if not all(s.finite for s in acts + grads) or not math.isfinite(r.loss):
        notes.append("some values overflowed to inf or NaN; the histograms show only the finite values "
                     "and the loss cannot be trusted - lower the gain or the depth")
    zero = [s for s in acts if s.finite and s.std == 0 and s.mean == 0]
    if r.gain == 0:
        # Checked in tests/test_widgets.py against autograd: a hidden weight's gradient is
        # (its input)^T (its output gradient); below the last block the output gradient is 0
        # (it comes through a zero weight), and from block 2 on the input is 0.
        if r.nonlinearity == "relu":
            notes.append("gain 0: every hidden weight is zero, so every activation is exactly 0, and ReLU's "
                         "slope at 0 is 0: nothing in the hidden stack gets a gradient; only the output "
                         "layer's bias learns, and nothing depends on the input")
        elif r.depth == 1:
            notes.append("gain 0: the hidden weights are zero, so every activation is exactly 0 and the "
                         "output ignores the input for now; but the layer's input is the data, so its "
                         "weights get a gradient and can learn")
        else:
            notes.append("gain 0: every hidden weight is zero, so every activation is exactly 0 and no "
                         "hidden weight gets a gradient; the last block's bias and the output layer "
                         "still learn, but nothing depends on the input")
    elif zero:
        notes.append(f"{len(zero)} of {len(acts)} layers output exactly 0 everywhere")
    if r.nonlinearity == "tanh":
        worst = max((s.saturated or 0.0) for s in acts)
        if worst > 0.5:
            notes.append(f"up to {100 * worst:.0f}% of tanh units are saturated (|t| > 0.97): they pass almost "
                         "no gradient, so those neurons barely learn")
    if r.nonlinearity == "relu":
        worst = max((s.saturated or 0.0) for s in acts)
        if worst > 0.9:
            notes.append(f"up to {100 * worst:.0f}% of ReLU outputs are 0 (no gradient): the layer is nearly dead")
    if r.nonlinearity == "none" and r.depth > 1:
        notes.append("without a nonlinearity the whole stack is one linear map, however deep")
    g = [s.std for s in grads if s.finite and s.std > 0]
    if len(g) >= 2 and r.gain > 0:
        ratio = g[0] / g[-1]
        if ratio < 0.1:
            notes.append(f"gradients shrink {1 / ratio:.0f}x from the last hidden layer to the first (vanishing)")
        elif ratio > 10:
            notes.append(f"gradients grow {ratio:.0f}x from the last hidden layer to the first (exploding)")
    if r.batchnorm and r.gain > 0:
        notes.append("BatchNorm re-standardises every layer, so the gain hardly changes the statistics")
    return notes


@contextmanager
def _one_thread():
    """Run tiny tensor work on one thread: for a batch of a few hundred rows the threads' hand-offs
    cost more than they save, and on a busy 2-core machine they made a redraw 50x slower."""
    n = torch.get_num_threads()
    if n == 1:  # already (lesson 03 sets it): leave the thread pool alone
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def init_stats(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, gain: float = 5 / 3, depth: int = 5,
               width: int = 100, nonlinearity: str = "tanh", batchnorm: bool = False, seed: int = 0,
               bins: int = 40) -> InitResult:
    """Build a fresh stack with these settings, forward and backward the batch `(x, y)`, describe it.

    `x` is (B, n_in) float, `y` is (B,) class ids below `n_classes`. The same `seed` gives the same
    weights, so moving one slider changes only what that slider controls.
    """
    check_stack_settings(gain, depth, width, nonlinearity)
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a (batch, features) float tensor, got {getattr(x, 'shape', type(x))}")
    if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],) or y.is_floating_point():
        raise ValueError(f"y must hold one integer class per row of x ({x.shape[0]}), got {getattr(y, 'shape', y)}")
    if batchnorm and x.shape[0] < 2:
        raise ValueError("BatchNorm needs a batch of at least 2 examples")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"class ids must lie in 0..{n_classes - 1}")
    g = torch.Generator().manual_seed(seed)
    with _one_thread():
        layers, ends = build_stack(x.shape[1], n_classes, gain=gain, depth=depth, width=width,
                                   nonlinearity=nonlinearity, batchnorm=batchnorm, generator=g)
        h = x
        for layer in layers:
            h = layer(h)
        outs = [layers[i].out for i in ends]
        for o in outs:
            o.retain_grad()
        loss = F.cross_entropy(h, y)
        loss.backward()
        kind = None if nonlinearity == "none" else nonlinearity
        acts = [describe(f"layer {k + 1} {nonlinearity}", o, kind=kind, bins=bins) for k, o in enumerate(outs)]
        grads = [describe(f"layer {k + 1} {nonlinearity}", o.grad, bins=bins) for k, o in enumerate(outs)]
    r = InitResult(float(gain), depth, width, nonlinearity, bool(batchnorm), loss.item(), acts, grads)
    r.notes = _notes(r)
    return r


@dataclass
class Snapshot:
    """The recorded statistics of one training step (see `training_snapshot`)."""

    step: int
    loss: float
    activations: list[Stats]
    gradients: list[Stats]
    ud: dict[str, float]

    def text(self) -> str:
        lines = [f"step={self.step} | minibatch loss {self.loss:.4f}", "activations:"]
        lines += ["  " + s.line() for s in self.activations]
        lines += ["gradients:"] + ["  " + s.line() for s in self.gradients]
        lines += ["update:data log10: " + ", ".join(f"{n} {v:+.2f}" for n, v in self.ud.items())]
        return "\n".join(lines)


def training_snapshot(recorder: Recorder, step: int) -> Snapshot:
    """The statistics `recorder` kept at `step` (the nearest recorded step at or before it)."""
    if not len(recorder):
        raise ValueError("the recorder holds no steps: call recorder.record(...) in the training loop")
    i = max((k for k, s in enumerate(recorder.steps) if s <= step), default=0)
    s = recorder.steps[i]
    j = recorder.ud_steps.index(s)
    return Snapshot(s, recorder.losses[j], recorder.activations[i], recorder.gradients[i],
                    dict(zip(recorder.names, recorder.ud[j])))


# ---- the drawing -----------------------------------------------------------------------------------

def _png(fig: Figure) -> bytes:
    # a 64-colour palette PNG: a fraction of the bytes for the same render time, which keeps the
    # kernel-to-browser round trip short and the widget state saved in the notebook small
    FigureCanvasAgg(fig)  # attach a canvas: the figure is not managed by pyplot
    return compact_png(fig, 64, tight=False)


def _axes(fig: Figure, n: int) -> list:
    """The figure's `n` side-by-side axes, made once and cleared on later calls (cheaper than new ones)."""
    if len(fig.axes) != n:
        fig.clear()
        fig.subplots(1, n)
        fig.subplots_adjust(left=0.07, right=0.96, bottom=0.14, top=0.84, wspace=0.2)   # room for "25000", "0.00015"
    for ax in fig.axes:
        ax.cla()
    return fig.axes


def draw_init(result: InitResult, fig: Figure | None = None) -> Figure:
    """The activation and gradient histograms of an `InitResult`, side by side."""
    fig = fig or Figure(figsize=(10, 3.2), dpi=72)
    ax1, ax2 = _axes(fig, 2)
    plot_distributions(result.activations, ax1, "activation distribution")
    plot_distributions(result.gradients, ax2, "gradient distribution")
    ax2.locator_params(axis="x", nbins=6)  # gradients are ~1e-4: long tick labels would overlap
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.suptitle(result.notes[0][:120] if result.notes else result.header(), fontsize=8,
                 color="#9a3412" if result.notes else "black")
    return fig


def draw_snapshot(recorder: Recorder, snap: Snapshot, fig: Figure | None = None) -> Figure:
    fig = fig or Figure(figsize=(12, 3.2), dpi=72)
    ax1, ax2, ax3 = _axes(fig, 3)
    plot_distributions(snap.activations, ax1, f"activations at step {snap.step}")
    plot_distributions(snap.gradients, ax2, f"gradients at step {snap.step}")
    ax2.locator_params(axis="x", nbins=6)
    plot_update_ratios(recorder.ud, recorder.names, ax3, step=recorder.ud_steps.index(snap.step))
    ax3.set_xlabel("step")
    ticks = ax3.get_xticks()
    ax3.set_xticks(ticks, [str(recorder.ud_steps[int(t)]) if 0 <= t < len(recorder.ud_steps) else ""
                           for t in ticks])
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
    return fig


def text_png(text: str, fontsize: float = 11) -> bytes:
    """`text` in a monospace font on a figure just large enough for it, as a compact PNG: the picture
    of an explorer that shows text rather than a plot (the sampling explorer)."""
    lines = text.splitlines() or [""]
    # DejaVu Sans Mono's advance is 0.6 em; a line is ~1.25 em high; 0.15 inch margins all round
    width = max(map(len, lines)) * 0.6 * fontsize / 72 + 0.3
    height = len(lines) * 1.25 * fontsize / 72 + 0.3
    fig = Figure(figsize=(width, height), dpi=72)
    fig.text(0.15 / width, 1 - 0.15 / height, "\n".join(lines), family="monospace", fontsize=fontsize,
             va="top", ha="left", linespacing=1.25)
    return _png(fig)


class _Explorer:
    """Shared plumbing: an Output area that shows a text block and a PNG, redrawn in place.

    Displayed, an explorer offers two views of itself: the live widget, which JupyterLab draws while
    its kernel runs, and a PNG of what it shows now, which every reader without a kernel gets instead
    (a saved notebook opened untrusted or on GitHub, the course website) rather than the widget's
    `VBox(children=...)` text.
    """

    def __init__(self) -> None:
        import ipywidgets as widgets

        self.output = widgets.Output()
        self.redraw_seconds: float = math.nan
        self.box = None
        self.png: bytes | None = None

    def _show(self, text: str, fig: Figure) -> None:
        png = _png(fig)
        self.png = png
        self._publish(text, png)

    def _publish(self, text: str, png: bytes | None = None) -> None:
        """Replace what the Output area shows with `text` (and the PNG) in one state update from the kernel.

        Not `with self.output: print(...)`: that asks the client to capture the cell's output messages and
        send them back to the kernel on the shell channel, and a client that runs the notebook unattended
        (nbclient, under papermill or nbconvert) sends them on the socket where it awaits the cell's reply,
        through a path that can swallow the reply's wake-up: the run then waits forever (issue 15;
        jupyter/nbclient#312). Setting `outputs` is one message, kernel to client, nothing sent back.
        """
        outputs = [{"output_type": "stream", "name": "stdout", "text": text + "\n"}]
        if png is not None:
            outputs.append({"output_type": "display_data", "metadata": {},
                            "data": {"image/png": base64.b64encode(png).decode("ascii"),
                                     "text/plain": "<IPython.core.display.Image object>"}})
        self.output.outputs = tuple(outputs)

    def _repr_mimebundle_(self, **kwargs) -> dict:

        bundle = dict(self.box._repr_mimebundle_(**kwargs))
        # A frontend picks the richest type it may render: the widget where a kernel (or saved widget
        # state in a trusted notebook) can drive it, else this picture, never the widget's repr.
        bundle["image/png"] = base64.b64encode(self._picture()).decode("ascii")
        bundle["text/plain"] = self.result.text().splitlines()[0]
        return bundle

    def _picture(self) -> bytes:
        """The PNG of what the explorer shows now: its latest plot."""
        return self.png


class InitExplorer(_Explorer):
    """Sliders for gain/depth/width, toggles for the nonlinearity and BatchNorm, and the histograms.

    `.result` is the latest `InitResult`, `.redraw_seconds` how long the latest update took
    (compute and draw). Setting a widget's value (e.g. `explorer.gain.value = 3`) updates it.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_classes: int, *, gain: float = 5 / 3, depth: int = 5,
                 width: int = 100, nonlinearity: str = "tanh", batchnorm: bool = False, seed: int = 0):
        import ipywidgets as widgets

        super().__init__()
        self.x, self.y, self.n_classes, self.seed = x, y, n_classes, seed
        # computing once up front validates the settings and the batch before any widget exists
        self.result = init_stats(x, y, n_classes, gain=gain, depth=depth, width=width,
                                 nonlinearity=nonlinearity, batchnorm=batchnorm, seed=seed)
        style = {"description_width": "100px"}   # "nonlinearity" in full, the sliders aligned
        self.gain = widgets.FloatSlider(value=round(gain, 2), min=0.0, max=5.0, step=0.01, description="gain",
                                        continuous_update=False, readout_format=".2f", style=style)
        self.depth = widgets.IntSlider(value=depth, min=1, max=10, description="depth",
                                       continuous_update=False, style=style)
        self.width = widgets.IntSlider(value=width, min=10, max=500, step=10, description="width",
                                       continuous_update=False, style=style)
        self.nonlinearity = widgets.ToggleButtons(options=list(NONLINEARITIES), value=nonlinearity,
                                                  description="nonlinearity", style=style)
        self.batchnorm = widgets.Checkbox(value=batchnorm, description="batchnorm")
        for w in (self.gain, self.depth, self.width, self.nonlinearity, self.batchnorm):
            w.observe(self._changed, names="value")
        self.fig = Figure(figsize=(10, 3.2), dpi=72)
        self.box = widgets.VBox([widgets.HBox([self.gain, self.depth, self.width]),
                                 widgets.HBox([self.nonlinearity, self.batchnorm]), self.output])
        self.update()

    def _changed(self, change) -> None:
        self.update()

    def update(self) -> InitResult:
        """Recompute with the current widget values and redraw; returns the new `InitResult`."""
        t = time.perf_counter()
        self.result = init_stats(self.x, self.y, self.n_classes, gain=float(self.gain.value),
                                 depth=int(self.depth.value), width=int(self.width.value),
                                 nonlinearity=self.nonlinearity.value, batchnorm=bool(self.batchnorm.value),
                                 seed=self.seed)
        self._show(self.result.text(), draw_init(self.result, self.fig))
        self.redraw_seconds = time.perf_counter() - t
        return self.result


class TrainingExplorer(_Explorer):
    """A `step` slider over the steps a `Recorder` kept; shows histograms and update:data ratios there."""

    def __init__(self, recorder: Recorder):
        import ipywidgets as widgets

        super().__init__()
        if not len(recorder):
            raise ValueError("the recorder holds no steps: call recorder.record(...) in the training loop")
        self.recorder = recorder
        steps = recorder.steps
        stride = steps[1] - steps[0] if len(steps) > 1 else 1
        self.step = widgets.IntSlider(value=steps[0], min=steps[0], max=steps[-1], step=max(stride, 1),
                                      description="step", continuous_update=False)
        self.step.observe(lambda change: self.update(), names="value")
        self.fig = Figure(figsize=(12, 3.2), dpi=72)
        self.box = widgets.VBox([self.step, self.output])
        self.update()

    def update(self) -> Snapshot:
        t = time.perf_counter()
        self.result = training_snapshot(self.recorder, int(self.step.value))
        self._show(self.result.text(), draw_snapshot(self.recorder, self.result, self.fig))
        self.redraw_seconds = time.perf_counter() - t
        return self.result


def init_explorer(x: torch.Tensor | None = None, y: torch.Tensor | None = None, n_classes: int = 27,
                  **settings) -> InitExplorer:
    """The initialisation explorer (lesson 03); display the returned object to use it.

    `x` (B, n_in) and `y` (B,) are the batch it pushes through; without them, 256 examples of
    30 standard-normal features with random classes. `settings` are the starting values:
    gain, depth, width, nonlinearity ("tanh", "relu", "none"), batchnorm, seed.
    """
    if x is None or y is None:
        g = torch.Generator().manual_seed(settings.get("seed", 0))
        x = torch.randn(256, 30, generator=g)
        y = torch.randint(0, n_classes, (256,), generator=g)
    return InitExplorer(x, y, n_classes, **settings)


def training_explorer(recorded: Recorder) -> TrainingExplorer:
    """The training-statistics explorer (lesson 03): a slider over `recorded`'s steps."""
    return TrainingExplorer(recorded)


# ---- lesson 05: the receptive-field explorer ---------------------------------------------------------

@dataclass
class ReceptiveField:
    """What the WaveNet reads at one position of a name, level by level, and what it predicts there."""

    name: str
    position: int                      # 0..len(name): the index of the character being predicted
    context: str                       # the block_size characters the model reads, start tokens as "."
    spans: list[list[tuple[int, int]]]  # spans[k][j]: the first and last context index node j of level k sees
    target: str                        # the character that actually comes next ("." after the last one)
    top: list[tuple[str, float]] = field(default_factory=list)  # the model's most likely next characters
    p_target: float | None = None      # the probability the model gives `target`

    def seen(self, level: int, node: int) -> str:
        """The characters node `node` of level `level` sees (level 0: the inputs themselves)."""
        a, b = self.spans[level][node]
        return self.context[a:b + 1]

    def text(self) -> str:
        shown = self.name[:self.position] + "[" + self.target + "]"
        lines = [f"name {self.name!r}, position {self.position}: predicting {self.target!r} after {shown!r}; "
                 f"the model reads {self.context!r}"]
        for k in range(1, len(self.spans)):
            nodes = " ".join(f"{self.seen(k, j)!r}" for j in range(len(self.spans[k])))
            n = len(self.spans[k])
            lines.append(f"  level {k}: {n} node{'s, each' if n > 1 else ','} sees {2 ** k} characters: {nodes}")
        if self.top:
            lines.append("  next character: " + ", ".join(f"{c!r} {p:.3f}" for c, p in self.top)
                         + f" | P({self.target!r}) = {self.p_target:.3f}")
        return "\n".join(lines)


def receptive_field(name: str, position: int, block_size: int) -> ReceptiveField:
    """The tree over the context a window model of `block_size` reads to predict `name[position]`.

    The context is the `block_size` characters before the position, with start tokens `.` in front
    of the name (as `mmlib.data.build_dataset` makes the windows). Level 0 is the characters; node j
    of level k fuses nodes 2j and 2j + 1 of level k - 1, so it sees context characters
    j * 2**k ... (j + 1) * 2**k - 1. No model is needed: this is the shape of the tree.
    """
    levels = n_levels(block_size)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty word, got {name!r}")
    no_boundary("name", name)
    non_negative_int("position", position)
    if position > len(name):
        raise ValueError(f"position must be between 0 and {len(name)} (the end of {name!r}), got {position}")
    context = (BOUNDARY * block_size + name[:position])[-block_size:]
    spans = [[(j * 2**k, (j + 1) * 2**k - 1) for j in range(block_size >> k)] for k in range(levels + 1)]
    target = name[position] if position < len(name) else BOUNDARY
    return ReceptiveField(name, position, context, spans, target)


@torch.no_grad()
def receptive_field_view(model, vocab: Vocab, name: str, position: int, top_k: int = 5) -> ReceptiveField:
    """`receptive_field` for `model` (any window model), with its top-k next characters and P(target)."""
    rf = receptive_field(name, position, model.block_size)
    positive_int("top_k", top_k)
    vocab.encode(name)                     # a clear error for a character the model has never seen
    idx = torch.tensor([vocab.encode(rf.context)])       # "." is id 0, the start token
    with eval_mode(model):
        logits, _ = model(idx.to(device_of(model)))
    probs = torch.softmax(logits[0].float().cpu(), dim=0)
    p, ix = probs.topk(min(top_k, len(probs)))
    rf.top = [(vocab.itos[i], float(q)) for q, i in zip(p.tolist(), ix.tolist())]
    rf.p_target = float(probs[vocab.stoi[rf.target]])
    return rf


def draw_receptive_field(rf: ReceptiveField, fig: Figure | None = None) -> Figure:
    """The tree (left): each node labelled with the characters it sees; the top next characters (right)."""
    fig = fig or Figure(figsize=(10, 3.4), dpi=72)
    if len(fig.axes) != 2:
        fig.clear()
        fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.4, 1]})
        fig.subplots_adjust(left=0.07, right=0.97, bottom=0.14, top=0.88, wspace=0.15)
    ax, bar = fig.axes
    ax.cla()
    bar.cla()
    T, L = len(rf.context), len(rf.spans) - 1
    x = {(k, j): (a + b) / 2 for k, level in enumerate(rf.spans) for j, (a, b) in enumerate(level)}
    for (k, j), xk in x.items():           # edges to the two children
        if k:
            for c in (2 * j, 2 * j + 1):
                ax.plot([x[k - 1, c], xk], [k - 1, k], color="#9ecae1", lw=1.5, zorder=1)
    for (k, j), xk in x.items():
        seen = rf.seen(k, j)
        start = k == 0 and seen == BOUNDARY
        ax.text(xk, k, seen, ha="center", va="center", family="monospace", fontsize=11 if k == 0 else 9,
                color="#999999" if start else "black", zorder=3,
                bbox=dict(boxstyle="round,pad=0.25", facecolor="#f7fbff" if k else "white",
                          edgecolor="#3182bd" if k else "#bbbbbb"))
    ax.annotate("", (x[L, 0], L + 0.75), (x[L, 0], L + 0.2), arrowprops=dict(arrowstyle="-|>", color="#cf222e"))
    ax.text(x[L, 0], L + 0.95, f"next: {rf.target!r}", ha="center", va="center", color="#cf222e", fontsize=10)
    ax.set_xlim(-0.8, T - 0.2)
    ax.set_ylim(-0.6, L + 1.3)
    ax.set_yticks(range(L + 1), ["chars"] + [f"level {k}" for k in range(1, L + 1)])
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.grid(False)
    ax.set_title(f"{rf.name!r}, position {rf.position}: what each node sees", fontsize=10)
    if rf.top:
        shown = list(rf.top)
        if rf.target not in [c for c, _ in shown]:      # the true next character always gets a bar
            shown.append((rf.target, rf.p_target))
        chars = [c for c, _ in shown][::-1]
        ps = [p for _, p in shown][::-1]
        bar.barh(range(len(ps)), ps, color=["#cf222e" if c == rf.target else "#6baed6" for c in chars])
        bar.set_yticks(range(len(ps)), [repr(c) for c in chars], family="monospace")
        bar.set_xlim(0, 1)
        bar.set_title(f"model: P({rf.target!r}) = {rf.p_target:.3f}", fontsize=10)
        bar.set_xlabel("probability of the next character")
    else:
        bar.axis("off")
    return fig


class ReceptiveFieldExplorer(_Explorer):
    """A name box and a position slider; shows the receptive-field tree and the model's prediction there.

    `.result` is the latest `ReceptiveField`. Setting `explorer.name.value` or
    `explorer.position.value` updates it (the slider's range follows the name's length).
    """

    def __init__(self, model, vocab: Vocab, name: str = "isabella", position: int | None = None, top_k: int = 5):
        import ipywidgets as widgets

        super().__init__()
        self.model, self.vocab, self.top_k = model, vocab, top_k
        position = len(name) if position is None else position
        self.result = receptive_field_view(model, vocab, name, position, top_k)   # validates before drawing
        self.name = widgets.Text(value=name, description="name", continuous_update=False)
        self.position = widgets.IntSlider(value=position, min=0, max=len(name), description="position",
                                          continuous_update=False)
        self._renaming = False
        self.name.observe(self._renamed, names="value")
        self.position.observe(lambda change: None if self._renaming else self.update(), names="value")
        self.fig = Figure(figsize=(10, 3.4), dpi=72)
        self.box = widgets.VBox([widgets.HBox([self.name, self.position]), self.output])
        self.update()

    def _renamed(self, change) -> None:
        self._renaming = True          # a shorter name clamps the slider: one redraw, not two
        try:
            self.position.max = max(1, len(self.name.value.strip()))
        finally:
            self._renaming = False
        self.update()

    def update(self) -> ReceptiveField | None:
        """Recompute for the current name and position and redraw; a name the model cannot read is explained."""
        t = time.perf_counter()
        try:
            self.result = receptive_field_view(self.model, self.vocab, self.name.value.strip(),
                                               min(int(self.position.value), len(self.name.value.strip())),
                                               self.top_k)
        except ValueError as e:
            self._publish(f"cannot show {self.name.value!r}: {e}")
            return None
        self._show(self.result.text(), draw_receptive_field(self.result, self.fig))
        self.redraw_seconds = time.perf_counter() - t
        return self.result


def receptive_field_explorer(model, vocab: Vocab, name: str = "isabella", position: int | None = None,
                             top_k: int = 5) -> ReceptiveFieldExplorer:
    """The receptive-field explorer (lesson 05); display the returned object to use it.

    `model` is a window model whose block size is a power of two (the WaveNet); `position` is the
    index of the character to predict (None: the end of the name, where the model should say ".").
    """
    return ReceptiveFieldExplorer(model, vocab, name, position, top_k)


# ---- lesson 06: what a trained transformer attends to, and how it samples -------------------------

@dataclass
class AttentionMap:
    """One head's attention weights over one name (lesson 06)."""

    name: str
    layer: int                 # 0-based, as in model.blocks[layer]
    head: int                  # 0-based
    chars: list[str]           # what each position reads: the start token `.`, then the name
    weights: torch.Tensor      # (T, T); row t: how much position t takes from positions 0..t (sums to 1)

    def header(self) -> str:
        return f"name={self.name!r} layer={self.layer} head={self.head}"

    def text(self, top: int = 2) -> str:
        """The header, then one line per position: the `top` positions it attends to most, with their weights."""
        lines = [self.header() + " | each position and where it looks (weight):"]
        for t, row in enumerate(self.weights):
            w, j = row[: t + 1].topk(min(top, t + 1))
            looks = ", ".join(f"{p} {self.chars[p]!r} {x:.2f}" for x, p in zip(w.tolist(), j.tolist()))
            lines.append(f"  {t:>2} {self.chars[t]!r}: {looks}")
        return "\n".join(lines)


def _check_index(what: str, i, n: int) -> int:
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
        raise ValueError(f"{what} must be a whole number from 0 to {n - 1}, got {i!r}")
    return i


def attention_map(model, vocab, name: str, layer: int = 0, head: int = 0) -> AttentionMap:
    """The attention weights of `head` in `layer` of a trained `mmlib.models.Transformer` reading `name`.

    The model reads the start token and the name, as in training, so position t is where it
    predicts character t + 1 of the name (the last position: the end of the name).
    """
    if not hasattr(model, "attention_maps"):
        raise TypeError(f"attention maps need a transformer (mmlib.models.Transformer), got {type(model).__name__}")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("type a name (one or more characters) to see its attention")
    name = no_boundary("name", name.strip())
    longest = model.block_size - 1
    if len(name) > longest:
        raise ValueError(f"this model reads at most {longest} characters, and {name!r} has {len(name)}")
    _check_index("layer", layer, len(model.blocks))
    _check_index("head", head, model.config.n_head)
    ids = [0] + vocab.encode(name)   # encode names any character the vocabulary lacks
    idx = torch.tensor([ids], dtype=torch.long, device=model.device)
    with _one_thread():
        w = model.attention_maps(idx)[layer][0, head].float().cpu()       # (T, T)
    return AttentionMap(name, layer, head, [vocab.itos[i] for i in ids], w)


def draw_attention(result: AttentionMap, fig: Figure | None = None) -> Figure:
    """The (T, T) weights as a heatmap: row = the position that looks, column = the position looked at."""
    fig = fig or Figure(figsize=(4.2, 3.8), dpi=72)
    (ax,) = _axes(fig, 1)
    T = len(result.chars)
    w = result.weights.clone()
    w[torch.ones(T, T, dtype=torch.bool).triu(1)] = float("nan")        # the future: not allowed, left blank
    im = ax.imshow(w.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(T), [f"{c}\n{t}" for t, c in enumerate(result.chars)], fontsize=8)
    ax.set_yticks(range(T), [f"{t} {c}" for t, c in enumerate(result.chars)], fontsize=8)
    ax.set_xlabel("looked at (key)")
    ax.set_ylabel("looking (query)")
    ax.grid(False)
    ax.set_title(result.header(), fontsize=9)
    if len(fig.axes) == 1:
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.subplots_adjust(left=0.2, bottom=0.22, right=0.92, top=0.9)
    return fig


@dataclass
class SampleResult:
    """Words drawn at one temperature and top-k, and how many of them the training file lacks (lesson 06)."""

    temperature: float
    top_k: int | None
    words: list[str]
    new: list[bool]            # True where the word is not in the file (an empty sample is no name, so never new)
    seed: int

    @property
    def share_new(self) -> float:
        return sum(self.new) / len(self.words)

    @property
    def mean_length(self) -> float:
        return sum(len(w) for w in self.words) / len(self.words)

    @property
    def n_empty(self) -> int:
        """Samples that ended at once (the end token first): no name, neither new nor known."""
        return sum(not w for w in self.words)

    def header(self) -> str:
        k = "off" if self.top_k is None else str(self.top_k)
        empty = f", {self.n_empty} empty" if self.n_empty else ""
        return (f"temperature={self.temperature:.2f} top_k={k} | {len(self.words)} samples{empty}, "
                f"{100 * self.share_new:.0f}% new (not in the training file), mean length {self.mean_length:.1f}")

    def text(self, per_line: int = 8) -> str:
        """The header, then the words, new ones marked with *."""
        cells = [(w or "(empty)") + ("*" if n else "") for w, n in zip(self.words, self.new)]
        rows = [" ".join(f"{c:<16}" for c in cells[i:i + per_line]).rstrip() for i in range(0, len(cells), per_line)]
        return "\n".join([self.header(), *rows, "* new: not in the training file"])


def sample_summary(model, vocab, known: set[str] | list[str], n: int = 40, *, temperature: float = 1.0,
                   top_k: int | None = None, seed: int = 0) -> SampleResult:
    """Draw `n` words with `mmlib.sample.sample_words` and mark those not in `known` (the training file).

    `top_k` None or 0 keeps every character. The same `seed` draws the same random numbers, so
    moving one slider changes only what that slider controls.
    """
    from mmlib.sample import sample_words

    if top_k == 0:
        top_k = None
    known = set(known)
    if not known:
        raise ValueError("known must hold the training file's words, to tell which samples are new")
    with _one_thread():
        words = sample_words(model, vocab, n, g=torch.Generator().manual_seed(seed), temperature=temperature,
                             top_k=top_k)
    return SampleResult(temperature, top_k, words, [bool(w) and w not in known for w in words], seed)


class AttentionExplorer(_Explorer):
    """A text box for the name and sliders for layer and head; the heatmap and where each position looks."""

    def __init__(self, model, vocab, name: str = "emma", *, layer: int = 0, head: int = 0):
        import ipywidgets as widgets

        super().__init__()
        self.model, self.vocab = model, vocab
        self.result = attention_map(model, vocab, name, layer, head)   # validates before any widget exists
        self.error: str | None = None
        self.name = widgets.Text(value=name, description="name", continuous_update=False)
        self.layer = widgets.IntSlider(value=layer, min=0, max=len(model.blocks) - 1, description="layer",
                                       continuous_update=False)
        self.head = widgets.IntSlider(value=head, min=0, max=model.config.n_head - 1, description="head",
                                      continuous_update=False)
        for w in (self.name, self.layer, self.head):
            w.observe(lambda change: self.update(), names="value")
        self.fig = Figure(figsize=(4.2, 3.8), dpi=72)
        self.box = widgets.VBox([widgets.HBox([self.name, self.layer, self.head]), self.output])
        self.update()

    def update(self) -> AttentionMap | None:
        """Recompute with the current values and redraw; a name it cannot read shows why instead."""
        t = time.perf_counter()
        try:
            self.result = attention_map(self.model, self.vocab, self.name.value, int(self.layer.value),
                                        int(self.head.value))
        except ValueError as e:
            self.error = str(e)
            self._publish(f"cannot show {self.name.value!r}: {e}")
            return None
        self.error = None
        self._show(self.result.text(), draw_attention(self.result, self.fig))
        self.redraw_seconds = time.perf_counter() - t
        return self.result


# five 16-character columns fit the output area of a 1280-pixel window: no name breaks across lines
SAMPLES_PER_LINE = 5


class SamplingExplorer(_Explorer):
    """Sliders for temperature and top-k; shows the samples and the share that are new."""

    def __init__(self, model, vocab, known: set[str] | list[str], n: int = 40, *, temperature: float = 1.0,
                 top_k: int | None = None, seed: int = 0):
        import ipywidgets as widgets

        super().__init__()
        self.model, self.vocab, self.known, self.n, self.seed = model, vocab, set(known), n, seed
        self.result = sample_summary(model, vocab, self.known, n, temperature=temperature, top_k=top_k, seed=seed)
        # "initial": each label as wide as its text, so "temperature" and "top-k (0: off)" are not cut
        style = {"description_width": "initial"}
        self.temperature = widgets.FloatSlider(value=temperature, min=0.1, max=2.0, step=0.05,
                                               description="temperature", continuous_update=False,
                                               readout_format=".2f", style=style)
        self.top_k = widgets.IntSlider(value=top_k or 0, min=0, max=len(vocab), description="top-k (0: off)",
                                       continuous_update=False, style=style)
        for w in (self.temperature, self.top_k):
            w.observe(lambda change: self.update(), names="value")
        self.box = widgets.VBox([widgets.HBox([self.temperature, self.top_k]), self.output])
        self.update()

    def _picture(self) -> bytes:
        """The sampling explorer draws no plot: its picture is its text."""
        return text_png(self.result.text(per_line=SAMPLES_PER_LINE))

    def update(self) -> SampleResult:
        t = time.perf_counter()
        self.result = sample_summary(self.model, self.vocab, self.known, self.n,
                                     temperature=float(self.temperature.value), top_k=int(self.top_k.value),
                                     seed=self.seed)
        self._publish(self.result.text(per_line=SAMPLES_PER_LINE))
        self.redraw_seconds = time.perf_counter() - t
        return self.result


def attention_explorer(model, vocab, name: str = "emma", **settings) -> AttentionExplorer:
    """The attention-map explorer (lesson 06): `name`, `layer`, `head`; display the returned object."""
    return AttentionExplorer(model, vocab, name, **settings)


def sampling_explorer(model, vocab, known, n: int = 40, **settings) -> SamplingExplorer:
    """The sampling explorer (lesson 06): temperature and top-k sliders over `n` samples; `known` is
    the training file's words, so it can say which samples are new."""
    return SamplingExplorer(model, vocab, known, n, **settings)


# ---- lesson 00: one neuron's expression graph, every value and gradient ---------------------------

NEURON_INPUTS = ("x1", "x2", "w1", "w2", "b")


@dataclass
class NeuronGraph:
    """One neuron, o = tanh(x1 w1 + x2 w2 + b), built from `mmlib.micrograd.Value`s after `o.backward()`."""

    values: dict[str, float]      # every node's data, by label
    grads: dict[str, float]       # every node's grad: d o / d node
    output: object                # the Value o, for drawing

    def text(self) -> str:
        v, g = self.values, self.grads
        head = ", ".join(f"{k}={v[k]:.2f}" for k in NEURON_INPUTS)
        lines = [f"{head}: o = tanh(n) = {v['o']:.4f}"]
        lines += [f"  {k:<9} data {v[k]:8.4f}   grad {g[k]:8.4f}" for k in v]
        if abs(v["o"]) > 0.999:
            lines.append("  note: tanh is saturated (|o| near 1), so 1 - o^2 is near 0 and almost no gradient "
                         "reaches the weights")
        return "\n".join(lines)


def neuron_graph(x1: float, x2: float, w1: float, w2: float, b: float) -> NeuronGraph:
    """Forward and backward through one tanh neuron, each node labelled as lesson 00 labels it."""
    from mmlib.micrograd import Value

    leaves = {k: Value(float(v), label=k) for k, v in zip(NEURON_INPUTS, (x1, x2, w1, w2, b))}
    x1w1 = leaves["x1"] * leaves["w1"]
    x1w1.label = "x1*w1"
    x2w2 = leaves["x2"] * leaves["w2"]
    x2w2.label = "x2*w2"
    s = x1w1 + x2w2
    s.label = "x1w1+x2w2"
    n = s + leaves["b"]
    n.label = "n"
    o = n.tanh()
    o.label = "o"
    o.backward()
    nodes = [*leaves.values(), x1w1, x2w2, s, n, o]
    return NeuronGraph({v.label: v.data for v in nodes}, {v.label: v.grad for v in nodes}, o)


class NeuronExplorer(_Explorer):
    """Sliders for a neuron's two inputs, two weights and bias; its graph redrawn with every value and gradient.

    `.result` is the latest `NeuronGraph`; setting a slider's value (e.g. `explorer.w1.value = 1`) updates it.
    """

    def __init__(self, x1: float = 2.0, x2: float = 0.0, w1: float = -3.0, w2: float = 1.0,
                 b: float = 6.8813735870195432):
        import ipywidgets as widgets

        super().__init__()
        self.sliders = {}
        for name, value in zip(NEURON_INPUTS, (x1, x2, w1, w2, b)):
            slider = widgets.FloatSlider(value=value, min=-8.0, max=8.0, step=0.01, description=name,
                                         continuous_update=False, readout_format=".2f")
            slider.observe(lambda change: self.update(), names="value")
            setattr(self, name, slider)
            self.sliders[name] = slider
        self.fig = Figure(dpi=90)
        self.box = widgets.VBox([widgets.HBox(list(self.sliders.values())[:3]),
                                 widgets.HBox(list(self.sliders.values())[3:]), self.output])
        self.update()

    def update(self) -> NeuronGraph:
        t = time.perf_counter()
        self.result = neuron_graph(*(s.value for s in self.sliders.values()))
        self._show(self.result.text(), draw_graph(self.result.output, self.fig))
        self.redraw_seconds = time.perf_counter() - t
        return self.result


def neuron_explorer(x1: float = 2.0, x2: float = 0.0, w1: float = -3.0, w2: float = 1.0,
                    b: float = 6.8813735870195432) -> NeuronExplorer:
    """The neuron explorer (lesson 00); display the returned object to use it. The defaults are the
    lecture's: b is chosen so that n = 0.8814 and o = tanh(n) = 0.7071."""
    return NeuronExplorer(x1, x2, w1, w2, b)
