"""Lesson 06 (a transformer on names): its metrics at CI parameters, its committed default run, the
attention it builds against PyTorch's, the exercise probes of mmlib.expected.lesson06, the two widgets'
computation, and the course-wide comparison's handling of lessons without metrics."""

from __future__ import annotations

import math

import nbformat
import pytest
import torch
import torch.nn.functional as F
from conftest import EXERCISE_CHECKS, NOTEBOOKS, refusal, run_parameter_checks, run_parameters
from torch import nn

from mmlib import results
from mmlib.data import build_splits, load_words
from mmlib.expected import lesson06 as ex
from mmlib.models import CausalSelfAttention, TransformerConfig, create
from mmlib.train import TrainConfig, train, trim_padding
from mmlib.vocab import Vocab
from mmlib.widgets import attention_explorer, attention_map, draw_attention, sample_summary, sampling_explorer

SOLUTION = NOTEBOOKS / "solutions" / "06_transformer_solutions.ipynb"
LEARNER = NOTEBOOKS / "06_transformer.ipynb"
N_CHECKS = EXERCISE_CHECKS["06"]   # all correct in the solutions, none attempted by the learner (test_notebooks)


# ---- the lesson at CI parameters -------------------------------------------------------------


@pytest.mark.parametrize("path", [SOLUTION, LEARNER], ids=["solution", "learner"])
def test_losses_are_sane(run_lesson, path):
    m, _ = run_lesson(path)
    uniform = math.log(27)
    assert m["lesson"] == "06"
    # PyTorch's default init: logits spread a little, so a little above a uniform guess, never far from it
    assert uniform - 0.05 < m["initial_loss"] < uniform + 0.5, m["initial_loss"]
    losses = m["losses"]
    # the CI run learns past a uniform guess; the learner's smoke run, a step of each, only below where it began
    ceiling = uniform if path == SOLUTION else m["initial_loss"]
    assert all(1.5 < losses[k] < ceiling for k in ("train", "dev", "test")), losses
    budget = run_parameters(path)
    words = load_words(budget.get("data_path"))       # the learner's smoke run reads a short list
    size = {k: budget[k] for k in ("n_layer", "n_head", "n_embd")}
    assert m["n_parameters"] == create("transformer", vocab_size=27, block_size=max(map(len, words)) + 1,
                                       **size).n_parameters()
    assert set(m["positions"]) == {"with", "without"}
    assert m["train_seconds"] > 0 and m["steps_per_second"] > 0
    pieces = m["pieces"]
    assert list(pieces)[0] == "no attention" and list(pieces)[-1].startswith("+ dropout") and len(pieces) == 8
    assert all(uniform - 1.5 < p["dev"] < uniform + 0.5 and p["ms_per_step"] > 0 for p in pieces.values()), pieces
    assert m["same_as_library"] < 1e-5, "the notebook's model and mmlib.models.Transformer gave other logits"


def test_nonsense_parameters_stop_the_notebook_with_a_clear_message(tmp_path):
    # one run of the notebook as papermill writes it, its injected parameters after the parameters cell ...
    err, _ = refusal(SOLUTION, tmp_path, n_embd=30)
    assert type(err).__name__ == "ValueError" and "n_embd must be a multiple of n_head" in str(err)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"max_steps": 0}, "max_steps must be a positive whole number, got 0"),
        ({"exercise_steps": 2.5}, "exercise_steps must be a positive whole number, got 2.5"),
        ({"threads": 0}, "threads must be a positive whole number, got 0"),
        ({"warmup": -1}, "warmup must be a whole number >= 0, got -1"),
        ({"n_embd": 30}, "n_embd must be a multiple of n_head"),
        ({"dropout": 1.0}, "dropout must be a finite number in [0, 1)"),
        ({"lr": 0}, "lr must be a learning rate in (0, 10], got 0"),
        ({"batch_size": 2.5}, "batch_size must be a positive whole number, got 2.5"),
        ({"parts_steps": 0}, "parts_steps must be a positive whole number, got 0"),
        ({"parts_batch_size": -32}, "parts_batch_size must be a positive whole number, got -32"),
        ({"device": "tpu"}, "device must be one of"),
        ({"metrics_path": "06_transformer_solutions.ipynb"}, "metrics_path must end in .json"),
    ],
)
def test_each_nonsense_parameter_is_refused_before_anything_trains(overrides, message):
    # ... and every parameter's check in this process, on the notebook's own cells
    with pytest.raises(Exception) as err:
        run_parameter_checks(SOLUTION, **overrides)
    assert type(err.value).__name__ in ("ValueError", "MetricsError")
    assert message in str(err.value)


