"""Lesson 02 (the MLP): its metrics at CI parameters, its committed default run, and mmlib.expected.lesson02."""

from __future__ import annotations

import math
import re

import nbformat
import pytest
import torch
import torch.nn.functional as F
from conftest import NOTEBOOKS, parameter_error, refusal, run_parameter_checks, smoke_parameters, stdout

from mmlib.checks import TODO
from mmlib.data import build_dataset, load_words, split_words
from mmlib.expected import lesson02 as ex
from mmlib.vocab import Vocab

SOLUTION = NOTEBOOKS / "solutions" / "02_mlp_solutions.ipynb"
LEARNER = NOTEBOOKS / "02_mlp.ipynb"


# ---- the lesson at CI parameters -------------------------------------------------------------


def test_solution_passes_every_check(run_lesson):
    metrics, _ = run_lesson(SOLUTION)
    c = metrics["checks"]
    assert c["total"] == 8
    assert c["correct"] == c["total"], c


def test_learner_checks_are_all_not_attempted(run_lesson):
    metrics, _ = run_lesson(LEARNER)
    c = metrics["checks"]
    assert c["total"] == 8
    assert c["todo"] == c["total"], c
    assert metrics["exercise1"]["dev_loss_reported"] is None


@pytest.mark.parametrize("path", [SOLUTION, LEARNER], ids=["solution", "learner"])
def test_losses_are_sane(run_lesson, path):
    metrics, _ = run_lesson(path)
    uniform = math.log(metrics["vocab_size"])
    losses = metrics["losses"]
    assert set(losses) == {"train", "dev", "test"}
    # The lecture's N(0, 1) initialisation is confidently wrong: far above the uniform loss.
    assert metrics["initial_loss"] > uniform + 1
    for name, value in losses.items():
        assert value is not None and 1.5 < value < metrics["initial_loss"], (name, value)
    # Even a short run does not overfit this model: dev stays close to train.
    assert abs(losses["dev"] - losses["train"]) < 0.3, losses


