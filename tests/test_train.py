"""mmlib.train: the schedules, determinism, resuming, divergence, evaluation with padding, and eval_mode."""

from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn.functional as F

from mmlib.data import IGNORE, build_sequences
from mmlib.layers import BatchNorm1d
from mmlib.models import Model, ModelConfig, create
from mmlib.runtime import eval_mode
from mmlib.train import (
    Callbacks,
    LectureSGD,
    StepInfo,
    TrainConfig,
    TrainingDiverged,
    TrainState,
    evaluate,
    lr_at,
    minibatch_rows,
    train,
    trim_padding,
)
from mmlib.vocab import Vocab


def toy_splits(n=600, block_size=3, seed=0):
    """A learnable task: the next id is (sum of the context) mod 5."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randint(0, 5, (n, block_size), generator=g)
    Y = X.sum(1) % 5
    return {"train": (X[: n // 2], Y[: n // 2]), "dev": (X[n // 2:], Y[n // 2:])}


def small_mlp(seed=0, **kw):
    kw = {"w1_scale": "kaiming", "b1_scale": 0.01, "w2_scale": 0.1, "b2_scale": 0.0, **kw}
    return create("mlp", generator=torch.Generator().manual_seed(seed), vocab_size=5, n_embd=4, n_hidden=32, **kw)


def cfg(**kw):
    return TrainConfig(**{"max_steps": 200, "batch_size": 16, "progress": False, **kw})


def test_schedules():
    step = cfg(max_steps=100, lr=0.1, lr_late=0.01)
    assert [lr_at(s, step) for s in (0, 49, 50, 99)] == [0.1, 0.1, 0.01, 0.01]
    assert lr_at(30, cfg(max_steps=100, decay_step=30, lr=0.1, lr_late=0.01)) == 0.01
    cos = cfg(max_steps=110, optimizer="adamw", schedule="cosine", lr=1e-3, warmup=10, lr_min=1e-4)
    assert lr_at(0, cos) == pytest.approx(1e-4) and lr_at(9, cos) == pytest.approx(1e-3)
    assert lr_at(10, cos) == pytest.approx(1e-3) and lr_at(109, cos) == pytest.approx(1e-4)
    mid = lr_at(60, cos)
    assert 1e-4 < mid < 1e-3
    assert lr_at(5, cfg(schedule="constant", lr=0.3)) == 0.3


@pytest.mark.parametrize("kw, message", [
    ({"max_steps": 0}, "max_steps must be a positive whole number, got 0"),
    ({"batch_size": "32"}, "batch_size must be a positive whole number, got '32'"),
    ({"lr": 11}, "lr must be a learning rate in \\(0, 10\\], got 11"),
    ({"optimizer": "adam"}, "optimizer must be one of sgd, adamw, muon; got 'adam'"),
    ({"decay_step": -1}, "decay_step must be a whole number >= 0, got -1"),
    ({"seed": None}, "seed must be a whole number"),
    ({"device": "tpu"}, "device must be one of cpu, cuda, mps"),
    ({"sampling": "shuffle"}, "sampling must be one of random, epochs, lengths; got 'shuffle'"),
    ({"dropout_from": 1.0}, "dropout_from must be a finite number in \\[0, 1\\), got 1.0"),
    ({"weight_decay": 0.1}, "weight_decay is applied by AdamW only"),
])
def test_config_refuses_nonsense(kw, message):
    with pytest.raises(ValueError, match=message):
        cfg(**kw)


@pytest.mark.parametrize("recipe", [{}, {"optimizer": "adamw", "schedule": "cosine", "lr": 1e-2, "warmup": 20,
                                         "weight_decay": 0.01, "grad_clip": 1.0}])
def test_training_learns_and_is_deterministic_under_a_seed(recipe):
    splits = toy_splits(n=2000)
    a = train(small_mlp(), splits, cfg(max_steps=600, **recipe))
    b = train(small_mlp(), splits, cfg(max_steps=600, **recipe))
    assert a.losses == b.losses and a.final == b.final
    assert a.final["dev"] < math.log(5) - 0.3, a.final   # uniform guessing: ln 5 = 1.61
    assert a.steps == 600 and a.steps_per_second > 0 and set(a.final) == {"train", "dev"}


def test_sgd_is_the_lessons_loop_to_the_last_bit():
    splits = toy_splits()
    X, Y = splits["train"]
    g = torch.Generator().manual_seed(5)
    model = small_mlp(seed=5)
    P = {k: p.detach().clone().requires_grad_() for k, p in model.named_parameters()}
    for i in range(100):
        ix = torch.randint(0, len(X), (16,), generator=g)
        h = torch.tanh(P["C"][X[ix]].view(16, -1) @ P["W1"] + P["b1"])
        loss = F.cross_entropy(h @ P["W2"] + P["b2"], Y[ix])
        for p in P.values():
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in P.values():
                p -= (0.1 if i < 50 else 0.01) * p.grad
    train(model, splits, cfg(max_steps=100), generator=torch.Generator().manual_seed(5))
    for k, p in model.named_parameters():
        assert torch.equal(p, P[k]), k


@pytest.mark.parametrize("batch_size", [7, 300, 700])
def test_epochs_sampling_trains_on_every_row_once_a_pass_in_a_new_order_each_pass(batch_size):
    """300 rows: batches that divide a pass unevenly, exactly one pass, and more than two passes a step."""
    n, g = 300, torch.Generator().manual_seed(3)
    steps = -(-5 * n // batch_size)
    stream = torch.cat([minibatch_rows(s, batch_size, n, g, "epochs") for s in range(steps)])
    assert len(stream) == steps * batch_size
    passes = [stream[i * n:(i + 1) * n] for i in range(5)]
    for rows in passes:
        assert torch.equal(rows.sort().values, torch.arange(n))          # every row once
    assert len({tuple(rows.tolist()) for rows in passes}) == 5           # each pass in its own order
    assert not torch.equal(passes[0], torch.arange(n))                   # shuffled
    g.manual_seed(3)
    torch.randint(0, 10, (50,), generator=g)   # the order depends on the seed, not the generator's state
    assert torch.equal(minibatch_rows(steps - 1, batch_size, n, g, "epochs"), stream[-batch_size:])
    other = minibatch_rows(0, batch_size, n, torch.Generator().manual_seed(4), "epochs")
    assert not torch.equal(other, stream[:batch_size])


@pytest.mark.parametrize("batch_size", [7, 16, 300])
def test_lengths_sampling_trains_on_whole_minibatches_of_words_of_like_length_in_a_new_order_each_pass(batch_size):
    """300 rows of lengths 1-20: a pass is n // batch_size minibatches (its order's last rows wait), each row at
    most once; a minibatch's lengths span far less than a random draw's; the order depends on seed and pass."""
    n, g = 300, torch.Generator().manual_seed(3)
    lengths = tuple(torch.randint(1, 21, (n,), generator=torch.Generator().manual_seed(0)).tolist())
    per_pass = n // batch_size
    passes = [torch.stack([minibatch_rows(p * per_pass + i, batch_size, n, g, "lengths", lengths)
                           for i in range(per_pass)]) for p in range(4)]
    L = torch.tensor(lengths)
    for batches in passes:
        rows = batches.flatten()
        assert len(rows.unique()) == len(rows) == per_pass * batch_size
        assert batches.shape == (per_pass, batch_size)
    assert len({tuple(b.flatten().tolist()) for b in passes}) == 4
    if batch_size < n:
        spread = (L[passes[0]].amax(1) - L[passes[0]].amin(1)).float().mean()
        drawn = torch.randint(0, n, (per_pass, batch_size), generator=torch.Generator().manual_seed(1))
        assert spread < 0.5 * (L[drawn].amax(1) - L[drawn].amin(1)).float().mean()
        assert not torch.equal(L[passes[0][:, 0]], L[passes[0][:, 0]].sort().values)   # not shortest first
    g.manual_seed(3)
    torch.randint(0, 10, (50,), generator=g)   # the order depends on the seed, not the generator's state
    assert torch.equal(minibatch_rows(2 * per_pass - 1, batch_size, n, g, "lengths", lengths), passes[1][-1])
    other = minibatch_rows(0, batch_size, n, torch.Generator().manual_seed(4), "lengths", lengths)
    assert not torch.equal(other, passes[0][0])


def test_lengths_sampling_weighs_each_minibatch_by_its_characters():
    """The gradient of a step is that of the batch's summed character losses over batch_size times the training
    rows' mean number of characters: every character of the pass counts alike, whatever its word's batch."""
    splits, recipe = name_splits(), cfg(optimizer="adamw", schedule="constant", lr=1e-3, max_steps=1,
                                        batch_size=16, sampling="lengths")
    Y = splits["train"][1]
    lengths = tuple((Y != IGNORE).sum(1).tolist())
    xb, yb = trim_padding(*(t[minibatch_rows(0, 16, len(Y), torch.Generator().manual_seed(recipe.seed),
                                             "lengths", lengths)] for t in splits["train"]))
    reference = tiny_transformer()
    logits, _ = reference(xb)
    summed = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), ignore_index=IGNORE, reduction="sum")
    (summed / (16 * sum(lengths) / len(lengths))).backward()
    want = {k: p.grad.clone() for k, p in reference.named_parameters()}

    class Grads(Callbacks):
        def on_step(self, info):
            self.got = {k: p.grad.clone() for k, p in info.model.named_parameters()}

    seen = Grads()
    train(tiny_transformer(), splits, recipe, callbacks=seen)
    for k, g in want.items():
        torch.testing.assert_close(seen.got[k], g, rtol=1e-5, atol=1e-7, msg=k)


@pytest.mark.parametrize("splits, batch_size, words", [
    ("windows", 16, "rows all have one length: use 'epochs'"),
    ("names", 301, "only 300: lower batch_size")])
def test_lengths_sampling_is_refused_in_one_line_where_it_cannot_apply(splits, batch_size, words):
    model, data = (small_mlp(), toy_splits()) if splits == "windows" else (tiny_transformer(), name_splits())
    with pytest.raises(ValueError, match=words) as e:
        train(model, data, cfg(optimizer="adamw", schedule="cosine", lr=1e-3, batch_size=batch_size,
                               sampling="lengths"))
    assert "\n" not in str(e.value)


def test_random_sampling_is_the_lectures_draw():
    drawn = minibatch_rows(0, 32, 300, torch.Generator().manual_seed(5))
    assert torch.equal(drawn, torch.randint(0, 300, (32,), generator=torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("sampling", ["random", "epochs"])
@pytest.mark.parametrize("hook, stopped_at", [("on_step", 50), ("on_eval", 60)])
def test_an_interrupted_run_resumes_exactly_where_it_stopped(hook, stopped_at, sampling):
    """Ctrl-C (here: an exception from on_step, before step 50's update, or from on_eval after step 60's
    evaluation) then resume == never stopped; 120 steps of 16 rows are 6.4 passes over the 300 rows."""
    splits = toy_splits()
    recipe = cfg(max_steps=120, optimizer="adamw", schedule="cosine", lr=3e-3, warmup=10, eval_every=30,
                 sampling=sampling)
    full = train(small_mlp(), splits, recipe)

    model, state = small_mlp(), TrainState(torch.Generator().manual_seed(recipe.seed))
    with pytest.raises(_Stop):
        train(model, splits, recipe, state=state, callbacks=_StopAt(hook, stopped_at))
    assert state.step == stopped_at and len(state.losses) == stopped_at
    saved, weights = state.state_dict(), {k: v.clone() for k, v in model.state_dict().items()}

    resumed = small_mlp(seed=99)           # a fresh process: other weights until the checkpoint loads
    resumed.load_state_dict(weights)
    out = train(resumed, splits, recipe, state=TrainState.from_state_dict(saved))
    assert out.losses == full.losses and out.final == full.final


class _Stop(Exception):
    pass


class _StopAt(Callbacks):
    def __init__(self, hook, step):
        self.hook, self.step = hook, step

    def on_step(self, info):
        if self.hook == "on_step" and info.step == self.step:
            raise _Stop

    def on_eval(self, step, losses):
        if self.hook == "on_eval" and step == self.step:
            raise _Stop


def test_a_diverging_run_stops_with_one_line_naming_the_step_and_the_fix():
    with pytest.raises(TrainingDiverged, match=r"(became nan|diverging).*at step|lower the learning rate"):
        train(small_mlp(), toy_splits(), cfg(max_steps=2000, lr=10.0, lr_late=10.0))


def test_on_step_sees_gradients_before_the_update():
    model = small_mlp()
    seen = []

    class Look(Callbacks):
        def on_step(self, info):
            seen.append((info.step, info.lr, model.W2.grad.abs().sum().item(), model.W2.detach().clone()))

    train(model, toy_splits(), cfg(max_steps=3), callbacks=Look())
    assert [s for s, *_ in seen] == [0, 1, 2] and all(g > 0 for _, _, g, _ in seen)
    assert not torch.equal(seen[0][3], seen[1][3])  # the update came after the first look


def test_callbacks_run_in_the_documented_order():
    calls = []

    class Log(Callbacks):
        def before_step(self, step):
            calls.append(("before_step", step))

        def on_step(self, info):
            assert isinstance(info, StepInfo) and info.loss.requires_grad
            calls.append(("on_step", info.step))

        def on_eval(self, step, losses):
            assert set(losses) == {"train", "dev"}
            calls.append(("on_eval", step))

    result = train(small_mlp(), toy_splits(), cfg(max_steps=4, eval_every=2), callbacks=Log())
    assert calls == [("before_step", 0), ("on_step", 0), ("before_step", 1), ("on_step", 1), ("on_eval", 2),
                     ("before_step", 2), ("on_step", 2), ("before_step", 3), ("on_step", 3), ("on_eval", 4)]
    assert [e["step"] for e in result.evals] == [2, 4]
    plain = train(small_mlp(), toy_splits(), cfg(max_steps=4), callbacks=Callbacks())   # the no-ops
    assert plain.losses == result.losses


def test_callbacks_must_be_a_callbacks_object():
    with pytest.raises(TypeError, match="callbacks must be a mmlib.train.Callbacks .subclass it and override"):
        train(small_mlp(), toy_splits(), cfg(max_steps=2), callbacks=lambda step: None)


def test_lecture_sgd_zero_grad_drops_or_zeroes_the_gradients():
    p = torch.ones(3, requires_grad=True)
    opt = LectureSGD([p], lr=0.5)
    (2 * p).sum().backward()
    opt.step()
    assert torch.equal(p.detach(), torch.zeros(3))             # 1 - 0.5 * 2
    opt.zero_grad(set_to_none=False)
    assert torch.equal(p.grad, torch.zeros(3))
    opt.zero_grad()
    assert p.grad is None


class Echo(Model):
    """A sequence model whose logits put all weight on its own input: loss = 0 where input == target."""

    per_position = True

    def __init__(self, config, generator=None):
        super().__init__(config)
        self.scale = torch.nn.Parameter(torch.tensor(50.0))

    def forward(self, idx, targets=None):
        logits = F.one_hot(idx, self.vocab_size).float() * self.scale
        return logits, self.loss(logits, targets)


def test_evaluate_leaves_padding_out_and_weights_chunks_by_targets():
    vocab = Vocab.from_words(["ab"])
    X, Y = build_sequences(["a", "abab", "b"], vocab)
    assert X.shape == Y.shape == (3, 5) and (Y == IGNORE).sum() == 6
    model = Echo(ModelConfig(vocab_size=3, block_size=5))
    logits, _ = model(X)
    mask = Y != IGNORE
    want = F.cross_entropy(logits[mask], Y[mask]).item()
    assert evaluate(model, X, Y) == pytest.approx(want, rel=1e-6)
    import mmlib.train as t

    old = t.EVAL_TOKENS
    try:
        t.EVAL_TOKENS = 5  # one word per chunk: the words hold 2, 5 and 2 targets
        assert evaluate(model, X, Y) == pytest.approx(want, rel=1e-6)
    finally:
        t.EVAL_TOKENS = old


def test_sequence_batches_are_cut_after_their_longest_word_without_changing_the_loss():
    vocab = Vocab.from_words(["abc"])
    X, Y = build_sequences(["a", "abc", "b", "ab"], vocab, block_size=8)
    Xt, Yt = trim_padding(X, Y)
    assert Xt.shape == Yt.shape == (4, 4)       # "abc" and its end token: 4 targets
    assert (Yt != IGNORE).sum() == (Y != IGNORE).sum()
    model = create("transformer", generator=torch.Generator().manual_seed(0), vocab_size=4, block_size=8,
                   n_layer=1, n_head=2, n_embd=8).eval()
    torch.testing.assert_close(model(Xt, Yt)[1], model(X, Y)[1])
    all_padding = torch.full((2, 8), IGNORE)
    assert trim_padding(X[:2], all_padding)[0].shape == (2, 1)

    seen = []

    class Recording(type(model)):
        def forward(self, idx, targets=None):
            seen.append(idx.shape[1])
            return super().forward(idx, targets)

    rec = Recording(model.config, generator=torch.Generator().manual_seed(0))
    train(rec, {"train": (X[:1], Y[:1])}, cfg(max_steps=3, batch_size=4, optimizer="adamw", lr=1e-3))
    assert seen[:3] == [2, 2, 2]   # "a" and its end token; the final evaluation reads the whole width


def test_eval_mode_restores_the_mode_it_found():
    model = small_mlp(batchnorm=True)
    bn = BatchNorm1d(4)
    model.eval()
    with eval_mode(model, [bn]):
        assert not model.training and not bn.training
    assert not model.training and bn.training
    model.train()
    try:
        with eval_mode(model):
            raise KeyError
    except KeyError:
        pass
    assert model.training


def test_empty_splits_are_named():
    X = torch.zeros(0, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="training split is empty"):
        train(small_mlp(), {"train": (X, X[:, 0])}, cfg())
    with pytest.raises(ValueError, match="cannot evaluate on an empty split"):
        evaluate(small_mlp(), X, X[:, 0])


def test_divergence_guard_is_the_one_rule_and_says_where_and_what_to_lower():
    from mmlib.train import DivergenceGuard

    guard = DivergenceGuard(27, lr_name="lr")
    for step, value in enumerate([3.8, 3.0, 2.7] + [2.5] * 200):   # a run that learns is never stopped
        guard(step, value, 0.1)
    with pytest.raises(TrainingDiverged, match=r"^training stopped at step 7: the loss became nan; "
                                                r"lower the learning rate \(lr, now 50\) and run again$"):
        DivergenceGuard(27)(7, float("nan"), 50.0)
    climbing = DivergenceGuard(27)
    with pytest.raises(TrainingDiverged,
                       match=r"at step 100: the loss is diverging .* lower the learning rate \(lr, now 10\)"):
        for step in range(200):
            climbing(step, 3.3 + step, 10.0)
    err = TrainingDiverged("training stopped at step 3: the loss became inf; lower the learning rate")
    assert err._render_traceback_() == [f"TrainingDiverged: {err}"]   # one line in a notebook, no traceback
    with pytest.raises(ValueError, match="vocab_size must be a positive whole number"):
        DivergenceGuard(0)


def test_the_live_plot_shows_only_in_a_notebook_and_never_where_mmlib_quiet_is_set(monkeypatch):
    import mmlib.train as t

    monkeypatch.setattr(t, "_in_notebook", lambda: True)
    assert os.environ["MMLIB_QUIET"] == "1"                      # tests/conftest.py sets it for every test
    assert not t._live_plot_wanted(cfg(live_plot=True)) and not t._progress_wanted(cfg(progress=None))
    assert t._progress_wanted(cfg(progress=True)), "a progress bar asked for is shown"
    monkeypatch.delenv("MMLIB_QUIET")
    assert t._live_plot_wanted(cfg(live_plot=True)) and not t._live_plot_wanted(cfg())
    assert t._progress_wanted(cfg(progress=None))
    monkeypatch.setenv("MMLIB_QUIET", "0")
    assert t._live_plot_wanted(cfg(live_plot=True))
    for name in ("CI", "PYTEST_CURRENT_TEST"):                   # the library reads no other variable for it
        monkeypatch.setenv(name, "1")
    assert t._live_plot_wanted(cfg(live_plot=True)) and t._progress_wanted(cfg(progress=None))
    monkeypatch.setenv("MMLIB_QUIET", "1")                       # the notebooks executed for the repository
    assert not t._live_plot_wanted(cfg(live_plot=True))
    monkeypatch.delenv("MMLIB_QUIET")
    monkeypatch.setattr(t, "_in_notebook", lambda: False)        # a terminal: nothing to draw in
    assert not t._live_plot_wanted(cfg(live_plot=True))


def test_the_live_plot_draws_the_minibatch_and_evaluation_losses(monkeypatch):
    import mmlib.train as t

    shown = []

    class Handle:
        def update(self, image):
            shown.append(image)

    monkeypatch.setattr(t, "_live_plot_wanted", lambda c: c.live_plot)
    monkeypatch.setattr("IPython.display.display", lambda display_id: Handle())
    train(small_mlp(), toy_splits(), cfg(max_steps=40, eval_every=10, live_plot=True))
    assert len(shown) == 4 and all(image.data.startswith(b"\x89PNG") for image in shown)   # steps 10, 20, 30, end


def test_late_dropout_keeps_the_models_dropout_off_until_dropout_from_then_on():
    """dropout_from=0.4 of 10 steps: steps 0-3 without dropout, 4-9 with it."""
    words = ["emma", "olivia", "ava", "isabella", "sophia", "mia"] * 5
    vocab = Vocab.from_words(words)
    X, Y = build_sequences(words, vocab, 9)
    model = create("transformer", generator=torch.Generator().manual_seed(0), vocab_size=len(vocab), block_size=9,
                   n_layer=1, n_head=2, n_embd=8, dropout=0.5)
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(layers) == 4      # embeddings, attention weights, attention output, MLP output

    class Watch(Callbacks):
        def __init__(self):
            self.seen = []

        def on_step(self, info):
            self.seen.append({m.training for m in layers})

    watch = Watch()
    train(model, {"train": (X, Y), "dev": (X, Y)}, cfg(max_steps=10, batch_size=4, optimizer="adamw",
                                                       schedule="constant", lr=1e-3, dropout_from=0.4),
          callbacks=watch)
    assert watch.seen == [{False}] * 4 + [{True}] * 6


def test_the_progress_bar_shows_the_moving_average_of_the_loss_at_the_end(capsys):
    """The bar's `avg loss` is the exponential moving average of every step's minibatch loss, up to the last
    step, not the value of some earlier step (a 300-step run once showed step 200's to the end)."""
    import re

    from mmlib.train import _ProgressBar

    result = train(small_mlp(), toy_splits(), cfg(max_steps=300, eval_every=100, progress=True))
    shown = re.findall(r"avg loss (\d+\.\d{4})((?: \| \w+ \d+\.\d{4})*)", capsys.readouterr().err)
    assert shown, "no progress bar was drawn"
    ema = result.losses[0]
    for loss in result.losses[1:]:
        ema = _ProgressBar.DECAY * ema + (1 - _ProgressBar.DECAY) * loss
    assert shown[-1][0] == f"{ema:.4f}", shown[-1]
    last_eval = result.evals[-2]   # the last evaluation during the run, at step 200 (the final one is after the bar)
    assert shown[-1][1] == f" | train {last_eval['train']:.4f} | dev {last_eval['dev']:.4f}", (shown[-1], result.evals)


# ---- Muon for the transformer's hidden matrices, AdamW for the rest (issue 33) ---------------------------------


def tiny_transformer(seed=0, **kw):
    return create("transformer", generator=torch.Generator().manual_seed(seed), vocab_size=27, block_size=16,
                  n_layer=2, n_head=2, n_embd=16, **kw)


def name_splits():
    from mmlib.data import NAMES
    words = NAMES.read_text(encoding="utf-8").split()[:400]
    X, Y = build_sequences(words, Vocab.from_words(NAMES.read_text(encoding="utf-8").split()), block_size=16)
    return {"train": (X[:300], Y[:300]), "dev": (X[300:], Y[300:])}


MUON = {"optimizer": "muon", "schedule": "cosine", "lr": 5e-3, "warmup": 10, "weight_decay": 0.3, "eval_every": 30}


def test_muon_trains_the_hidden_matrices_and_adamw_every_other_parameter_on_one_schedule():
    from mmlib.train import MuonAdamW, make_optimizer
    model = tiny_transformer()
    opt = make_optimizer(model, cfg(**MUON))
    assert isinstance(opt, MuonAdamW)
    muon = [p for g in opt.muon.param_groups for p in g["params"]]
    adamw = [p for g in opt.adamw.param_groups for p in g["params"]]
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in muon) == sorted(
        f"blocks.{i}.{layer}.weight" for i in range(2) for layer in ("attn.qkv", "attn.proj", "mlp.0", "mlp.2"))
    assert sorted(map(id, muon + adamw)) == sorted(names), "every parameter in exactly one optimiser"
    assert {names[id(p)] for p in adamw} >= {"wte.weight", "wpe.weight", "lm_head.weight", "lm_head.bias"}
    splits = name_splits()
    before = evaluate(model, *splits["dev"])
    out = train(model, splits, cfg(**{**MUON, "max_steps": 40, "lr": 2e-2}))
    assert out.final["dev"] < before - 0.3, (before, out.final)