def test_the_default_parameters_pass_their_checks():
    # setup() would seed and set this process's threads: stand in for it; the checks before it all run
    run_parameter_checks(SOLUTION, setup=lambda seed, device, threads=None: (device, None))


# ---- the committed run at default parameters -------------------------------------------------


def test_committed_default_run_is_the_best_model_of_the_course():
    # Its training time is the machine's as much as the code's, so none is asserted: speed is measured in
    # benchmarks/, and the run's own time is in its metrics.
    m = results.notebook_metrics(SOLUTION)
    assert m is not None, "the committed solution notebook shows no metrics: execute it"
    nb = nbformat.read(SOLUTION, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert f"max_steps = {m['parameters']['max_steps']:_}" in params.source, "the committed run is not at the defaults"
    assert m["losses"]["dev"] <= 1.96, m["losses"]
    assert m["checks"]["correct"] == m["checks"]["total"] == N_CHECKS
    assert m["positions"]["without"] > m["positions"]["with"]   # positions help, measured
    dev = {name: p["dev"] for name, p in m["pieces"].items()}
    plain = [k for k in dev if not k.startswith(("+ residual", "+ LayerNorm", "+ dropout"))]
    assert len(plain) == 5 and dev["+ residual connections"] < min(dev[k] for k in plain), dev   # depth pays
    assert m["same_as_library"] < 1e-5
    assert set(m["grouped_dev"]) == {"4", "2", "1"}


# ---- attention against PyTorch's ---------------------------------------------------------------


def test_attention_weights_step_by_step_match_scaled_dot_product_attention():
    torch.manual_seed(0)
    attn = CausalSelfAttention(TransformerConfig(n_embd=24, n_head=3)).eval()
    x = torch.randn(5, 9, 24)
    q, k, v = attn.heads(x)
    w = attn.weights(x)
    assert w.shape == (5, 3, 9, 9)
    torch.testing.assert_close(w @ v, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6, rtol=0)
    torch.testing.assert_close(w.sum(-1), torch.ones(5, 3, 9))
    assert (w.triu(1) == 0).all()   # no weight on a later position


def test_no_position_of_the_model_attends_to_the_future():
    g = torch.Generator().manual_seed(0)
    model = create("transformer", generator=g, block_size=10, n_layer=2, n_head=2, n_embd=16)
    idx = torch.randint(0, 27, (4, 10), generator=g)
    maps = model.attention_maps(idx)
    assert len(maps) == 2 and all(m.shape == (4, 2, 10, 10) for m in maps)
    assert all((m.triu(1) == 0).all() for m in maps)
    assert model.training   # attention_maps leaves the mode it found
    # the whole model: no output at or before t moves when only the characters after t change
    assert ex.future_leaks(lambda i: model.eval()(i)[0], idx, 27, g) == []


def test_padding_never_reaches_the_loss_or_the_gradient():
    g = torch.Generator().manual_seed(0)
    model = create("transformer", generator=g, block_size=8, n_layer=2, n_head=2, n_embd=16).eval()
    X = torch.tensor([[0, 5, 1, 0, 0, 0, 0, 0], [0, 3, 4, 9, 2, 0, 0, 0]])
    Y = torch.tensor([[5, 1, 0, -1, -1, -1, -1, -1], [3, 4, 9, 2, 0, -1, -1, -1]])
    # the padded batch's loss is the mean over the 8 real targets, computed without the padding at all
    logits0, _ = model(X[:1, :3])
    logits1, _ = model(X[1:, :5])
    by_hand = torch.cat([F.cross_entropy(logits0[0], Y[0, :3], reduction="none"),
                         F.cross_entropy(logits1[0], Y[1, :5], reduction="none")]).mean()
    logits, loss = model(X, Y)
    torch.testing.assert_close(loss, by_hand, atol=1e-6, rtol=0)
    # no gradient reaches the logits at padded positions, whatever sits in the padding of X
    logits = logits.detach().requires_grad_()
    F.cross_entropy(logits.view(-1, 27), Y.view(-1), ignore_index=-1).backward()
    assert (logits.grad[Y == -1] == 0).all() and (logits.grad[Y != -1] != 0).any()
    X2 = X.clone()
    X2[Y == -1] = 7
    torch.testing.assert_close(model(X2, Y)[1], loss, atol=1e-6, rtol=0)
    # and cutting the batch after its longest name (as mmlib.train does) changes nothing either
    torch.testing.assert_close(model(*trim_padding(X, Y))[1], loss, atol=1e-6, rtol=0)
    assert trim_padding(X, Y)[0].shape == (2, 5)


def test_the_model_trains_a_few_steps_and_its_loss_falls():
    words = load_words()[:2000]
    vocab = Vocab.from_words(words)
    splits = build_splits(words, vocab, None, per_position=True)
    model = create("transformer", generator=torch.Generator().manual_seed(0), vocab_size=len(vocab),
                   block_size=splits["train"][0].shape[1], n_layer=2, n_head=2, n_embd=32)
    run = train(model, splits, TrainConfig(max_steps=40, batch_size=32, optimizer="adamw", schedule="cosine", lr=3e-3,
                                           warmup=5, progress=False))
    assert sum(run.losses[-5:]) / 5 < run.losses[0] - 0.5
    assert run.final["dev"] < math.log(len(vocab)) - 0.3


# ---- exercise 1: the probe names the missing piece ----------------------------------------------


def attention_without(scale=True, mask=True, window=True):
    def fn(q, k, v, w):
        T = q.shape[-2]
        s = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale else 1.0)
        if mask:
            ones = torch.ones(T, T, dtype=torch.bool, device=q.device)
            s = s.masked_fill(ones.triu(1) | (ones.tril(-w) if window else False), float("-inf"))
        return s.softmax(-1) @ v
    return fn