def test_exercise_answers_match_independent_reevaluation(run_lesson):
    metrics, _ = run_lesson(SOLUTION)
    e1, e2, e3 = metrics["exercise1"], metrics["exercise2"], metrics["exercise3"]
    assert e1["dev_loss_reported"] == pytest.approx(e1["dev_loss_reevaluated"], abs=1e-4)
    # The target row reports honestly whatever the budget: met exactly when the re-evaluation is below 2.2.
    assert e1["below_2_2"] == (e1["dev_loss_reevaluated"] < 2.2)
    assert e2["uniform"] == pytest.approx(math.log(metrics["vocab_size"]), abs=1e-9)
    assert abs(e2["init_loss"] - e2["uniform"]) < 0.1
    assert e3["dev_loss_reported"] == pytest.approx(e3["dev_loss_reevaluated"], abs=1e-4)
    assert abs(e3["dev_loss_reevaluated"] - e3["dev_loss_without_direct"]) > 1e-3


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"block_size": 0}, "block_size must be a positive whole number, got 0"),
        ({"batch_size": "32"}, "batch_size must be a positive whole number, got '32'"),
        ({"lr": -0.1}, "lr must be a learning rate in (0, 10], got -0.1"),
        ({"lr_decay_step": -5}, "lr_decay_step must be a whole number >= 0, got -5"),
        ({"noise_warmup_steps": -1}, "noise_warmup_steps must be a whole number >= 0, got -1"),
    ],
)
def test_nonsense_parameters_fail_with_a_clear_message(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        run_parameter_checks(SOLUTION, **overrides)


def test_a_nonsense_parameter_papermill_injects_stops_the_notebook(tmp_path):
    err, _ = refusal(SOLUTION, tmp_path, block_size=0)
    assert type(err).__name__ == "ValueError" and "block_size must be a positive whole number, got 0" in str(err), err


def test_a_diverging_loop_in_the_open_stops_with_one_line(tmp_path):
    words = tmp_path / "w.txt"
    words.write_text("\n".join(load_words()[:40]) + "\n")
    err = parameter_error(SOLUTION, tmp_path, data_path=str(words), lr=10)
    assert err.ename == "TrainingDiverged" and "DivergenceGuard" in err.source   # a loop of the lesson's own
    assert "training stopped at step" in err.evalue and "lower the learning rate (lr, now 10)" in err.evalue
    assert len([line for line in err.traceback if line.strip()]) == 1, err.traceback


def test_overfitting_one_batch_gets_near_its_floor_but_not_below(run_lesson):
    m, _ = run_lesson(SOLUTION)
    o = m["overfit_one_batch"]
    assert o["steps"] == 50 and 0 < o["floor"] <= o["loss"]
    assert m["parameters"]["noise_warmup_steps"] == 20   # the CI value: the warm-up is a parameter


def test_loss_floor_is_the_loss_of_the_batchs_own_frequencies():
    X = torch.tensor([[0, 0, 0]] * 4 + [[0, 0, 1]] * 2 + [[1, 2, 3]])
    Y = torch.tensor([1, 1, 2, 3, 4, 4, 5])
    # '...' -> 1 1 2 3 (frequencies 1/2, 1/4, 1/4); '..a' -> 4 4 and 'abc' -> 5 are certain
    want = -(2 * math.log(0.5) + 2 * math.log(0.25)) / 7
    assert ex.loss_floor(X, Y) == pytest.approx(want)
    # no model does better: the logits of those frequencies reach it exactly
    logits = torch.full((7, 6), -1e9, dtype=torch.float64)
    for i in range(7):
        counts = torch.bincount(Y[(X == X[i]).all(1)], minlength=6).double()
        logits[i] = torch.where(counts > 0, counts.log(), torch.full_like(counts, -1e9))
    assert F.cross_entropy(logits, Y).item() == pytest.approx(want)
    assert ex.loss_floor(torch.tensor([[0, 1], [2, 3]]), torch.tensor([4, 5])) == 0.0
    with pytest.raises(ValueError, match="X must be"):
        ex.loss_floor(torch.zeros(3, 2, dtype=torch.long), torch.zeros(2, dtype=torch.long))


def test_lesson_follows_the_data_it_is_given(run_lesson, tmp_path_factory):
    """Another word file with another vocabulary: nothing in the lesson may assume 27 characters."""
    import random

    rng = random.Random(0)
    path = tmp_path_factory.mktemp("words") / "words.txt"
    path.write_text("\n".join("".join(rng.choice("abcde") for _ in range(rng.randint(2, 7))) for _ in range(400)))
    small = {k: v for k, v in smoke_parameters(SOLUTION).items() if k.endswith("steps")}    # any budget will do
    metrics, _ = run_lesson(SOLUTION, data_path=str(path), **small)
    assert metrics["vocab_size"] == 6
    assert metrics["exercise2"]["uniform"] == pytest.approx(math.log(6), abs=1e-9)
    assert metrics["checks"]["correct"] == metrics["checks"]["total"], metrics["checks"]


# ---- the committed run at default parameters -------------------------------------------------


def test_committed_default_run_beats_the_target_and_its_loss_log_quotes_it():
    nb = nbformat.read(SOLUTION, as_version=4)
    cells = nb.cells
    log_cell = next(i for i, c in enumerate(cells) if c.cell_type == "code" and c.source.strip() == "loss_log.show()")
    printed = stdout(cells[log_cell])
    quoted = re.findall(r"\d\.\d{4}", cells[log_cell + 1].source)
    runs = len(printed.strip().splitlines()) - 1  # one line per run under a header
    assert len(quoted) == 2 * runs, "the loss-log markdown should quote the train and dev loss of every run"
    missing = [q for q in quoted if q not in printed]
    assert not missing, f"the loss log quotes {missing}, which the run above it did not print"
    # The final dev loss at defaults (lecture: about 2.17 on the original file).
    final = re.search(r"final: .* (\d\.\d{4}) +(\d\.\d{4})\n", printed)
    assert final and 2.0 < float(final.group(2)) < 2.25, printed
    target = next(c for c in cells if c.cell_type == "code" and "dev loss below 2.2" in c.source)
    html = "".join(o.get("data", {}).get("text/html", "") for o in target.outputs)
    assert "correct" in html and "wrong" not in html, "the committed tuned run should beat a dev loss of 2.2"


# ---- exercise 3's check (mmlib.expected.lesson02.check_direct_connections) --------------------


def _params(V, block_size=3, n_embd=10, n_hidden=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"C": torch.randn(V, n_embd, generator=g), "W1": torch.randn(block_size * n_embd, n_hidden, generator=g),
            "b1": torch.zeros(n_hidden), "W2": torch.randn(n_hidden, V, generator=g), "b2": torch.zeros(V)}


def test_exercise3_check_reports_a_wrong_w_direct_shape_instead_of_raising(names):
    words, vocab = names
    bad = {**_params(len(vocab)), "W_direct": torch.zeros(7, len(vocab))}
    rep, found = ex.check_direct_connections(bad, 3.0, words[:50], vocab, block_size=3, display=False)
    statuses = [r.status for r in rep.results]
    assert statuses == ["wrong", "error", "error"], statuses
    assert "W_direct" in rep.results[1].detail and math.isnan(found["dev_loss_reevaluated"])


def test_exercise3_check_passes_a_used_w_direct_and_fails_an_unused_one(names):
    words, vocab = names
    V = len(vocab)
    g = torch.Generator().manual_seed(1)
    used = {**_params(V), "W_direct": torch.randn(30, V, generator=g)}
    dev = ex.mlp_loss(used, words[:50], vocab)
    rep, found = ex.check_direct_connections(used, dev, words[:50], vocab, block_size=3, display=False)
    assert rep.all_passed, repr(rep)
    assert found["dev_loss_reevaluated"] == pytest.approx(dev) != found["dev_loss_without_direct"]
    # all zeros: never trained, so removing it changes nothing and the third row says so
    unused = {**_params(V), "W_direct": torch.zeros(30, V)}
    rep, _ = ex.check_direct_connections(unused, ex.mlp_loss(unused, words[:50], vocab), words[:50], vocab,
                                         block_size=3, display=False)
    assert [r.status for r in rep.results][2] == "wrong" and "with it removed" in rep.results[2].detail


def test_exercise3_check_takes_a_model_and_counts_todo(names):
    from mmlib.models import MLP, MLPConfig

    words, vocab = names
    rep, _ = ex.check_direct_connections(TODO, TODO, words[:20], vocab, block_size=3, display=False)
    assert rep.counts["todo"] == rep.counts["total"] == 3
    model = MLP(MLPConfig(vocab_size=len(vocab)))   # a model without W_direct: the shape row says what it got
    rep, _ = ex.check_direct_connections(model, 3.0, words[:20], vocab, block_size=3, display=False)
    assert rep.results[0].status == "wrong" and "got None" in rep.results[0].detail



class _Direct(torch.nn.Module):
    """The exercise's model over given tensors; `cut` detaches one path as exercise 3's wrong answers do."""

    def __init__(self, P, cut=""):
        super().__init__()
        self.cut = cut
        for k, v in P.items():
            setattr(self, k, torch.nn.Parameter(v.clone()))

    def forward(self, idx, targets=None):
        logits = ex.direct_logits(dict(self.named_parameters()), idx, self.cut)
        return logits, None if targets is None else F.cross_entropy(logits, targets)


@pytest.mark.parametrize("cut", ["", *ex.CUT_PATHS])
def test_exercise3_gradient_row_finds_the_model_and_names_a_path_cut_from_autograd(names, cut):
    """Parameters and dev loss agree whatever gradient trained them: the model in the namespace shows the cut."""
    words, vocab = names
    V = len(vocab)
    P = {**_params(V), "W_direct": 0.1 * torch.randn(30, V, generator=torch.Generator().manual_seed(2))}
    net = _Direct(P, cut)
    hand_in = {k: v.detach().clone() for k, v in net.state_dict().items()}   # clones: found by value
    dev = ex.mlp_loss(hand_in, words[:50], vocab)
    namespace = {"lesson_model": torch.nn.Linear(2, 2), "net": net}
    rep, _ = ex.check_direct_connections(hand_in, dev, words[:50], vocab, block_size=3, display=False,
                                         namespace=namespace)
    row = rep.results[-1]
    assert row.name == "trained by the exercise's gradient"
    if not cut:
        assert rep.all_passed, repr(rep)
    else:
        assert row.status == "wrong" and ex.CUT_PATHS[cut] in row.detail, row.detail
    # with no module holding the tensors the row passes and says it could not check; without a namespace, no row
    rep, _ = ex.check_direct_connections(hand_in, dev, words[:50], vocab, block_size=3, display=False,
                                         namespace={"other": _Direct(_params(V, seed=1) | {"W_direct": P["W_direct"]})})
    assert rep.results[-1].passed and "not checked" in rep.results[-1].detail
    rep, _ = ex.check_direct_connections(hand_in, dev, words[:50], vocab, block_size=3, display=False)
    assert [r.name for r in rep.results][-1] == "W_direct is used"

# ---- mmlib.expected.lesson02 ------------------------------------------------------------------


@pytest.fixture(scope="module")
def names():
    words = load_words()
    return words, Vocab.from_words(words)


@pytest.mark.parametrize("n", [1, 2, 27, 100])
def test_uniform_loss_is_cross_entropy_of_equal_logits(n):
    want = F.cross_entropy(torch.zeros(5, n, dtype=torch.float64), torch.arange(5) % n).item()
    assert ex.uniform_loss(n) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "27"])
