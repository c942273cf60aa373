"""mmlib.widgets and mmlib.diagnostics driven programmatically (lesson 03).

The explorers are set the way a learner sets them - by assigning a widget's value - and the test
reads the statistics the explorer computed for its redraw (`.result`).
"""

from __future__ import annotations

import math

import pytest
import torch

from mmlib.diagnostics import (
    Recorder,
    activation_stats,
    describe,
    gradient_stats,
    plot_update_ratios,
    retain_grads,
    update_ratios,
    weight_stats,
)
from mmlib.layers import Linear, Tanh
from mmlib.widgets import init_explorer, init_stats, training_explorer, training_snapshot


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(128, 30, generator=g), torch.randint(0, 27, (128,), generator=g)


@pytest.fixture()
def explorer(batch):
    x, y = batch
    return init_explorer(x, y, 27, gain=1.0, depth=4, width=60)


def first_sat(r):
    return r.activations[0].saturated


def test_saturation_rises_with_gain_for_tanh(explorer):
    sats = []
    for gain in (0.5, 1.0, 2.0, 3.0, 5.0):
        explorer.gain.value = gain
        assert explorer.result.gain == pytest.approx(gain)
        sats.append(first_sat(explorer.result))
    assert sats == sorted(sats) and sats[0] < 0.01 and sats[-1] > 0.5, sats
    assert "saturated" in explorer.result.notes[0]  # gain 5 explains itself


def test_batchnorm_keeps_saturation_low_whatever_the_gain(explorer):
    explorer.batchnorm.value = True
    for gain in (0.5, 5.0):
        explorer.gain.value = gain
        r = explorer.result
        assert r.batchnorm
        # standardised pre-activations: |x| > 2.09 (tanh > 0.97) for ~3.7% of a unit Gaussian
        assert all(s.saturated < 0.08 for s in r.activations), [s.saturated for s in r.activations]


def test_gain_zero_gives_zero_activations_and_a_note(explorer):
    explorer.gain.value = 0.0
    r = explorer.result
    assert all(s.mean == 0 and s.std == 0 for s in r.activations)
    assert all(s.finite for s in r.activations + r.gradients)
    assert any("gain 0" in n for n in r.notes)
    assert "note: gain 0" in r.text()
    assert r.loss == pytest.approx(math.log(27), abs=0.05)  # zero hidden output: logits = bias only


def _gain_zero_grads(batch, *, depth, nonlinearity, batchnorm):
    """Max |grad| of every parameter of a gain-0 stack, in layer order, as (layer kind, name, value)."""
    import torch.nn.functional as F

    from mmlib.widgets import build_stack

    x, y = batch
    layers, _ = build_stack(30, 27, gain=0.0, depth=depth, width=20, nonlinearity=nonlinearity,
                            batchnorm=batchnorm, generator=torch.Generator().manual_seed(0))
    h = x
    for layer in layers:
        h = layer(h)
    F.cross_entropy(h, y).backward()
    out = []
    for layer in layers:
        for name in ("weight", "bias", "gamma", "beta"):
            p = getattr(layer, name, None)
            if isinstance(p, torch.Tensor):
                out.append((type(layer).__name__, name, 0.0 if p.grad is None else p.grad.abs().max().item()))
    return out


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("nonlinearity", ["tanh", "none", "relu"])
@pytest.mark.parametrize("depth", [1, 3])
def test_gain_zero_note_matches_autograd(batch, depth, nonlinearity, batchnorm):
    """What the gain-0 note claims about gradients, checked against the actual backward pass."""
    x, y = batch
    note = init_stats(x, y, 27, gain=0.0, depth=depth, width=20, nonlinearity=nonlinearity,
                      batchnorm=batchnorm).notes[0]
    grads = _gain_zero_grads(batch, depth=depth, nonlinearity=nonlinearity, batchnorm=batchnorm)
    hidden, (out_w, out_b) = grads[:-2], grads[-2:]
    assert out_w[:2] == ("Linear", "weight") and out_w[2] == 0  # its input is all zeros
    assert out_b[:2] == ("Linear", "bias") and out_b[2] > 0     # the output bias always learns
    hidden_w = [v for kind, name, v in hidden if name == "weight"]
    last_shift = [v for kind, name, v in hidden if name in ("bias", "beta")][-1]
    if nonlinearity == "relu":
        assert "nothing in the hidden stack gets a gradient" in note
        assert all(v == 0 for _, _, v in hidden)
    elif depth == 1:
        assert "its weights get a gradient" in note
        assert hidden_w[0] > 0 and last_shift > 0
    else:
        assert "no hidden weight gets a gradient" in note and "last block's bias" in note
        assert all(v == 0 for v in hidden_w) and last_shift > 0