def test_a_correct_attention_passes():
    rows = ex.probe_attention(attention_without())
    assert len(rows) == len(ex.ATTENTION_CASES) and all(r.passed for r in rows), [r.text() for r in rows]


@pytest.mark.parametrize("scale, mask, window, named", [(False, True, True, "without the 1/sqrt(head size) scale"),
                                                        (True, False, True, "without any mask"),
                                                        (False, False, True, ("without any mask",
                                                                              "without the 1/sqrt(head size) scale")),
                                                        (True, True, False, "ignores the window")])
def test_a_missing_scale_mask_or_window_is_named(scale, mask, window, named):
    rows = ex.probe_attention(attention_without(scale, mask, window))
    wrong = [r for r in rows if not r.passed]
    assert wrong, "a wrong attention must fail"
    named = (named,) if isinstance(named, str) else named
    assert all(n in r.hint for r in wrong for n in named), [r.hint for r in wrong]
    # a single position has nothing to mask and a 1-number scale only when head size is 1: it may pass


def test_the_window_mask_keeps_the_last_window_positions_itself_included():
    assert ex.allowed(4, 2).int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    assert torch.equal(ex.allowed(5, 5), ex.allowed(5, None)) and torch.equal(ex.allowed(3, 1), torch.eye(3).bool())


def test_attention_that_raises_or_is_todo_is_reported():
    def broken(q, k, v, window):
        return q @ v.transpose(-2, -1) @ k.view(-1)   # a shape error on every input

    rows = ex.probe_attention(broken)
    assert all(r.status == "error" and "raised RuntimeError" in r.detail for r in rows)
    assert all(r.status == "todo" for r in ex.probe_attention(ex.TODO))
    assert all(r.status == "todo" for r in ex.probe_attention(lambda q, k, v, window: ex.TODO))
    rows = ex.probe_attention(lambda q, k, v: q)   # exercise 1 before the window: one argument short
    assert all("takes 3 positional arguments but 4 were given" in r.detail for r in rows)