def test_the_schedule_sets_muons_and_adamws_learning_rate_alike():
    from mmlib.train import make_optimizer
    recipe = cfg(**{**MUON, "max_steps": 40})
    seen = []

    class Rates(Callbacks):
        def on_step(self, info):
            seen.append({g["lr"] for g in opt.param_groups} | {info.lr})

    model = tiny_transformer()
    opt = make_optimizer(model, recipe)
    import mmlib.train as t
    made = t.make_optimizer
    try:
        t.make_optimizer = lambda *a: opt
        train(model, name_splits(), recipe, callbacks=Rates())
    finally:
        t.make_optimizer = made
    assert [r == {lr_at(s, recipe)} for s, r in enumerate(seen)] == [True] * 40


@pytest.mark.parametrize("sampling, members", [("epochs", 1), ("lengths", 1), ("lengths", 2)])
@pytest.mark.parametrize("hook, stopped_at", [("on_step", 15), ("on_eval", 20)])
def test_a_muon_run_resumes_exactly_where_it_stopped(hook, stopped_at, sampling, members):
    """As the AdamW test above: Muon's momentum buffers and AdamW's moments are in the state a resumed run loads.
    40 steps of 16 words are two passes over the 300 (18 minibatches a pass with "lengths"); 2 members: an ensemble,
    as the command line's recipe trains."""
    splits, recipe = name_splits(), cfg(**{**MUON, "max_steps": 40, "eval_every": 20, "sampling": sampling})
    full_model = tiny_transformer(members=members)
    full = train(full_model, splits, recipe)

    model, state = tiny_transformer(members=members), TrainState(torch.Generator().manual_seed(recipe.seed))
    with pytest.raises(_Stop):
        train(model, splits, recipe, state=state, callbacks=_StopAt(hook, stopped_at))
    saved, weights = state.state_dict(), {k: v.clone() for k, v in model.state_dict().items()}
    assert set(saved["optimizer"]) == {"muon", "adamw"}
    assert all("momentum_buffer" in s for s in saved["optimizer"]["muon"]["state"].values())

    resumed = tiny_transformer(seed=99, members=members)
    resumed.load_state_dict(weights)
    out = train(resumed, splits, recipe, state=TrainState.from_state_dict(saved))
    assert out.losses == full.losses and out.final == full.final
    for (k, a), b in zip(full_model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k

    fresh = tiny_transformer(members=members)        # without the saved optimiser state the run is another one
    stateless = TrainState.from_state_dict({**saved, "optimizer": None})
    fresh.load_state_dict(weights)
    assert train(fresh, splits, recipe, state=stateless).losses != full.losses


@pytest.mark.parametrize("name", ["bigram", "mlp", "wavenet", "gru"])
def test_muon_is_refused_in_one_line_for_a_model_without_hidden_matrices(name):
    from mmlib.train import make_optimizer
    model = create(name, vocab_size=5, **({"block_size": 1} if name == "bigram" else {}))
    with pytest.raises(ValueError) as e:
        make_optimizer(model, cfg(**MUON))
    assert str(e.value) == (f"optimizer muon trains a model's hidden weight matrices and the {name} model has none "
                            "(the transformer has them): use adamw")


def test_muons_update_is_torchs_computed_in_float32_and_batched_by_shape():
    """Against torch.optim.Muon, which computes the same iteration in bfloat16, one matrix at a time."""
    from mmlib.train import Muon
    g = torch.Generator().manual_seed(0)
    shapes = [(48, 16), (48, 16), (16, 64), (16, 16), (64, 16)]
    ours = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    a = Muon(ours, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    b = torch.optim.Muon(theirs, lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    start = [p.detach().clone() for p in ours]
    for _ in range(3):
        for p, q in zip(ours, theirs):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        a.step()
        b.step()
    for p, q, p0 in zip(ours, theirs, start):
        moved = (q - p0).norm()
        assert moved > 0.01 and (p - q).norm() < 0.01 * moved      # bfloat16 keeps about 3 significant digits
    b.load_state_dict(a.state_dict())                                # the same state, the same format