def test_uniform_loss_rejects_nonsense(bad):
    with pytest.raises(ValueError, match="vocab_size must be a positive whole number"):
        ex.uniform_loss(bad)


@pytest.mark.parametrize("block_size", [1, 3, 5])
def test_contexts_match_build_dataset(names, block_size):
    words, vocab = names
    X, Y = ex.contexts(words[:500], vocab, block_size)
    Xw, Yw = build_dataset(words[:500], vocab, block_size)
    assert torch.equal(X, Xw) and torch.equal(Y, Yw)


def _random_params(vocab_size, block_size, n_embd, n_hidden, direct, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = {
        "C": torch.randn(vocab_size, n_embd, generator=g),
        "W1": torch.randn(block_size * n_embd, n_hidden, generator=g) * 0.5,
        "b1": torch.randn(n_hidden, generator=g),
        "W2": torch.randn(n_hidden, vocab_size, generator=g) * 0.3,
        "b2": torch.randn(vocab_size, generator=g),
    }
    if direct:
        p["W_direct"] = torch.randn(block_size * n_embd, vocab_size, generator=g) * 0.3
    return p


@pytest.mark.parametrize("block_size, n_embd, n_hidden, direct",
                         [(3, 10, 200, False), (2, 4, 16, True), (4, 3, 7, True)])
def test_mlp_loss_matches_torch_nn(names, block_size, n_embd, n_hidden, direct):
    words, vocab = names
    _, dev, _ = split_words(words)
    p = _random_params(len(vocab), block_size, n_embd, n_hidden, direct)
    # The same model from torch.nn modules, in float32, on mmlib.data's dataset.
    emb = torch.nn.Embedding.from_pretrained(p["C"])
    hidden = torch.nn.Linear(block_size * n_embd, n_hidden)
    out = torch.nn.Linear(n_hidden, len(vocab))
    with torch.no_grad():
        hidden.weight.copy_(p["W1"].T), hidden.bias.copy_(p["b1"])
        out.weight.copy_(p["W2"].T), out.bias.copy_(p["b2"])
        X, Y = build_dataset(dev, vocab, block_size)
        e = emb(X).flatten(1)
        logits = out(torch.tanh(hidden(e)))
        if direct:
            logits = logits + e @ p["W_direct"]
        want = F.cross_entropy(logits, Y).item()
    assert ex.mlp_loss(p, dev, vocab) == pytest.approx(want, abs=1e-5)


def test_mlp_loss_of_todo_is_nan(names):
    words, vocab = names
    assert math.isnan(ex.mlp_loss(TODO, words[:10], vocab))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.pop("b2"), r"params lacks \['b2'\]"),
        (lambda p: p.update(C=torch.zeros(26, 10)), r"C should be \(27, n_embd\)"),
        (lambda p: p.update(W1=torch.zeros(31, 200)), r"W1 should be \(block_size \* n_embd, n_hidden\)"),
        (lambda p: p.update(W2=torch.zeros(27, 200)), r"W2 should have shape \(200, 27\)"),
        (lambda p: p.update(W_direct=torch.zeros(27, 30)), r"W_direct should have shape \(30, 27\)"),
    ],
)
def test_mlp_loss_says_which_shape_is_off(names, change, message):
    words, vocab = names
    p = _random_params(len(vocab), 3, 10, 200, direct=False)
    change(p)
    with pytest.raises(ValueError, match=message):
        ex.mlp_loss(p, words[:10], vocab)