# ---- exercise 2: the head with a window --------------------------------------------------------


class Head(nn.Module):
    def __init__(self, n_embd, head_size, window=None, block_size=16, causal=True, use_window=True):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.window, self.causal = (window if use_window else None), causal

    def forward(self, x):
        q, k, v = self.query(x), self.key(x), self.value(x)
        if self.window is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=ex.allowed(x.shape[1], self.window, x.device))


def test_a_windowed_head_passes_and_one_that_sees_the_future_or_too_far_back_is_caught():
    rows = ex.probe_causal_head(Head)
    assert len(rows) == 6 and all(r.passed for r in rows), [r.text() for r in rows]
    rows = ex.probe_causal_head(lambda n, h, w=None: Head(n, h, causal=False, use_window=False))
    leak = rows[3]
    assert not leak.passed and "positions changed although only later characters did" in leak.detail
    assert "position 0" in leak.detail
    rows = ex.probe_causal_head(lambda n, h, w=None: Head(n, h, use_window=False))
    assert rows[3].passed and not rows[4].passed and rows[5].passed
    assert "positions changed although only characters outside their window did" in rows[4].detail
    assert "position 3 " in rows[4].detail                           # the first one whose window excludes 0


def test_future_and_past_leaks_name_the_positions_that_moved():
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 5, (2, 4), generator=g)
    # a "model" whose position 1 reads position 3: only position 1 leaks, whenever position 3 changes
    leaks = ex.future_leaks(lambda i: torch.stack([i[:, 0], i[:, 3], i[:, 2], i[:, 3]], 1).float(), idx, 5, g)
    assert {(t, p) for t, p, _ in leaks} == {(1, 1), (2, 1)}
    # window 2: position 3 reads 2..3, but this one reads position 0 - it moves whenever position 0 changes
    leaks = ex.past_leaks(lambda i: torch.stack([i[:, 0], i[:, 1], i[:, 2], i[:, 0]], 1).float(), idx, 5, 2, g)
    assert {(t, p) for t, p, _ in leaks} == {(0, 3), (1, 3)}


def test_a_head_without_its_layers_or_with_the_wrong_shape_is_named():
    class NoLayers(nn.Module):
        def __init__(self, n, h, window=None):
            super().__init__()

    rows = ex.probe_causal_head(NoLayers)
    assert rows[0].status == "error" and "no layer key, query, value" in rows[0].detail

    class Flat(Head):
        def forward(self, x):
            return super().forward(x).sum(-1)

    rows = ex.probe_causal_head(Flat)
    assert rows[0].status == "shape" and "(4, 8, 4)" in rows[0].detail


# ---- exercise 3: multi-head attention ----------------------------------------------------------


def grouped(q, k, v, *, tile=False, scale=True, mask=True, softmax_dim=-1):
    """Grouped-query attention written out, with one of the usual mistakes switched on."""
    group = q.shape[1] // k.shape[1]
    expand = (lambda t: t.repeat(1, group, 1, 1)) if tile else (lambda t: t.repeat_interleave(group, 1))
    k, v = expand(k), expand(v)
    T = q.shape[-2]
    wei = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5 if scale else 1.0)
    if mask:
        wei = wei.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return wei.softmax(softmax_dim) @ v


def test_grouped_attention_passes_and_its_mistakes_are_named():
    assert all(r.passed for r in ex.probe_grouped_attention(grouped))
    mistakes = {"tile": "read key/value head h % ", "scale": "without the 1/sqrt(head size) scale",
                "mask": "without any mask", "softmax_dim": "softmax over dim=-2"}
    for kw, named in mistakes.items():
        value = -2 if kw == "softmax_dim" else (kw == "tile")
        rows = ex.probe_grouped_attention(lambda q, k, v: grouped(q, k, v, **{kw: value}))
        failed = [r for r in rows if not r.passed]
        assert failed and all(named in r.hint for r in failed if r.status == "wrong"), [r.text() for r in failed]
    assert all(r.status == "todo" for r in ex.probe_grouped_attention(ex.TODO))