def test_depth_one_and_every_nonlinearity_work(explorer):
    explorer.depth.value = 1
    assert len(explorer.result.activations) == 1 and len(explorer.result.gradients) == 1
    for nl in ("relu", "none", "tanh"):
        explorer.nonlinearity.value = nl
        r = explorer.result
        assert r.nonlinearity == nl and r.depth == 1
        assert math.isfinite(r.loss)
    explorer.nonlinearity.value = "relu"
    assert 0.3 < first_sat(explorer.result) < 0.7  # about half of ReLU outputs are zero
    explorer.nonlinearity.value = "none"
    assert explorer.result.activations[0].saturated is None


def test_text_line_names_slider_values_and_stats(explorer):
    explorer.gain.value = 1.67
    explorer.depth.value = 5
    text = explorer.result.text()
    assert text.startswith("gain=1.67 depth=5 width=60 nonlinearity=tanh batchnorm=off")
    assert "layer 1 tanh: mean" in text and "saturated" in text
    assert [w.description for w in (explorer.gain, explorer.depth, explorer.width)] == ["gain", "depth", "width"]
    assert explorer.png.startswith(b"\x89PNG")
    assert explorer.redraw_seconds > 0


def test_width_changes_the_network(explorer):
    explorer.width.value = 200
    assert explorer.result.width == 200
    assert explorer.result.activations[0].numel == 128 * 200


def test_linear_stack_grows_geometrically_without_nonlinearity(batch):
    x, y = batch
    r = init_stats(x, y, 27, gain=2.0, depth=4, nonlinearity="none")
    stds = [s.std for s in r.activations]
    for a, b in zip(stds, stds[1:]):
        assert b / a == pytest.approx(2.0, rel=0.15)


def test_overflow_is_flagged_not_hidden(batch):
    x, y = batch
    r = init_stats(x * 1e36, y, 27, gain=5.0, depth=10, nonlinearity="none")
    assert not all(s.finite for s in r.activations)
    assert any("inf or NaN" in n for n in r.notes)


@pytest.mark.parametrize("kwargs, message", [
    (dict(gain=-1.0), "gain must be a finite number >= 0"),
    (dict(gain=float("nan")), "gain must be a finite number >= 0"),
    (dict(depth=0), "depth must be a positive whole number"),
    (dict(width=2.5), "width must be a positive whole number"),
    (dict(nonlinearity="sigmoid"), "nonlinearity must be one of"),
])
def test_bad_settings_are_rejected_clearly(batch, kwargs, message):
    x, y = batch
    with pytest.raises(ValueError, match=message):
        init_stats(x, y, 27, **kwargs)


def test_bad_batches_are_rejected_clearly(batch):
    x, y = batch
    with pytest.raises(ValueError, match="x must be a"):
        init_stats(x[0], y, 27)
    with pytest.raises(ValueError, match="y must hold one integer class"):
        init_stats(x, y[:5], 27)
    with pytest.raises(ValueError, match="class ids must lie in"):
        init_stats(x, y + 30, 27)