def test_exercise1_names_a_run_that_trained_on_the_dev_split_too(names):
    """The run that left the handed-in model is found by its digest; its training targets show a split mixed in."""
    from mmlib.models import MLP, MLPConfig
    from mmlib.train import TrainConfig, train

    words, vocab = names
    parts = {"training": words[:60], "dev": words[60:80], "test": words[80:100]}
    data = {k: build_dataset(ws, vocab, 3) for k, ws in parts.items()}
    leak = (torch.cat([data["training"][0], data["dev"][0]]), torch.cat([data["training"][1], data["dev"][1]]))
    cfg = TrainConfig(max_steps=5, progress=False)
    for train_split, leaked in ((data["training"], False), (leak, True)):
        net = MLP(MLPConfig(vocab_size=len(vocab), n_hidden=8), generator=torch.Generator().manual_seed(0))
        run = train(net, {"train": train_split, "dev": data["dev"]}, cfg, generator=torch.Generator().manual_seed(0))
        assert run.targets == {"train": len(train_split[1]), "dev": len(data["dev"][1])}
        params = {k: v.detach().clone() for k, v in net.state_dict().items()}
        namespace = {"net": net, "run": run}
        row, _ = ex.check_reported_loss("dev loss", run.final["dev"], params, vocab, parts, "dev", hint="",
                                        namespace=namespace)
        assert row.passed != leaked, row.detail
        if leaked:
            assert "and the dev split's" in row.detail and "not held out" in row.detail
        # a model changed after its run (or no run at all) is not judged by that run
        with torch.no_grad():
            net.b2 += 1
        assert ex.trained_on_problem(net.state_dict(), namespace, vocab, parts, "dev") == ""