def test_a_grouped_attention_that_changes_its_inputs_or_returns_one_head_per_group_is_named():
    def in_place(q, k, v):
        q /= q.shape[-1] ** 0.5
        return grouped(q, k, v, scale=False)

    rows = ex.probe_grouped_attention(in_place)
    assert all(not r.passed and "changed its input q in place" in r.detail for r in rows)
    rows = ex.probe_grouped_attention(lambda q, k, v: grouped(q[:, ::q.shape[1] // k.shape[1]], k, v))
    assert any(r.status == "shape" and "one output per key/value head" in r.detail for r in rows)


def test_kv_cache_counts_a_key_and_a_value_per_key_value_head_and_layer():
    assert ex.kv_cache_numbers(n_layer=4, n_head=4, n_kv_head=2, head_size=16) == 2 * 4 * 2 * 16


# ---- the notebook's model is the library's -------------------------------------------------------

def notebook_classes() -> dict:
    """Section 4's classes, executed from the solution notebook's own cells."""
    nb = nbformat.read(SOLUTION, as_version=4)
    ns = {"torch": torch, "nn": nn, "F": F}
    for name in ("Head", "MultiHeadAttention", "FeedForward", "Block", "GPT"):
        [cell] = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(f"class {name}(")]
        exec(compile(cell.source, f"<lesson 06: {name}>", "exec"), ns)  # noqa: S102 - the course's own notebook
    return ns


@pytest.mark.parametrize("n_layer, n_head, n_embd, T", [(2, 4, 32, 11), (1, 1, 8, 5), (3, 2, 12, 16)])
def test_the_notebooks_transformer_and_the_librarys_are_one_function(n_layer, n_head, n_embd, T):
    ns = notebook_classes()
    torch.manual_seed(n_layer)
    blocks = nn.Sequential(*[ns["Block"](n_embd, n_head, 16) for _ in range(n_layer)])
    net = ns["GPT"](27, 16, n_embd, blocks)
    with torch.no_grad():        # gains and biases away from 1 and 0, so that a part copied to the wrong place shows
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model = create("transformer", vocab_size=27, block_size=16, n_layer=n_layer, n_head=n_head,
                   n_embd=n_embd).load_heads(net)
    idx = torch.randint(0, 27, (4, T))
    targets = torch.randint(0, 27, (4, T))
    targets[:, -2:] = -1
    (logits, loss), (want, want_loss) = model(idx, targets), net(idx, targets)
    torch.testing.assert_close(logits, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, want_loss, atol=1e-5, rtol=1e-5)


def test_load_heads_refuses_a_model_of_another_shape():
    ns = notebook_classes()
    plain = ns["GPT"](27, 16, 16, nn.Sequential(*[ns["Block"](16, 2, 16, layernorm=False) for _ in range(2)]))
    with pytest.raises(ValueError, match=r"block 0's ln1 \(Identity\) does not fit this model's LayerNorm"):
        create("transformer", vocab_size=27, block_size=16, n_layer=2, n_head=2, n_embd=16).load_heads(plain)
    full = ns["GPT"](27, 16, 16, nn.Sequential(*[ns["Block"](16, 2, 16) for _ in range(2)]))
    with pytest.raises(ValueError, match="expected 3 blocks"):
        create("transformer", vocab_size=27, block_size=16, n_layer=3, n_head=2, n_embd=16).load_heads(full)
    with pytest.raises(ValueError, match="block 0 has 2 heads; this model has 4"):
        create("transformer", vocab_size=27, block_size=16, n_layer=2, n_head=4, n_embd=16).load_heads(full)


def test_beat_target_says_by_how_much():
    assert ex.beat_target("dev", 1.90, 1.95).passed
    r = ex.beat_target("dev", 2.0, 1.95)
    assert not r.passed and "misses the lesson's 1.9500 by 0.0500" in r.detail
    assert ex.beat_target("dev", ex.TODO, 1.95).status == "todo"


# ---- the widgets' computation ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    words = load_words()
    vocab = Vocab.from_words(words)
    model = create("transformer", generator=torch.Generator().manual_seed(0), vocab_size=len(vocab),
                   block_size=16, n_layer=2, n_head=2, n_embd=16)
    return model, vocab, words


def test_attention_map_rows_are_averages_over_the_past(small):
    model, vocab, _ = small
    a = attention_map(model, vocab, "olivia", layer=1, head=1)
    assert a.chars == list(".olivia") and a.weights.shape == (7, 7)
    torch.testing.assert_close(a.weights.sum(1), torch.ones(7))
    assert (a.weights.triu(1) == 0).all()
    torch.testing.assert_close(a.weights, model.attention_maps(torch.tensor([[0, *vocab.encode("olivia")]]))[1][0, 1])
    text = a.text()
    assert text.startswith("name='olivia' layer=1 head=1") and len(text.splitlines()) == 8
    assert draw_attention(a).axes


@pytest.mark.parametrize("kw, message", [
    ({"name": "a" * 16}, "reads at most 15 characters"),
    ({"name": " "}, "type a name"),
    ({"name": "ab1"}, "not in the vocabulary"),
    ({"layer": 2}, "layer must be a whole number from 0 to 1"),
    ({"head": -1}, "head must be a whole number from 0 to 1"),
])
def test_attention_map_refuses_what_it_cannot_show(small, kw, message):
    model, vocab, _ = small
    with pytest.raises(ValueError, match=message):
        attention_map(model, vocab, **{"name": "emma", **kw})


def test_attention_map_needs_a_transformer(small):
    _, vocab, _ = small
    with pytest.raises(TypeError, match="need a transformer"):
        attention_map(create("bigram"), vocab, "emma")


def test_attention_explorer_follows_its_widgets_and_explains_a_bad_name(small):
    model, vocab, _ = small
    e = attention_explorer(model, vocab, "emma")
    e.head.value = 1
    e.layer.value = 1
    assert (e.result.layer, e.result.head, e.result.name) == (1, 1, "emma")
    e.name.value = "ava"
    assert e.result.chars == list(".ava") and e.error is None
    e.name.value = "x" * 20
    assert "reads at most 15 characters" in e.error
    assert e.result.name == "ava"   # the last good map stays


def test_sample_summary_counts_new_words(small):
    model, vocab, words = small
    s = sample_summary(model, vocab, words, 30, temperature=1.0, seed=3)
    assert len(s.words) == 30 and s.share_new == sum(w not in set(words) for w in s.words) / 30
    same = sample_summary(model, vocab, set(s.words), 30, temperature=1.0, seed=3)   # the same draws
    assert same.words == s.words and same.share_new == 0
    greedy = sample_summary(model, vocab, words, 5, top_k=1, seed=0)
    assert len(set(greedy.words)) == 1   # top-1 is deterministic
    assert sample_summary(model, vocab, words, 5, top_k=0, seed=0).top_k is None   # 0 is "off"
    assert "new (not in the training file)" in s.text()
    with pytest.raises(ValueError, match="temperature must be"):
        sample_summary(model, vocab, words, 5, temperature=0)
    with pytest.raises(ValueError, match="known must hold"):
        sample_summary(model, vocab, [], 5)


def test_sampling_explorer_follows_its_sliders(small):
    model, vocab, words = small
    e = sampling_explorer(model, vocab, words, 20, seed=1)
    e.temperature.value = 0.5
    e.top_k.value = 3
    assert (e.result.temperature, e.result.top_k) == (0.5, 3)
    e.top_k.value = 0
    assert e.result.top_k is None and e.redraw_seconds > 0


# ---- the course-wide comparison ---------------------------------------------------------------


def test_course_results_name_every_lesson_without_metrics_instead_of_failing(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(1)")]
    nbformat.write(nb, tmp_path / "02_mlp_solutions.ipynb")
    current = {"lesson": "06", "model": "transformer", "n_parameters": 1, "train_seconds": 1.0,
               "losses": {"train": 2.0, "dev": 2.0, "test": None}}
    found, notes = results.course_results(current, folder=tmp_path)
    assert list(found) == ["06"]
    assert any(n.startswith("lesson 02: 02_mlp_solutions.ipynb shows no metrics") for n in notes)
    assert any(n.startswith("lesson 01: no solution notebook") for n in notes)
    assert "| 06 | transformer | 1 | 2.0000 | 2.0000 |  | 1 s |" in results.results_table(found)