def _recorded(steps=30, every=10):
    g = torch.Generator().manual_seed(1)
    layers = [Linear(8, 16, generator=g, gain=5 / 3), Tanh(), Linear(16, 16, generator=g, gain=5 / 3), Tanh(),
              Linear(16, 5, generator=g, gain=0.1)]
    params = [p for layer in layers for p in layer.parameters()]
    weights = {f"W{i}": layer.weight for i, layer in enumerate(layers) if isinstance(layer, Linear)}
    rec = Recorder(every=every)
    for step in range(steps):
        x = torch.randn(32, 8, generator=g)
        y = torch.randint(0, 5, (32,), generator=g)
        h = x
        for layer in layers:
            h = layer(h)
        loss = torch.nn.functional.cross_entropy(h, y)
        retain_grads(layers)
        for p in params:
            p.grad = None
        loss.backward()
        rec.record(step, layers, weights, 0.1, loss.item())
        with torch.no_grad():
            for p in params:
                p -= 0.1 * p.grad
    return rec, layers, weights


def test_training_explorer_follows_its_slider():
    rec, _, _ = _recorded()
    assert rec.steps == [0, 10, 20] and len(rec.ud) == 30
    ex = training_explorer(rec)
    assert ex.result.step == 0 and ex.step.description == "step"
    ex.step.value = 20
    assert ex.result.step == 20
    assert ex.result.text().startswith("step=20")
    assert set(ex.result.ud) == set(rec.names)
    assert ex.result.activations is rec.activations[2]
    assert training_snapshot(rec, 15).step == 10  # nearest recorded step at or before
    with pytest.raises(ValueError, match="holds no steps"):
        training_explorer(Recorder())


def test_diagnostics_match_direct_computation():
    rec, layers, weights = _recorded(steps=1, every=1)
    t = layers[1].out
    acts = activation_stats(layers)
    assert acts[0].mean == pytest.approx(t.mean().item(), abs=1e-6)
    assert acts[0].std == pytest.approx(t.std().item(), rel=1e-5)
    assert acts[0].saturated == pytest.approx((t.abs() > 0.97).float().mean().item())
    grads = gradient_stats(layers)
    assert grads[0].std == pytest.approx(t.grad.std().item(), rel=1e-5)
    ws = weight_stats(weights)
    w = weights["W0"]
    assert ws[0].grad_data == pytest.approx((w.grad.std() / w.std()).item(), rel=1e-5)
    ud = update_ratios(weights, 0.1)
    assert ud[0] == pytest.approx(math.log10((0.1 * w.grad.std() / w.std()).item()), rel=1e-5)
    # histograms are densities: they integrate to 1
    s = acts[0]
    width = (s.centers[1] - s.centers[0]).item()
    assert (s.density.sum() * width).item() == pytest.approx(1.0, rel=1e-4)


def test_describe_handles_constant_and_non_finite_tensors():
    z = describe("zeros", torch.zeros(10), kind="tanh")
    assert z.mean == 0 and z.std == 0 and z.saturated == 0 and z.finite
    bad = describe("bad", torch.tensor([1.0, float("inf"), float("nan"), 3.0]))
    assert not bad.finite and bad.mean == pytest.approx(2.0) and "inf/NaN" in bad.line()
    empty = describe("nan", torch.tensor([float("nan")]))
    assert not empty.finite and math.isnan(empty.mean)


def test_diagnostics_errors_are_clear():
    layers = [Linear(3, 4), Tanh()]
    with pytest.raises(ValueError, match="run a forward pass first"):
        activation_stats(layers)
    layers[1](layers[0](torch.randn(5, 3)))
    with pytest.raises(ValueError, match="call retain_grads"):
        gradient_stats(layers)
    with pytest.raises(ValueError, match="run loss.backward"):
        weight_stats({"W": layers[0].weight})
    with pytest.raises(ValueError, match="every must be a positive whole number"):
        Recorder(every=0)
    with pytest.raises(ValueError, match="history must be"):
        plot_update_ratios([1.0, 2.0])


def test_gradients_on_starts_from_cleared_gradients_and_updates_nothing():
    from mmlib.diagnostics import gradients_on
    from mmlib.layers import LayerModel

    model = LayerModel.mlp(7, 2, 3, gain=1.0, depth=2, width=8, keep_grads=True,
                           generator=torch.Generator().manual_seed(0))
    X, Y = torch.randint(0, 7, (16, 2)), torch.randint(0, 7, (16,))
    before = [p.detach().clone() for p in model.parameters()]
    loss = gradients_on(model, X, Y)
    first = [p.grad.clone() for p in model.parameters()]
    assert gradients_on(model, X, Y) == loss            # a second call does not add to the first's gradients
    assert all(torch.equal(a, p.grad) for a, p in zip(first, model.parameters()))
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert gradient_stats(model.layers)                  # keep_grads kept the layers' output gradients


