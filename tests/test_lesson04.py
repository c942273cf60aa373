"""Lesson 04 (backprop ninja): the lesson's metrics, and the gradient checks and closed forms it relies on."""

from __future__ import annotations

import math
import re

import nbformat
import pytest
import torch
import torch.nn.functional as F
from conftest import NOTEBOOKS, refusal, run_parameter_checks, smoke_words

from mmlib.checks import TODO
from mmlib.expected import lesson04 as E
from mmlib.expected.lesson04 import probe_backward
from mmlib.gradcheck import GradReport, Step, check_grads, hints_from_steps, resolve_dtype, tolerances

SOLUTION = NOTEBOOKS / "solutions" / "04_backprop_ninja_solutions.ipynb"
LEARNER = NOTEBOOKS / "04_backprop_ninja.ipynb"
EXERCISES = ("exercise_1", "exercise_2", "exercise_3", "exercise_4")
N_CHECKS = {"exercise_1": 26, "exercise_2": 1, "exercise_3": 1, "exercise_4": 7}


# --- the lesson, run at its CI parameters ---------------------------------------------------------

def test_solution_passes_every_check(run_lesson):
    metrics, _ = run_lesson(SOLUTION)
    c = metrics["checks"]
    assert c["total"] == sum(N_CHECKS.values())
    assert c["correct"] == c["total"], f"solution checks not all passed: {c}"
    for ex in EXERCISES:
        t = metrics["checks_by_exercise"][ex]
        assert t["total"] == N_CHECKS[ex] and t["correct"] == t["total"], f"{ex}: {t}"
    # round-off only: float32 differences of correct formulas are far below the tolerance
    for name, d in metrics["max_abs_diff"].items():
        assert d is not None and d < 1e-6, f"{name}: max |difference| {d}"


def test_solution_trains_with_the_hand_written_backward(run_lesson):
    metrics, _ = run_lesson(SOLUTION)
    p = metrics["parameters"]
    # the learning-rate schedule has lessons 02 and 03's names and meaning: lr, then lr_late from lr_decay_step
    assert p["lr_decay_step"] == p["max_steps"] // 2, "lr_decay_step=None means halfway"
    assert p["lr"] > p["lr_late"] > 0
    assert metrics["trained"] is True
    assert metrics["steps_trained"] == p["max_steps"]
    # The first batch at initialisation: close to uniform guessing, ln 27 = 3.30.
    assert 3.0 < metrics["check_batch_loss"] < 3.8
    # At the CI budget (1000 steps) the calibrated-BatchNorm losses sit near 2.4; untrained would be ~3.3,
    # a broken backward pass would not go down at all.
    train, val = metrics["losses"]["train"], metrics["losses"]["dev"]
    assert train is not None and val is not None
    assert 2.0 < train < 2.7 and 2.0 < val < 2.7, (train, val)
    assert abs(val - train) < 0.1, "dev and train loss should be close for this small network"
    assert len(metrics["samples"]) == 20 and all(isinstance(w, str) for w in metrics["samples"])


def test_learner_version_attempts_nothing_and_does_not_crash(run_lesson):
    metrics, _ = run_lesson(LEARNER)
    c = metrics["checks"]
    assert c["total"] == sum(N_CHECKS.values())
    assert c["todo"] == c["total"] and c["correct"] == 0 and c["wrong"] == 0, c
    for ex in EXERCISES:
        t = metrics["checks_by_exercise"][ex]
        assert t["todo"] == t["total"] == N_CHECKS[ex]
    assert metrics["trained"] is False and metrics["losses"] == {"train": None, "dev": None, "test": None}
    # exercise 4 waited for the 28 answers of exercises 1-3 instead of crashing on them
    assert metrics["todo_before_exercise_4"] == N_CHECKS["exercise_1"] + N_CHECKS["exercise_2"] + N_CHECKS["exercise_3"]


def test_float64_shrinks_the_differences_to_round_off(run_lesson):
    metrics, _ = run_lesson(SOLUTION, dtype="float64", max_steps=50, data_path=str(smoke_words()))
    assert metrics["checks"]["correct"] == metrics["checks"]["total"]
    for name, d in metrics["max_abs_diff"].items():
        assert d is not None and d < 1e-14, f"{name}: max |difference| {d} in float64"


