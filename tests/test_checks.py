"""mmlib.checks: every verdict a learner can see, and what each row says."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmlib.checks import TODO, Report, check, check_that, is_todo, report, tally


def test_todo_is_not_attempted():
    r = check("N", TODO, torch.ones(2))
    assert r.status == "todo" and not r.passed and is_todo(1, TODO) and not is_todo(1, 2)


def test_exact_and_close_pass_with_the_tolerance_stated():
    w = torch.tensor([1.0, 2.0])
    assert check("a", w.clone(), w).status == "exact"
    r = check("a", w + 1e-7, w, atol=1e-6)
    assert r.status == "close" and "atol=1e-06" in r.detail
    assert check("a", np.array([1.0, 2.0]), w).status == "exact", "numpy answers are accepted"
    assert check("a", [1, 2], w).status == "exact", "lists are accepted"
    assert check("n", torch.tensor(3), 3).status == "exact", "dtype does not matter, values do"


def test_wrong_value_says_where_by_how_much_and_how_many():
    w = torch.zeros(3, 4)
    g = w.clone()
    g[1, 2], g[0, 0] = 0.5, 0.1
    r = check("W", g, w, atol=0.01, hint="look at the bias")
    assert r.status == "wrong" and not r.passed
    assert "max |difference| 0.5 at [1, 2]" in r.detail and "2 of 12 entries" in r.detail
    assert "hint: look at the bias" in r.text()


def test_wrong_shape_names_both_shapes():
    r = check("W", torch.zeros(4, 3), torch.zeros(3, 4))
    assert r.status == "shape" and "expected shape (3, 4), got (4, 3)" in r.detail and "transpose" in r.detail


def test_nan_and_none_and_junk_are_reported_not_raised():
    g = torch.zeros(3)
    g[2] = float("nan")
    assert "NaN" in check("v", g, torch.zeros(3)).detail
    assert check("v", None, 1.0).status == "error"
    assert check("v", "abc", 1.0).status == "error"
    assert check("v", float("nan"), 1.0).status == "wrong"


def test_scalar_rows_read_naturally():
    r = check("loss", 2.5, 2.45, atol=1e-3)
    assert r.detail == "got 2.5, expected 2.45: |difference| 0.05 is outside atol=0.001"


def test_check_that_for_bounds():
    assert check_that("dev", 2.1, 2.1 < 2.2, "2.1 < 2.2").passed
    assert not check_that("dev", 2.3, 2.3 < 2.2, "2.3 is not below 2.2").passed
    assert check_that("dev", TODO, False, "").status == "todo"


def test_report_counts_and_renders_html_and_text(capsys):
    rep = report(check("a", 1, 1), check("b", 2, 1), check("c", TODO, 1), title="Exercise 9")
    assert isinstance(rep, Report) and rep.summary() == "1/3 correct, 1 wrong, 1 not attempted"
    assert not rep.all_passed
    printed = capsys.readouterr().out
    assert "Exercise 9" in printed and "b: wrong" in printed and "not attempted yet" in printed
    html = rep._repr_html_()
    assert "color:#cf222e" in html and "<code>b</code>" in html
    assert tally(rep, rep) == {"correct": 2, "exact": 2, "wrong": 2, "todo": 2, "total": 6}


@pytest.mark.parametrize("bad", [torch.zeros(2, 2), torch.ones(2, 2) * 2])
def test_a_check_can_fail(bad):
    assert not check("x", bad, torch.ones(2, 2)).passed


def test_shape_off_by_a_size_one_dimension_suggests_keepdim():
    r = check("dsum", torch.zeros(32), torch.zeros(32, 1))
    assert r.status == "shape" and "keepdim=True" in r.detail


def test_exact_matches_are_mentioned_only_where_asked():
    rows = [check("a", 1.0, 1.0), check("b", 1.0 + 1e-9, 1.0)]
    assert Report(rows).summary() == "2/2 correct"
    assert Report(rows, mention_exact=True).summary() == "2/2 correct (1 exact)"


@pytest.mark.parametrize("factor, n, cause", [
    (32, 32, "a missing division by n = 32 (the batch size)?"),
    (1 / 32, 32, "divided by n = 32 once too often?"),
    (31 / 32, 32, "n where n - 1 belongs (Bessel's correction, n = 32)?"),
    (32 / 31, 32, "n - 1 where n belongs (Bessel's correction, n = 32)?"),
    (-1, None, "the sign is flipped"),
    (2, None, "a factor of 2 too many"),
    (0.5, None, "half of what it should be"),
    (3.7, None, "one constant factor is off"),
])
def test_a_constant_factor_is_named_with_its_likely_cause(factor, n, cause):
    want = torch.randn(32, 27, generator=torch.Generator().manual_seed(0))
    r = check("dlogits", want * factor, want, atol=1e-6, rtol=1e-4, n=n)
    assert r.status == "wrong"
    assert f"x the expected value everywhere (shape (32, 27)): {cause}" in r.detail, r.detail


def test_a_partly_wrong_answer_is_not_called_a_factor():
    want = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    got = want.clone()
    got[0] *= 32          # one row scaled: a partial error, reported by where and how many
    r = check("x", got, want, n=32)
    assert "everywhere" not in r.detail and "5 of 40 entries outside" in r.detail
    assert "everywhere" not in check("s", 3.0, 1.5).detail   # one number is never "proportional"


def test_an_extra_size_one_dimension_is_not_blamed_on_keepdim():
    r = check("x", torch.zeros(2, 1, 24), torch.zeros(2, 24))
    assert r.status == "shape" and "has one too many" in r.detail and "lost one" not in r.detail


def test_bessels_correction_under_a_square_root_is_named():
    # A normalisation by the unbiased standard deviation where the batch's own belongs: sqrt((n-1)/n) x.
    n = 32
    want = torch.linspace(-2, 2, 50)
    r = check("out", want * math.sqrt((n - 1) / n), want, atol=1e-6, n=n)
    assert r.status == "wrong" and "unbiased (n - 1) variance" in r.detail and "n = 32" in r.detail
    r = check("out", want * math.sqrt(n / (n - 1)), want, atol=1e-6, n=n)
    assert r.status == "wrong" and "batch's own (n) variance" in r.detail


# ---- the toolkit for running learner code (issue 14) ----------------------------------------------------


def test_attempt_turns_whatever_learner_code_does_into_a_row():
    from mmlib.checks import attempt

    def boom(x):
        raise RuntimeError("The size of tensor a (16) must match\nthe size of tensor b (8)")

    r = attempt("out", boom, 1, what="head(x)").row
    assert r.status == "error" and r.detail == "head(x) raised RuntimeError: The size of tensor a (16) must match"
    assert attempt("out", lambda: TODO, what="f()").row.status == "todo"
    assert "returned None" in attempt("out", lambda: None, what="f()").row.detail
    ok = attempt("out", lambda a, b=0: a + b, 1, b=2, what="f()")
    assert ok.ok and ok.value == 3


def test_tensor_problem_names_a_wrong_type_device_or_dtype():
    from mmlib.checks import tensor_problem
    x = torch.zeros(2)
    assert tensor_problem(torch.ones(2), x) == ""
    assert "got list" in tensor_problem([1.0], x)
    assert "floating-point" in tensor_problem(torch.ones(2, dtype=torch.long), x)
    meta = torch.empty(2, device="meta")
    assert "on meta but its input was on cpu" in tensor_problem(meta, x)


def test_shares_parameters_catches_an_assignment_and_shared_tensors_but_not_a_copy():
    import copy

    from mmlib.checks import shares_parameters
    model = torch.nn.Linear(2, 2)
    assert "itself, not a copy" in shares_parameters(model, model)
    assert "shares 2 parameter tensors" in shares_parameters(torch.nn.Sequential(model), model)
    assert shares_parameters(copy.deepcopy(model), model) == ""
    assert shares_parameters(TODO, model) == ""


def test_train_your_model_trains_only_a_model_of_its_own_with_a_train_config(capsys):
    import copy

    from mmlib.checks import train_your_model
    from mmlib.data import build_splits, train_and_dev
    from mmlib.models import create
    from mmlib.train import TrainConfig
    from mmlib.vocab import Vocab

    words = ["emma", "olivia", "ava", "mia", "sophia", "isabella", "amelia", "evelyn", "luna", "ella"]
    vocab = Vocab.from_words(words)
    model = create("mlp", generator=torch.Generator().manual_seed(0), vocab_size=len(vocab), block_size=3,
                   n_embd=4, n_hidden=8)
    cfg = TrainConfig(max_steps=3, batch_size=4, seed=0)
    calls = []

    def splits_for(m):
        calls.append(m)
        return train_and_dev(build_splits(words, vocab, m.block_size))

    assert train_your_model(TODO, cfg, model, splits_for) == (TODO, "")
    assert train_your_model(copy.deepcopy(model), TODO, model, splits_for) == (TODO, "")
    dev, problem = train_your_model(model, cfg, model, splits_for)
    assert dev is TODO and "itself, not a copy" in problem
    dev, problem = train_your_model(copy.deepcopy(model), {"max_steps": 3}, model, splits_for)
    assert dev is TODO and "must be a TrainConfig" in problem and "got dict" in problem
    assert calls == []   # none of these trained anything
    mine = copy.deepcopy(model)
    before = [p.clone() for p in model.parameters()]
    dev, problem = train_your_model(mine, cfg, model, splits_for)
    assert problem == "" and isinstance(dev, float) and math.isfinite(dev) and calls == [mine]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))   # the lesson's model untouched
    assert "3 steps in" in capsys.readouterr().out


def test_train_your_model_refuses_when_the_lesson_model_changed_after_its_run():
    import copy

    from mmlib.checks import train_your_model
    from mmlib.data import build_splits, train_and_dev
    from mmlib.models import create
    from mmlib.train import TrainConfig, state_digest, train
    from mmlib.vocab import Vocab

    words = ["emma", "olivia", "ava", "mia", "sophia", "isabella", "amelia", "evelyn", "luna", "ella"]
    vocab = Vocab.from_words(words)
    splits = train_and_dev(build_splits(words, vocab, 3))
    model = create("mlp", generator=torch.Generator().manual_seed(0), vocab_size=len(vocab), block_size=3,
                   n_embd=4, n_hidden=8)
    cfg = TrainConfig(max_steps=3, batch_size=4, seed=0, progress=False)
    main = train(model, splits, cfg)
    assert main.digest == state_digest(model) and main.digest != ""
    with torch.no_grad():
        model.eval()(splits["dev"][0])           # reading the model changes nothing
    dev, problem = train_your_model(copy.deepcopy(model), cfg, model, lambda m: splits, main)
    assert problem == "" and math.isfinite(dev)
    # a learner's cell trains the lesson's model further with train() itself, then copies it: the new run's own
    # result has the new digest, but the lesson's `main` keeps the one the target belongs to
    again = train(model, splits, cfg)
    assert again.digest != main.digest
    dev, problem = train_your_model(copy.deepcopy(model), cfg, model, lambda m: splits, main)
    assert dev is TODO and "has changed since its training run ended" in problem
    assert train_your_model(copy.deepcopy(model), cfg, model, lambda m: splits)[1] == ""   # no run to compare with


def test_train_your_model_trains_a_layer_model_as_the_trainer_does():
    from mmlib.checks import train_your_model
    from mmlib.data import build_splits, train_and_dev
    from mmlib.layers import LayerModel, hierarchical_stack
    from mmlib.models import create
    from mmlib.train import TrainConfig
    from mmlib.vocab import Vocab

    words = ["emma", "olivia", "ava", "mia", "sophia", "isabella", "amelia", "evelyn", "luna", "ella"]
    vocab = Vocab.from_words(words)
    model = create("wavenet", generator=torch.Generator().manual_seed(0), vocab_size=len(vocab), block_size=4,
                   n_embd=4, n_hidden=8)
    mine = LayerModel(hierarchical_stack(len(vocab), 4, 4, 8, generator=torch.Generator().manual_seed(1)), 4)
    dev, problem = train_your_model(mine, TrainConfig(max_steps=3, batch_size=4, seed=0, progress=False), model,
                                    lambda m: train_and_dev(build_splits(words, vocab, m.block_size)))
    assert problem == "" and math.isfinite(dev)
    dev, problem = train_your_model(torch.nn.Linear(2, 2), TrainConfig(max_steps=3), model, lambda m: {})
    assert dev is TODO and "must be a model the trainer takes" in problem and "got Linear" in problem


def test_beat_target_rows():
    from mmlib.checks import beat_target
    assert beat_target("dev", 1.9, 2.0).passed
    assert "misses the lesson's 2.0000 by 0.1000" in beat_target("dev", 2.1, 2.0).detail
    equal = beat_target("dev", 2.0, 2.0)      # a rounded figure: not "misses by -0.0000"
    assert equal.status == "wrong" and "not below the lesson's 2 (it equals it" in equal.detail
    assert beat_target("dev", TODO, 2.0).status == "todo"
    assert "diverged" in beat_target("dev", float("nan"), 2.0).detail
    assert "got dict" in beat_target("dev", {"dev": 1.0}, 2.0).detail
    assert beat_target("dev", 1.9, 2.0, problem="not a copy").status == "error"


def test_shape_rows_name_a_transpose_and_a_lost_dimension():
    w = torch.arange(6.0).view(2, 3)
    assert "the transpose of the expected one" in check("W", w.T, w).detail
    r = check("x", torch.zeros(24), torch.zeros(1, 24))
    assert "lost one" in r.detail and "squeeze" in r.detail


def test_a_scalar_with_its_sign_flipped_says_so_and_a_factor_can_have_an_exercises_own_cause():
    assert "the sign is flipped" in check("nll", -2.5, 2.5, atol=1e-4).detail
    assert check("nll", 2.4, 2.5, atol=1e-4).detail.endswith("outside atol=0.0001")
    w = torch.tensor([1.0, 2.0, 3.0])
    assert "here it means this" in check("g", 32 * w, w, n=32, causes=[(32.0, "here it means this")]).detail
    assert "a missing division by n = 32" in check("g", 32 * w, w, n=32).detail


# ---- what an answer does besides its output (issue 27) ------------------------------------------------

def _head(mask_as="buffer", shared=False):
    from torch import nn

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.key = nn.Linear(4, 2, bias=False)
            self.query = self.key if shared else nn.Linear(4, 2, bias=False)
            tril = torch.ones(3, 3).tril()
            if mask_as == "buffer":
                self.register_buffer("tril", tril)
            elif mask_as == "parameter":
                self.tril = nn.Parameter(tril)
            else:
                self.tril = tril

        def forward(self, x):
            self.tril.triu_(-1) if mask_as == "cut" else None
            return self.query(x) @ self.key(x).transpose(-2, -1)
    return Head()


def test_module_inventory_names_a_trained_mask_a_plain_attribute_and_shared_layers():
    from mmlib.checks import module_inventory
    want = {"key.weight": (2, 4), "query.weight": (2, 4)}
    assert module_inventory(_head(), want, buffers=("tril",)) == []
    assert any("`tril` is a trainable nn.Parameter" in p for p in module_inventory(_head("parameter"), want, ("tril",)))
    assert any("`tril` is a plain tensor attribute" in p for p in module_inventory(_head("plain"), want, ("tril",)))
    assert any("`key.weight` and `query.weight` are one and the same tensor" in p
               for p in module_inventory(_head(shared=True), want, ("tril",)))
    extra = module_inventory(_head(), {"key.weight": (2, 4)}, ("tril",))
    assert any("an extra parameter `query.weight`" in p for p in extra)
    assert any("no parameter `value.weight`" in p for p in module_inventory(_head(), {**want, "value.weight": (2, 4)}))


def test_state_a_call_changes_inputs_it_changes_and_graphs_it_keeps_are_found():
    from mmlib.checks import buffers_changed_by, changed, graph_in_state, inputs_changed_sentence, snapshot
    x = torch.randn(2, 3, 4)
    head = _head("cut")
    assert buffers_changed_by(head, lambda: head(x)) == ["tril"]
    assert buffers_changed_by(head, lambda: head(x)) == []          # cut once: a second call changes nothing
    before = snapshot(q=x, n=3)
    x.mul_(2)
    assert changed(before, q=x) == ["q"] and "changed its input q in place" in inputs_changed_sentence(["q"], "f")

    class Stats:
        pass
    s = Stats()
    leaf = torch.randn(4, requires_grad=True)
    s.mean, s.var = leaf * 2, leaf.detach() * 2
    assert graph_in_state(s, ["mean", "var"]) == ["mean"]


def test_device_problem_finds_a_tensor_made_on_the_cpu_and_on_one_thread_restores_the_setting():
    from mmlib.checks import device_problem, on_one_thread
    q = torch.randn(2, 3, 3)

    def cpu_mask(q):
        return q.masked_fill(torch.ones(3, 3).triu(1).bool(), 0.0)

    def any_device(q):
        return q.masked_fill(torch.ones(3, 3, device=q.device).triu(1).bool(), 0.0)

    assert "device=x.device" in device_problem(cpu_mask, q, what="f") and device_problem(any_device, q, what="f") == ""
    threads = torch.get_num_threads()
    assert on_one_thread(torch.get_num_threads)() == 1 and torch.get_num_threads() == threads


def test_history_problem_names_a_setting_a_first_call_fixed_and_passes_a_module_without_history():
    from torch import nn

    from mmlib.checks import history_problem, plain_attributes

    class FixesItsLength(nn.Module):           # keeps the first input's length, as a setting
        def __init__(self):
            super().__init__()
            self.length = None

        def forward(self, x):
            if self.length is None:
                self.length = x.shape[1]
            return x[:, : self.length].sum(1)

    class Stateless(FixesItsLength):
        def forward(self, x):
            return x.sum(1)

    x = torch.randn(2, 6)
    said = history_problem(FixesItsLength(), x[:, :2], x, what="the layer")
    assert "output on (2, 6) changes after one call on (2, 2)" in said and "`length` None -> 2" in said
    assert history_problem(Stateless(), x[:, :2], x, what="the layer") == ""
    assert plain_attributes(FixesItsLength()) == {"length": None}