def test_a_run_found_in_the_namespace_names_a_budget_overrun_and_a_trained_initialisation(names):
    from mmlib.models import MLP, MLPConfig
    from mmlib.train import TrainConfig, train

    words, vocab = names
    data = {"train": build_dataset(words[:60], vocab, 3), "dev": build_dataset(words[60:80], vocab, 3)}
    net = MLP(MLPConfig(vocab_size=len(vocab), n_hidden=8, w2_scale=0.01, b2_scale=0.0),
              generator=torch.Generator().manual_seed(0))
    run = train(net, data, TrainConfig(max_steps=5, progress=False), generator=torch.Generator().manual_seed(0))
    params = net.state_dict()
    assert ex.training_run(params, {"net": net, "run": run}) == ("net", run)
    assert "took 5 steps, more than tune_steps = 3" in ex.over_budget(params, {"net": net, "run": run,
                                                                               "tune_steps": 3})
    assert ex.over_budget(params, {"net": net, "run": run, "tune_steps": 5}) == ""
    loss = ex.mlp_loss(params, words[:60], vocab)
    lesson_model = MLP(MLPConfig(vocab_size=len(vocab), n_hidden=8))   # the final model: gives the sizes
    rows = ex.check_uniform_init(ex.uniform_loss(len(vocab)), params, loss, len(vocab), words[:60], vocab,
                                 lesson_model, namespace={"net": net, "run": run})
    assert rows[1].status == "wrong" and "left by a training run of 5 steps" in rows[1].detail
    rows = ex.check_uniform_init(ex.uniform_loss(len(vocab)), params, loss, len(vocab), words[:60], vocab,
                                 lesson_model)
    assert rows[1].passed   # without the namespace the run cannot be seen: the loss itself is right