@pytest.mark.parametrize("bad, message", [
    ({"dtype": "float16"}, "dtype must be 'float32' or 'float64'"),
    ({"batch_size": 1}, "batch_size must be a whole number >= 2"),
    ({"lr": 0}, "lr must be a learning rate in (0, 10]"),
    ({"lr_late": "0.01"}, "lr_late must be a learning rate in (0, 10]"),
    ({"lr_decay_step": -1}, "lr_decay_step must be a whole number >= 0"),
    ({"max_steps": 0}, "max_steps must be a positive whole number"),
    ({"check_steps": 2.5}, "check_steps must be a positive whole number"),
    ({"max_steps": 3, "check_steps": 5}, "check_steps must be <= max_steps"),
])
def test_nonsense_parameters_give_a_clear_error(bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        run_parameter_checks(SOLUTION, **bad)


def test_a_nonsense_parameter_papermill_injects_stops_the_notebook(tmp_path):
    err, _ = refusal(SOLUTION, tmp_path, dtype="float16")
    assert type(err).__name__ == "ValueError" and "dtype must be 'float32' or 'float64'" in str(err), err


# --- exercise 4's probe (mmlib.expected.lesson04.probe_backward), called with backward passes of our own ---

def _forward(params, X, Y=None):
    """Stands in for the lesson's forward: the backward passes below only need the batch from the cache."""
    return None, {"X": X}


def _backward(params, cache, Y):
    return E.manual_backward(params, cache["X"], Y)


def _probe(backward, *, after=(), n=24):
    p, (X, Y) = _params(), _batch(n=n)
    return p, probe_backward(backward, _forward, p, X, Y, want=E.autograd_grads(p, X, Y), names=E.PARAMS, after=after)


def test_probe_lets_a_correct_backward_train_and_stacks_its_steps():
    p, probe = _probe(_backward)
    assert probe.ready and "ready to train" in probe.message()
    steps = [_batch(n=12, seed=s) for s in (2, 3)]
    got = [_backward(p, {"X": X}, Y) for X, Y in steps]
    want = [E.autograd_grads(p, X, Y) for X, Y in steps]
    rep = probe.check(got, want, atol=1e-12, rtol=1e-9, show=False)
    assert rep.all_passed and rep.counts["total"] == len(E.PARAMS)
    assert "the probe batch and the first 2 training steps" in rep.title


def test_probe_catches_a_backward_that_uses_the_notebooks_batch_size():
    # Right on the 12-example batches it was written for, off by a factor 2 on the probe batch of 24.
    def wrong_n(params, cache, Y):
        return {k: v * len(Y) / 12 for k, v in _backward(params, cache, Y).items()}

    p, probe = _probe(wrong_n)
    assert probe.ready   # the shapes fit, so it trains; the check says what is wrong
    rep = probe.check(atol=1e-12, rtol=1e-9, show=False)
    assert rep.counts["wrong"] >= 6, rep.counts   # every gradient but db1 (zero up to round-off)
    # With training steps on the 12-example batches it was written for, the rows say the error is the probe's only.
    steps = [_batch(n=12, seed=s) for s in (2, 3)]
    rep = probe.check([wrong_n(p, {"X": X}, Y) for X, Y in steps], [E.autograd_grads(p, X, Y) for X, Y in steps],
                      atol=1e-12, rtol=1e-9, show=False)
    row = next(r for r in rep.results if r.name == "dW2")
    assert row.status == "wrong" and "wrong only on the probe batch of 24" in row.detail, row.text()
    assert "2 x autograd's" in row.detail and "global batch size" in row.detail and "X.shape[0]" in row.hint


def test_probe_says_when_backward_raises_only_for_targets_that_miss_the_last_character():
    # One-hot as wide as the largest target: raises on a batch without character 26, runs on one with it.
    def narrow_one_hot(params, cache, Y):
        grads = _backward(params, cache, Y)
        F.one_hot(Y).to(grads["b2"].dtype) + torch.zeros(len(Y), params["W2"].shape[1], dtype=grads["b2"].dtype)
        return grads

    p, X = _params(), _batch(n=30)[0]
    Y = torch.arange(30) % 20   # every target below 26
    probe = probe_backward(narrow_one_hot, _forward, p, X, Y, want=E.autograd_grads(p, X, Y), names=E.PARAMS)
    assert not probe.ready and "runs when the batch's targets include the last character (26)" in probe.problem
    assert "F.one_hot(Y, num_classes)" in probe.problem


def test_probe_names_a_key_that_is_not_a_parameter():
    def renamed(params, cache, Y):
        grads = _backward(params, cache, Y)
        grads["db1"] = grads.pop("b1")
        return grads

    _, probe = _probe(renamed)
    assert not probe.ready and "unexpected key 'db1'" in probe.problem
    row = next(r for r in probe.check(atol=1e-12, rtol=1e-9, show=False).results if r.name == "db1")
    assert row.status == "error" and "'db1', which is not a parameter name" in row.detail, row.text()
    assert "not attempted" not in row.text()


# --- constant factors and stale references in the exercise checks -------------------------------

def test_a_missing_division_by_n_in_exercise_2_is_named_with_its_own_hint():
    p, (X, Y) = _params(), _batch(n=12)
    ref, v = E.autograd_grads(p, X, Y), E.forward_steps(p, X, Y)
    no_n = F.softmax(v["logits"], 1) - F.one_hot(Y, 27)
    row = check_grads({"logits": no_n}, ref, atol=1e-12, rtol=1e-9, hints=E.FUSED_HINTS, show=False).results[0]
    assert row.status == "wrong" and "12 x the expected value everywhere" in row.detail
    assert "a missing division by n = 12 (the batch size)" in row.detail
    assert row.hint == E.FUSED_HINTS["logits"] and "step" not in row.hint   # not the step-by-step hint


def test_n_for_n_minus_1_in_dbndiff2_is_named_as_bessels_correction():
    p, (X, Y) = _params(), _batch(n=12)
    ref = E.autograd_grads(p, X, Y)
    biased = torch.ones(12, 16, dtype=torch.float64) / 12 * ref["bnvar"]
    row = check_grads({"bndiff2": biased}, ref, atol=1e-12, rtol=1e-9, show=False).results[0]
    assert "1 / n where 1 / (n - 1) belongs (n = 12)" in row.detail, row.text()


def test_a_reference_an_answer_changed_in_place_is_named_and_restored_before_any_comparison():
    p, (X, Y) = _params(), _batch(n=12)
    ref = E.autograd_grads(p, X, Y)
    true = ref["hpreact"].clone()
    given = ref["hpreact"]                 # the notebook's dhpreact_given is the reference tensor itself
    g = given
    g *= p["bngain"]                       # a learner's in-place step on it
    right = E.batchnorm_grad(true, E.forward_steps(p, X, Y)["hprebn"], p["bngain"], 1e-5)
    rep = check_grads({"hprebn": right}, ref, atol=1e-12, rtol=1e-9, hints=E.FUSED_HINTS, show=False)
    assert rep.results[0].name == "ref" and rep.results[0].status == "wrong"
    assert 'changed ref["hpreact"] in place' in rep.results[0].detail
    assert torch.equal(ref["hpreact"], true) and torch.equal(given, true)    # restored, in the learner's name too
    assert rep.results[1].passed                                             # compared with autograd's values
    again = check_grads({"hprebn": right}, ref, atol=1e-12, rtol=1e-9, hints=E.FUSED_HINTS, show=False)
    assert again.all_passed and again.counts["total"] == 1


def test_fused_hints_are_used_by_exercises_2_and_3():
    nb = nbformat.read(SOLUTION, as_version=4)
    for name in ("dlogits_fused", "dhprebn_fused"):
        start = f"ex{2 if 'logits' in name else 3} ="
        cell = next(c.source for c in nb.cells if c.cell_type == "code" and c.source.startswith(start))
        assert name in cell and "hints=FUSED_HINTS" in cell
    assert set(E.FUSED_HINTS) == {"logits", "hprebn"}


def test_a_reference_from_another_batch_or_forward_pass_says_which_cell_to_rerun():
    p, (X, Y) = _params(), _batch(n=12)
    X2, Y2 = _batch(n=12, seed=5)
    ref, ref2 = E.autograd_grads(p, X, Y), E.autograd_grads(p, X2, Y2)
    loss, loss2 = E.forward_steps(p, X, Y)["loss"], E.forward_steps(p, X2, Y2)["loss"]
    answer = {"W2": ref2["W2"]}   # a right answer on the new batch
    fresh = check_grads(answer, ref2, atol=1e-12, rtol=1e-9, batch=(X2, Y2), loss=loss2, show=False)
    assert fresh.all_passed and fresh.counts["total"] == 1
    # minibatch and forward pass re-run, references not: re-run the references cell
    rep = check_grads(answer, ref, atol=1e-12, rtol=1e-9, batch=(X2, Y2), loss=loss2, show=False)
    assert rep.results[0].name == "ref" and rep.results[0].status == "error"
    assert "earlier minibatch" in rep.results[0].detail and "ref = autograd_grads" in rep.results[0].detail
    # minibatch re-run only: re-run the forward pass and the references
    rep = check_grads(answer, ref, atol=1e-12, rtol=1e-9, batch=(X2, Y2), loss=loss, show=False)
    assert "changed after the forward pass" in rep.results[0].detail and "forward-pass cell" in rep.results[0].detail
    # same batch, other parameters (the network cell re-run)
    rep = check_grads(answer, ref, atol=1e-12, rtol=1e-9, batch=(X, Y), loss=loss + 0.5, show=False)
    assert "forward pass's loss" in rep.results[0].detail
    # nothing answered yet: nothing to warn about
    rep = check_grads({"W2": TODO}, ref, atol=1e-12, rtol=1e-9, batch=(X2, Y2), loss=loss2, show=False)
    assert rep.counts["total"] == 1


@pytest.mark.parametrize("change, message", [
    (lambda g: g.pop("b1"), "missing b1"),
    (lambda g: g.update(b2=g["b2"][None]), "wrong shape: db2 (1, 27) (want (27,))"),
    (lambda g: g.update(W2=[1.0]), "wrong shape: dW2 list"),
])
def test_probe_explains_gradients_that_do_not_fit_instead_of_training(change, message):
    def broken(params, cache, Y):
        grads = _backward(params, cache, Y)
        change(grads)
        return grads

    _, probe = _probe(broken)
    assert not probe.ready and message in probe.message() and "The cells below skip training." in probe.message()
    rep = probe.check(atol=1e-12, rtol=1e-9, show=False)
    assert rep.counts["correct"] < len(E.PARAMS) and "on the probe batch of 24" in rep.title


def test_probe_reports_an_exception_and_a_todo_and_waits_for_earlier_answers():
    def raises(params, cache, Y):
        return params["W1"] @ params["W1"]   # a shape error, as a wrong transpose gives

    _, probe = _probe(raises)
    assert not probe.ready and "backward raised RuntimeError" in probe.problem
    _, probe = _probe(lambda params, cache, Y: TODO)
    assert "still returns TODO" in probe.problem
    assert probe.check(atol=1e-6, rtol=0, show=False).counts["todo"] == len(E.PARAMS)
    calls = []
    unanswered = check_grads({"a": TODO, "b": TODO}, {}, atol=1e-6, rtol=0, show=False)
    _, probe = _probe(lambda *a: calls.append(a), after=(unanswered,))
    assert not calls and probe.unanswered == ("da", "db") and "2 answers are still TODO (da, db)" in probe.problem


def test_forward_steps_table_matches_the_notebook():
    """The hints quote the forward pass; every quoted line must be in the notebook, in order."""
    nb = nbformat.read(SOLUTION, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    positions = []
    for s in E.STEPS:
        assert s.code in source, f"step {s.number} `{s.code}` is not in the notebook"
        positions.append(source.index(s.code))
    assert positions == sorted(positions)


# --- the closed forms and the reference gradients, in float64 -------------------------------------

def _params(n_hidden=16, vocab=27, n_embd=5, block=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return {"C": r(vocab, n_embd), "W1": r(block * n_embd, n_hidden) * 0.3, "b1": r(n_hidden) * 0.1,
            "bngain": 1 + 0.1 * r(1, n_hidden), "bnbias": 0.1 * r(1, n_hidden),
            "W2": r(n_hidden, vocab) * 0.1, "b2": r(vocab) * 0.1}


def _batch(n=12, vocab=27, block=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, block), generator=g), torch.randint(0, vocab, (n,), generator=g)


def test_forward_steps_matches_a_compact_forward_and_cross_entropy():
    p, (X, Y) = _params(), _batch()
    v = E.forward_steps(p, X, Y)
    hpre = p["C"][X].reshape(len(X), -1) @ p["W1"] + p["b1"]
    xhat = (hpre - hpre.mean(0)) / (hpre.var(0, unbiased=True) + E.EPS).sqrt()
    logits = torch.tanh(p["bngain"] * xhat + p["bnbias"]) @ p["W2"] + p["b2"]
    torch.testing.assert_close(v["logits"], logits, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v["loss"], F.cross_entropy(logits, Y), rtol=1e-12, atol=1e-12)
    assert set(E.INTERMEDIATES) <= set(v)


def test_autograd_grads_cover_every_variable_with_its_shape():
    p, (X, Y) = _params(), _batch()
    v = E.forward_steps(p, X, Y)
    grads = E.autograd_grads(p, X, Y)
    assert set(grads) == set(E.INTERMEDIATES) | set(E.PARAMS)
    for k, gk in grads.items():
        assert gk.shape == (p[k] if k in p else v[k]).shape, k
    # the caller's tensors are untouched, and it works inside no_grad
    assert all(t.grad is None and not t.requires_grad for t in p.values())
    with torch.no_grad():
        again = E.autograd_grads(p, X, Y)
    torch.testing.assert_close(again["W1"], grads["W1"], rtol=0, atol=0)
    # BatchNorm removes the mean, so b1 cannot change the loss
    assert grads["b1"].abs().max() < 1e-12


def test_cross_entropy_grad_matches_autograd():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(10, 27, generator=g, dtype=torch.float64, requires_grad=True)
    Y = torch.randint(0, 27, (10,), generator=g)
    (want,) = torch.autograd.grad(F.cross_entropy(logits, Y), logits)
    got = E.cross_entropy_grad(logits.detach(), Y)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got.sum(1), torch.zeros(10, dtype=torch.float64), rtol=0, atol=1e-15)


class _CrossEntropy(torch.autograd.Function):
    """Mean cross-entropy whose backward is the closed form, so gradcheck tests the closed form."""

    @staticmethod
    def forward(ctx, logits, Y):
        ctx.save_for_backward(logits, Y)
        return F.cross_entropy(logits, Y)

    @staticmethod
    def backward(ctx, grad_out):
        logits, Y = ctx.saved_tensors
        return grad_out * E.cross_entropy_grad(logits, Y), None


class _BatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm (Bessel-corrected variance) whose input gradient is the closed form."""

    @staticmethod
    def forward(ctx, x, gain, bias):
        ctx.save_for_backward(x, gain)
        xhat = (x - x.mean(0, keepdim=True)) * (x.var(0, keepdim=True) + E.EPS).rsqrt()
        return gain * xhat + bias

    @staticmethod
    def backward(ctx, dy):
        x, gain = ctx.saved_tensors
        xhat = (x - x.mean(0, keepdim=True)) * (x.var(0, keepdim=True) + E.EPS).rsqrt()
        return E.batchnorm_grad(dy, x, gain), (dy * xhat).sum(0, keepdim=True), dy.sum(0, keepdim=True)


def test_cross_entropy_closed_form_passes_gradcheck():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    Y = torch.randint(0, 7, (6,), generator=g)
    assert torch.autograd.gradcheck(lambda lg: _CrossEntropy.apply(lg, Y), (logits,))


def test_batchnorm_closed_form_matches_autograd_and_passes_gradcheck():
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(8, 5, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_()
    gain = (1 + 0.1 * torch.randn(1, 5, generator=g, dtype=torch.float64)).requires_grad_()
    bias = (0.1 * torch.randn(1, 5, generator=g, dtype=torch.float64)).requires_grad_()
    dy = torch.randn(8, 5, generator=g, dtype=torch.float64)
    # against autograd through the spelled-out forward
    xhat = (x - x.mean(0, keepdim=True)) / (x.var(0, keepdim=True) + E.EPS).sqrt()
    (want,) = torch.autograd.grad(gain * xhat + bias, x, dy)
    torch.testing.assert_close(E.batchnorm_grad(dy, x.detach(), gain.detach()), want, rtol=1e-10, atol=1e-13)
    # against finite differences
    assert torch.autograd.gradcheck(_BatchNorm.apply, (x, gain, bias))


def test_manual_backward_matches_autograd_in_float64():
    p, (X, Y) = _params(), _batch()
    want = E.autograd_grads(p, X, Y)
    got = E.manual_backward(p, X, Y)
    for k in E.PARAMS:
        torch.testing.assert_close(got[k], want[k], rtol=1e-9, atol=1e-13, msg=k)


def test_a_batch_of_one_is_refused():
    p = _params()
    with pytest.raises(ValueError, match="at least 2 examples"):
        E.forward_steps(p, torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, dtype=torch.long))


# --- mmlib.gradcheck -----------------------------------------------------------------------------

STEPS = (Step(1, "y", "y = x * w", ("x", "w")), Step(2, "z", "z = y + x", ("y", "x")))


def test_hints_name_every_step_that_uses_a_variable():
    hints = hints_from_steps(STEPS)
    assert "step 1 `y = x * w`" in hints["x"] and "step 2 `z = y + x`" in hints["x"]
    assert "2 contributions" in hints["x"]
    assert "used once" in hints["w"] and "step 2" not in hints["w"]
    assert set(hints) == {"x", "w", "y"}


def test_check_grads_rows_and_summary():
    want = {"a": torch.tensor([[1.0, 2.0]]), "b": torch.tensor([1.0, 2.0, 3.0]), "c": torch.zeros(2, 2),
            "d": torch.ones(3), "e": torch.ones(2)}
    got = {"a": want["a"].clone(),                         # exact
           "b": want["b"] + 1e-5,                          # close (within rtol)
           "c": torch.tensor([[0.0, 0.0], [0.0, 0.5]]),     # wrong at [1, 1]
           "d": torch.ones(1, 3),                          # wrong shape
           "e": TODO}
    rep = check_grads(got, want, atol=1e-6, rtol=1e-4, hints={"c": "c is used in step 7"}, show=False)
    status = {r.name: r.status for r in rep.results}
    assert status == {"da": "exact", "db": "close", "dc": "wrong", "dd": "shape", "de": "todo"}
    text = repr(rep)
    assert "at [1, 1]" in text and "hint: c is used in step 7" in text
    assert "expected shape (3,), got (1, 3): they differ only in dimensions of size 1" in text
    assert rep.summary() == "2/5 correct (1 exact), 2 wrong, 1 not attempted"
    assert isinstance(rep, GradReport) and rep.counts["exact"] == 1
    assert rep.max_abs_diff == pytest.approx(0.5)
    html = rep._repr_html_()
    assert "#cf222e" in html and "#1a7f37" in html  # red and green rows in JupyterLab


def test_check_grads_all_todo_needs_no_reference():
    rep = check_grads({"a": TODO, "b": TODO}, {}, atol=1e-6, rtol=0, show=False)
    assert rep.counts["todo"] == 2 and rep.max_abs_diff is None
    with pytest.raises(KeyError, match="no autograd reference"):
        check_grads({"a": torch.ones(1)}, {}, atol=1e-6, rtol=0, show=False)


def test_float64_tolerances_are_tighter():
    t32, t64 = tolerances("float32"), tolerances("float64")
    assert t64["atol"] < t32["atol"] and t64["rtol"] < t32["rtol"]
    assert resolve_dtype("float64") is torch.float64 and resolve_dtype(torch.float32) is torch.float32


@pytest.mark.parametrize("bad", ["float16", "double", 64, torch.float16, None])
def test_resolve_dtype_rejects_other_types(bad):
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        resolve_dtype(bad)


def test_tolerances_separate_round_off_from_a_wrong_formula():
    """A correct float32 gradient passes, a plausible mistake (Bessel's n - 1 replaced by n) fails."""
    p32 = {k: v.float() for k, v in _params(n_hidden=64).items()}
    X, Y = _batch(n=32)
    want = E.autograd_grads(p32, X, Y)
    v = E.forward_steps(p32, X, Y)
    good = E.batchnorm_grad(want["hpreact"], v["hprebn"].detach(), p32["bngain"])
    n, bndiff, dbnvar = 32, v["bndiff"].detach(), want["bnvar"]
    # dbndiff with the variance's 1/(n - 1) written as 1/n: off by about 3% in one of two contributions
    bad = want["bndiff"] - 2 * bndiff * dbnvar / (n - 1) + 2 * bndiff * dbnvar / n
    tol = tolerances("float32")
    rep = check_grads({"hprebn": good, "bndiff": bad}, want, **tol, show=False)
    assert [r.status for r in rep.results][0] in ("exact", "close")
    assert rep.results[1].status == "wrong"
    assert not math.isnan(rep.max_abs_diff)


def test_the_data_cell_states_and_checks_the_smallest_word_file():
    nb = nbformat.read(SOLUTION, as_version=4)
    data = next(c for c in nb.cells if c.cell_type == "code" and "load_words(data_path)" in c.source)
    assert "require_words(load_words(data_path), min_words()" in data.source


# --- diagnosing an answer from what it computes (issue 27) -----------------------------------------

def _values(p, X, Y):
    return {**E.forward_steps(p, X, Y), **p, "n": len(X), "Xb": X, "Yb": Y, "eps": E.EPS}


def test_the_local_rules_chained_are_autograd():
    # the diagnosis blames one step by applying its local rule: the rules, chained, must be autograd itself
    p, (X, Y) = _params(), _batch()
    grads = E.chain(_values(p, X, Y), {"loss": torch.tensor(1.0, dtype=torch.float64)})
    ref = E.autograd_grads(p, X, Y)
    for k in ref:
        torch.testing.assert_close(grads[k], ref[k], rtol=1e-10, atol=1e-14, msg=k)


def test_a_row_below_a_wrong_one_follows_from_it_and_the_root_is_named():
    p, (X, Y) = _params(), _batch()
    ref, v = E.autograd_grads(p, X, Y), E.forward_steps(p, X, Y)
    dprobs = 2 * ref["probs"]   # a factor of 2 in step 19, and a dcounts_sum_inv computed right from it
    dcsi = (v["counts"] * dprobs).sum(1, keepdim=True)
    rows = check_grads({"probs": dprobs, "counts_sum_inv": dcsi}, ref, atol=1e-12, rtol=1e-9, show=False).results
    assert "a factor of 2 too many" in rows[0].detail and "follows" not in rows[0].detail
    assert "follows from your dprobs (step 18)" in rows[1].detail and rows[1].hint == ""


def test_two_gradients_that_are_one_tensor_are_named_even_when_both_pass():
    p, (X, Y) = _params(), _batch()
    ref = E.autograd_grads(p, X, Y)
    d = ref["norm_logits"].clone()
    rows = check_grads({"norm_logits": d, "logits": d}, ref, atol=1e-6, rtol=1e-4, show=False).results
    assert all(r.status == "wrong" and "one tensor in memory" in r.detail for r in rows)


def test_a_replayed_cell_shows_a_number_written_for_the_batch_size_and_a_dropped_eps():
    p, (X, Y) = _params(n_hidden=16), _batch(n=12)
    ref, v = E.autograd_grads(p, X, Y), E.forward_steps(p, X, Y)
    cell = "dbnvar = -0.5 * bnvar**-1.5 * dbnvar_inv\ndbndiff2 = torch.ones_like(bndiff2) / 11 * dbnvar"
    ns = {"torch": torch, **v, "dbnvar_inv": ref["bnvar_inv"]}
    exec(cell, ns)   # noqa: S102 - the test's own cell
    rows = check_grads({"bnvar": ns["dbnvar"], "bndiff2": ns["dbndiff2"]}, ref, atol=1e-6, rtol=1e-4, show=False,
                       cell=cell, upstream={"bnvar_inv": ref["bnvar_inv"]}).results
    assert "variance about eps" in rows[0].detail
    assert "eps (added to the variance in step 8) is left out" in rows[0].detail
    assert "11 written as a number where n - 1 belongs" in rows[1].detail, rows[1].text()


def test_a_right_backward_gets_no_diagnosis_and_a_wrong_one_its_cause():
    p, (X, Y) = _params(), _batch(n=10)
    values = {**E.forward_steps(p, X, Y), **p, "n": 10, "Xb": X, "Yb": Y, "eps": E.EPS}
    right = E.manual_backward(p, X, Y)
    assert E.diagnose_backward(right, values) == {}
    wrong = {**right, "W2": values["h"].T @ (E.cross_entropy_grad(values["logits"], Y) * 10)}
    assert "not divided by the batch size n = 10" in E.diagnose_backward(wrong, values)["W2"]