def test_four_diagnostics_prints_every_window_and_the_update_ratios_around_the_decay(capsys):
    from mmlib.diagnostics import four_diagnostics

    rec, layers, weights = _recorded(steps=30, every=10)
    acts, grads, wstats = four_diagnostics(layers, weights, rec, decay_step=15, title="test")
    out = capsys.readouterr().out
    assert [s.name for s in acts] == ["layer 1 (tanh)", "layer 3 (tanh)"] and len(grads) == 2 and len(wstats) == 3
    assert "update:data ratio, mean log10 before / from the decay step (step 15):" in out
    ud = torch.tensor(rec.ud)
    assert f"{ud[:15, 0].nanmean().item():+.2f} -> {ud[15:, 0].nanmean().item():+.2f}" in out


# ---- what a reader without a kernel sees: the display bundle's picture ------------------------------

def _every_explorer():
    """One of each explorer, on small untrained models (their pictures need no training)."""
    from mmlib.models import create
    from mmlib.vocab import Vocab
    from mmlib.widgets import attention_explorer, receptive_field_explorer, sampling_explorer

    vocab = Vocab("abcdefghijklmnopqrstuvwxyz")
    g = torch.Generator().manual_seed(0)
    wavenet = create("wavenet", generator=g, vocab_size=len(vocab), block_size=8, n_embd=4, n_hidden=8)
    gpt = create("transformer", generator=g, vocab_size=len(vocab), block_size=16, n_layer=1, n_head=2, n_embd=8)
    x, y = torch.randn(64, 30, generator=g), torch.randint(0, 27, (64,), generator=g)
    return {
        "init": init_explorer(x, y, 27, depth=2, width=20),
        "training": training_explorer(_recorded()[0]),
        "receptive field": receptive_field_explorer(wavenet, vocab, "isabella", position=5),
        "attention": attention_explorer(gpt, vocab, "olivia"),
        "sampling": sampling_explorer(gpt, vocab, ["emma", "olivia"], 8),
    }


def test_every_explorer_displays_as_widget_and_as_a_picture_of_what_it_shows():
    import base64
    import io

    from PIL import Image

    for kind, e in _every_explorer().items():
        bundle = e._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle, kind   # the live view, with a kernel
        png = base64.b64decode(bundle["image/png"])                         # the picture, without one
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG" and min(im.size) > 50, (kind, im.size)
        # the text fallback names the state, never the widget tree ("VBox(children=(HBox(...")
        assert not bundle["text/plain"].startswith(("VBox(", "HBox(")), (kind, bundle["text/plain"])
        assert bundle["text/plain"] == e.result.text().splitlines()[0], kind
        if e.png is not None:
            assert png == e.png, kind        # the picture is what the explorer draws now


def test_the_picture_follows_the_explorer():
    import base64

    e = _every_explorer()["init"]
    before = e._repr_mimebundle_()["image/png"]
    e.gain.value = 5.0
    after = e._repr_mimebundle_()["image/png"]
    assert before != after and base64.b64decode(after) == e.png


def test_slider_labels_are_not_cut():
    """A label wider than its description width is cut ("temperat..."): each either fits its fixed width
    (about 7 px per character of the 13 px font, plus 8 px of padding: "temperature" was cut at 80 px)
    or takes the width of its text ("initial")."""
    for kind, e in _every_explorer().items():
        controls = [w for row in e.box.children[:-1] for w in getattr(row, "children", [row])]
        assert controls, kind
        for w in controls:
            width = getattr(getattr(w, "style", None), "description_width", "") or ""
            if not width or width == "initial" or not getattr(w, "description", ""):
                continue
            assert 7 * len(w.description) + 8 <= int(width.removesuffix("px")), (kind, w.description, width)
