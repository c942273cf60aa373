"""The catalogue of exercise answers (tests/wrong_answers.toml) through the real checks (issue 14).

Every right answer must pass every row of its exercise's check; every wrong answer must fail, without
the check raising, and its failing rows must contain each of the entry's `words` - the named cause.
Each exercise has a runner: it executes the entry's `code` in a namespace holding what the notebook's
exercise cell would see (small versions of the lesson's objects, built once) and returns the check's rows.

`python tests/test_wrong_answers.py` prints the catalogue's size and the share caught with a named cause;
`python tests/test_wrong_answers.py BLIND.toml [RECORDS.json]` scores a set written blind (issue 27).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import math
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmlib.checks import TODO, Report, Result

CATALOGUE = Path(__file__).with_name("wrong_answers.toml")
ENTRIES = tomllib.loads(CATALOGUE.read_text())["answer"]
TARGET = 2.0   # the lesson's dev loss that exercise 4 of lessons 05 and 06 must beat, here a round number


def _namespace(**extra) -> dict:
    return {"torch": torch, "nn": nn, "F": F, "math": math, "copy": copy, "TODO": TODO, **extra}


def _run(code: str, ns: dict) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):   # the notebooks' cells print what a learner reads
        exec(compile(code, "<catalogue entry>", "exec"), ns)   # noqa: S102 - the catalogue is this repository's data
    return ns


# ---- lesson 00 -------------------------------------------------------------------------------------

def run_00(exercise: str, code: str) -> list[Result]:
    from mmlib.expected import lesson00 as ex
    from mmlib.micrograd import Value
    ns = _run(code, _namespace(Value=Value))
    if exercise == "00.1":
        return ex.probe_sigmoid(ns["my_sigmoid"], Value)
    if exercise == "00.2":
        return ex.probe_numerical_grad(ns["numerical_grad"])
    return ex.probe_cross_entropy(ns["my_cross_entropy"], Value)


# ---- lesson 06 -------------------------------------------------------------------------------------

@functools.cache
def _transformer():
    from mmlib.models import create
    return create("transformer", generator=torch.Generator().manual_seed(0), vocab_size=27, block_size=16,
                  n_layer=1, n_head=2, n_embd=16, dropout=0.1)   # the lesson's dropout: an answer may change it


def _splits(block_size: int, sequences: bool) -> dict:
    """Exercise 4's data, small: test_lesson05's nine words as windows or padded sequences, for train and dev."""
    from test_lesson05 import VOCAB, WORDS

    from mmlib.data import build_dataset, build_sequences
    data = build_sequences(WORDS, VOCAB) if sequences else build_dataset(WORDS, VOCAB, block_size)
    return {"train": data, "dev": data}


def _as_trained(model):
    """A copy of the lesson's model (an answer that trains or edits it must not change the next entry's) and what
    the lesson's training run returns about it: the checks compare the model with that run's `digest`."""
    from mmlib.train import TrainResult, state_digest
    model = copy.deepcopy(model)
    return model, TrainResult([], [], {"dev": TARGET}, 0.0, 0, state_digest(model))


def _beat(ns: dict, model, lesson, lesson_run) -> list[Result]:
    """Exercise 4's check cell. An entry that sets `my_dev` stands in for the run's outcome (a real run cannot
    beat a lesson's loss in a test's seconds): the run is refused if it would train the lesson's model, else its
    dev loss compared. An entry that sets `my_config` instead goes through the cell's `train_your_model`, as in
    the notebook, for a few steps: what cannot count is refused before any training."""
    from dataclasses import replace

    from mmlib.checks import train_your_model, why_not_counted
    from mmlib.train import TrainConfig
    if "my_dev" in ns:   # what train_your_model would refuse before training is refused here too
        problem = why_not_counted(ns.get("my_model", TODO), ns.get("my_config", TODO), model, lesson_run)
        return [lesson.beat_target("dev loss", TODO if problem else ns["my_dev"], TARGET, problem=problem)]
    config = ns.get("my_config", TODO)
    if isinstance(config, TrainConfig):
        config = replace(config, max_steps=min(config.max_steps, 10), progress=False)
    sequences = bool(getattr(model, "per_position", False))
    with contextlib.redirect_stdout(io.StringIO()):
        dev, problem = train_your_model(ns.get("my_model", TODO), config, model,
                                        lambda m: _splits(getattr(m, "block_size", 1), sequences), lesson_run)
    return [lesson.beat_target("dev loss", dev, TARGET, problem=problem)]


def run_06(exercise: str, code: str) -> list[Result]:
    from mmlib.expected import lesson06 as ex
    from mmlib.models import create
    if exercise == "06.1":
        return ex.probe_attention(_run(code, _namespace())["my_attention"])
    if exercise == "06.2":
        return ex.probe_causal_head(_run(code, _namespace())["MyHead"])
    if exercise == "06.3":
        return ex.probe_grouped_attention(_run(code, _namespace())["my_grouped_attention"])
    model, main = _as_trained(_transformer())
    return _beat(_run(code, _namespace(model=model, main=main, target=TARGET, create=create)), model, ex, main)


# ---- lesson 05 -------------------------------------------------------------------------------------

@functools.cache
def _wavenet_and_data():
    from test_lesson05 import VOCAB, WORDS, trained_a_little

    from mmlib.data import build_dataset, build_sequences
    Xs, Ys = build_sequences(WORDS, VOCAB)
    return trained_a_little(), Xs, build_dataset(WORDS, VOCAB, 8)[0], Ys != -1


def run_05(exercise: str, code: str) -> list[Result]:
    from mmlib.expected import lesson05 as ex
    from mmlib.layers import BatchNorm1dOverBatch
    from mmlib.models import create
    if exercise == "05.1":
        return ex.probe_flatten(_run(code, _namespace())["MyFlattenConsecutive"])
    if exercise == "05.2":
        return ex.probe_batchnorm(_run(code, _namespace(BatchNorm1dOverBatch=BatchNorm1dOverBatch))["MyBatchNorm1d"])
    model, X, Xw, keep = _wavenet_and_data()
    if exercise == "05.3":
        c = model.config
        ns = _run(code, _namespace(n_embd=c.n_embd, n_hidden=c.n_hidden, block_size=c.block_size, model=model))
        return ex.probe_conv_stack(ns["conv_stack"], model, X, Xw, keep, cell=code, namespace=ns)
    model, main = _as_trained(model)
    return _beat(_run(code, _namespace(model=model, main=main, target=TARGET, create=create)), model, ex, main)


# ---- lesson 04 -------------------------------------------------------------------------------------

SOLUTION_04 = Path(__file__).parents[1] / "notebooks" / "solutions" / "04_backprop_ninja_solutions.ipynb"
# Each exercise's answer cell, found by its first TODO line, and the names its check compares.
CELLS_04 = {"04.1a": ("dlogprobs = dprobs", ("logprobs", "probs", "counts_sum_inv", "counts_sum", "counts",
                                             "norm_logits", "logit_maxes", "logits")),
            "04.1b": ("dh = dW2 = db2", ("h", "W2", "b2")),
            "04.1c": ("dhpreact = dbngain", ("hpreact", "bngain", "bnbias", "bnraw", "bnvar_inv", "bnvar", "bndiff2",
                                             "bndiff", "hprebn", "bnmeani")),
            "04.1d": ("dembcat = dW1", ("embcat", "W1", "b1", "emb", "C")),
            "04.2": ("dlogits_fused = TODO", ("logits",)),
            "04.3": ("dhprebn_fused = TODO", ("hprebn",)),
            "04.4": ("def backward(", ())}
ANSWER_NAME = {"04.2": "dlogits_fused", "04.3": "dhprebn_fused"}
UPSTREAM_04 = {"04.1b": ("logits",), "04.1c": ("h",), "04.1d": ("hprebn",)}   # the gradient each cell starts from


@functools.cache
def _cells_04() -> dict[str, str]:
    import nbformat
    nb = nbformat.read(SOLUTION_04, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    out = {x: next(src for src in code if marker in src and "### BEGIN SOLUTION" in src)
           for x, (marker, _) in CELLS_04.items()}
    out["forward"] = next(src for src in code if src.startswith("def forward("))
    return out


@functools.cache
def _params_04(hidden: int = 64) -> dict:
    g = torch.Generator().manual_seed(0)
    V, block, n_embd = 27, 3, 10
    return {"C": torch.randn(V, n_embd, generator=g), "W1": torch.randn(block * n_embd, hidden, generator=g) * 0.3,
            "b1": torch.randn(hidden, generator=g) * 0.1, "bngain": 1 + 0.1 * torch.randn(1, hidden, generator=g),
            "bnbias": 0.1 * torch.randn(1, hidden, generator=g), "W2": torch.randn(hidden, V, generator=g) * 0.1,
            "b2": torch.randn(V, generator=g) * 0.1}


@functools.cache
def _lesson_04():
    """A small float32 network of lesson 04's shape, one batch of 32, its intermediates and autograd's gradients."""
    from mmlib.expected import lesson04 as E
    g = torch.Generator().manual_seed(0)
    V, block, n_embd, hidden, n = 27, 3, 10, 64, 32
    params = {"C": torch.randn(V, n_embd, generator=g), "W1": torch.randn(block * n_embd, hidden, generator=g) * 0.3,
              "b1": torch.randn(hidden, generator=g) * 0.1, "bngain": 1 + 0.1 * torch.randn(1, hidden, generator=g),
              "bnbias": 0.1 * torch.randn(1, hidden, generator=g), "W2": torch.randn(hidden, V, generator=g) * 0.1,
              "b2": torch.randn(V, generator=g) * 0.1}
    X, Y = torch.randint(0, V, (n, block), generator=g), torch.randint(0, V, (n,), generator=g)
    steps = {k: v.detach() for k, v in E.forward_steps(params, X, Y).items()}
    return params, X, Y, steps, E.autograd_grads(params, X, Y), g


def run_04(exercise: str, code: str, after_solution: bool = False) -> list[Result]:
    from mmlib.expected import lesson04 as E
    from mmlib.expected.lesson04 import probe_backward
    from mmlib.gradcheck import check_grads, hints_from_steps, tolerances
    params, X, Y, steps, ref, g = _lesson_04()
    tol = tolerances("float32")
    # copies: an answer that changes a parameter or a forward tensor in place must not change the next entry's
    ns = _namespace(**{k: v.clone() for k, v in {**params, **steps}.items()},
                    **{f"d{k}": v.clone() for k, v in ref.items()},
                    n=len(X), Xb=X, Yb=Y, eps=E.EPS, vocab_size=params["W2"].shape[1], PARAMS=E.PARAMS,
                    dhpreact_given=ref["hpreact"], ref=ref)
    if after_solution:
        _run(_cells_04()[exercise], ns)
        code = _cells_04()[exercise] + "\n" + code   # the cell a learner would have: the solution, then the change
    _run(code, ns)
    if exercise == "04.4":   # the notebook trains a wider network (n_hidden = 200) than exercises 1-3 check
        params = {k: t.clone() for k, t in _params_04(200).items()}
        _run(_cells_04()["forward"], ns)
        backward, forward = ns["backward"], ns["forward"]
        gp = torch.Generator().manual_seed(4)   # its own: the probe must not depend on the entries run before it
        Xp, Yp = torch.randint(0, 27, (64, 3), generator=gp), torch.randint(0, 27, (64,), generator=gp)
        probe = probe_backward(backward, forward, params, Xp, Yp, want=E.autograd_grads(params, Xp, Yp),
                               names=E.PARAMS)
        got_steps, want_steps = [], []
        if probe.ready:
            for seed in (1, 2):
                gs = torch.Generator().manual_seed(seed)
                Xs, Ys = torch.randint(0, 27, (32, 3), generator=gs), torch.randint(0, 27, (32,), generator=gs)
                want_steps.append(E.autograd_grads(params, Xs, Ys))
                with torch.no_grad():
                    got_steps.append(backward(params, forward(params, Xs, Ys)[1], Ys))
        return probe.check(got_steps, want_steps, hints=hints_from_steps(E.STEPS), **tol, show=False).results
    names = CELLS_04[exercise][1]
    got = {k: ns[ANSWER_NAME.get(exercise, f"d{k}")] for k in names}
    hints = E.FUSED_HINTS if exercise in ANSWER_NAME else hints_from_steps(E.STEPS)
    upstream = {k: ns[f"d{k}"] for k in UPSTREAM_04.get(exercise, ())}
    names = {k: ANSWER_NAME[exercise] for k in names} if exercise in ANSWER_NAME else None
    return check_grads(got, ref, hints=hints, **tol, batch=(X, Y), loss=steps["loss"], show=False, cell=code,
                       upstream=upstream, names=names).results


# ---- lessons 01-03: the notebook's own answer and check cells, run on small data ----------------------

@functools.cache
def _notebook_cells(name: str) -> list[str]:
    import nbformat
    path = Path(__file__).parents[1] / "notebooks" / "solutions" / f"{name}_solutions.ipynb"
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def _cell(cells: list[str], marker: str) -> str:
    return next(src for src in cells if marker in src)


def _quiet_report(*results: Result, title: str = "") -> Report:
    return Report(list(results), title)


# exercise -> (the marker of its answer cell, of its check cell, the variable the check cell assigns)
CELLS_01 = {"01.1": ("N3 = TODO", "ex1 = report(", "ex1"), "01.2": ("train_nll2, dev_nll2", "ex2 = report(", "ex2"),
            "01.3": ("best_alpha = TODO", "ex3 = report(", "ex3"),
            "01.4": ("logits_rows = TODO", "ex4 = report(", "ex4"),
            "01.5": ("ce_nll = TODO", "ex5 = report(", "ex5")}


@functools.cache
def _lesson_01() -> dict:
    from mmlib.data import load_words, split_words
    from mmlib.vocab import Vocab
    # Words 4000-5000: there the trigram model's best alpha on dev (0.1), on test (0.3), on train (0.001) and the
    # bigram model's on dev (0.3) are not all one value, so an alpha chosen on the wrong split or model shows.
    words = load_words()[4000:5000]
    vocab = Vocab.from_words(words)
    xs, ys = [], []
    for w in words[:200]:
        ids = [0] + vocab.encode(w) + [0]
        xs += ids[:-1]
        ys += ids[1:]
    W = torch.randn(len(vocab), len(vocab), generator=torch.Generator().manual_seed(0))
    return dict(words=words, vocab=vocab, V=len(vocab), xs=torch.tensor(xs), ys=torch.tensor(ys), W=W, device="cpu",
                count_nll=0.0, alphas=[0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0], split_words=split_words, Vocab=Vocab,
                big_logits=torch.tensor([[1.0, 2.0, 100.0]]))


@functools.cache
def _after_exercise_2() -> dict:
    """Lesson 01's objects after exercise 2's solution cell, whose counts and helpers exercise 3 builds on."""
    ns = _namespace(**_lesson_01())
    _run(_cell(_notebook_cells("01_bigram"), CELLS_01["01.2"][0]), ns)
    return {k: v for k, v in ns.items() if k not in _namespace() and k != "__builtins__"}


def run_01(exercise: str, code: str, after_solution: bool = False) -> list[Result]:
    from mmlib.checks import check, check_that
    from mmlib.expected import lesson01
    cells = _notebook_cells("01_bigram")
    objects = _after_exercise_2() if exercise == "01.3" else _lesson_01()
    ns = _namespace(**copy.deepcopy(objects), expected=lesson01, check=check, check_that=check_that,
                    report=_quiet_report)   # a copy: an answer that shuffles `words` in place must not change the next
    answer, checker, rep = CELLS_01[exercise]
    if after_solution:
        _run(_cell(cells, answer), ns)
        code = _cell(cells, answer) + "\n" + code   # the cell a learner would have: the solution, then the change
    _run(code, ns)
    ns["answer_cell"] = lambda name: code   # IPython's history in the notebook: the answer cell, run again by the check
    return _run(_cell(cells, checker), ns)[rep].results


@functools.cache
def _lesson_02() -> dict:
    from mmlib.data import build_dataset, load_words, split_words
    from mmlib.models import MLP, MLPConfig
    from mmlib.train import evaluate
    from mmlib.vocab import Vocab
    # No word with a 'q': a vocabulary of 26, so an answer with 27 (the names' vocabulary) typed in shows.
    words = [w for w in load_words()[:1600] if "q" not in w][:1500]
    train_words, dev_words, test_words = split_words(words)
    vocab = Vocab.from_words(words)
    from mmlib.train import TrainResult, state_digest
    model = MLP(MLPConfig(vocab_size=len(vocab), n_hidden=50, w2_scale=0.1), generator=torch.Generator().manual_seed(0))
    params = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return dict(words_train=train_words[:300], words_dev=dev_words, words_test=test_words, vocab=vocab,
                vocab_size=len(vocab), block_size=3,
                # as the final run left it, which (as in the lesson) took twice tune_steps
                model=model, result=TrainResult([], [], {}, 0.0, 200, state_digest(model)),
                final={"dev": evaluate(model, *build_dataset(dev_words, vocab, 3))},
                params=params, build_dataset=build_dataset, evaluate=evaluate,
                tune_steps=100)   # steps an answer that trains runs: the checks judge what it hands in, not how well


CELLS_02 = {"02.1": ("rep1 = report(", "rep1"), "02.2": ("rep2 = report(", "rep2"),
            "02.3": ("check_direct_connections(direct_params", "rep3")}


def run_02(exercise: str, code: str) -> list[Result]:
    from mmlib.checks import check, check_that
    from mmlib.expected import lesson02 as E
    ns = _namespace(**copy.deepcopy(_lesson_02()), check=check, check_that=check_that, report=_quiet_report,
                    mlp_loss=E.mlp_loss, uniform_loss=E.uniform_loss, check_reported_loss=E.check_reported_loss,
                    check_uniform_init=E.check_uniform_init,
                    check_direct_connections=functools.partial(E.check_direct_connections, display=False))
    _run(code, ns)
    marker, rep = CELLS_02[exercise]
    return _run(_cell(_notebook_cells("02_mlp"), marker), ns)[rep].results


@functools.cache
def _lesson_03() -> dict:
    from mmlib.data import build_dataset
    from mmlib.layers import eval_mode
    from mmlib.models import MLP, MLPConfig
    lesson02 = _lesson_02()
    g = torch.Generator().manual_seed(0)
    model_bn = MLP(MLPConfig(vocab_size=lesson02["vocab_size"], n_hidden=50, batchnorm=True, bn_momentum=0.5,
                             w1_scale="kaiming", w2_scale=0.01, b2_scale=0.0), generator=g)
    Xdev = build_dataset(lesson02["words_dev"], lesson02["vocab"], 3)[0]
    with torch.no_grad():
        for _ in range(3):   # training-mode batches move the running statistics away from 0 and 1
            model_bn(Xdev[torch.randint(0, len(Xdev), (32,), generator=g)])
        # A gain and a bias of their own per unit: a fold that drops, squares or misplaces one is then visible.
        model_bn.bngain.copy_(1 + 0.5 * torch.randn(model_bn.bngain.shape, generator=g))
        model_bn.bnbias.copy_(0.3 * torch.randn(model_bn.bnbias.shape, generator=g))
        # A few units with a running variance near eps (a unit that hardly varies): there eps is not negligible.
        model_bn.bnvar_running[0, :4] = torch.tensor([1e-5, 1e-4, 1e-3, 1e-2])
    return dict(model_bn=model_bn, Xdev=Xdev, eval_mode=eval_mode, is_todo=lambda *v: any(x is TODO for x in v))


def _zero_init(ns: dict) -> None:
    """What exercise 1's cells around the answer provide: lesson 02's sizes, data, and a short training run."""
    from dataclasses import replace

    from mmlib.data import build_dataset
    from mmlib.models import MLP, MLPConfig
    from mmlib.train import TrainConfig, evaluate, train
    lesson02 = _lesson_02()
    X, Y = build_dataset(lesson02["words_train"], lesson02["vocab"], 3)
    Xdev, Ydev = build_dataset(lesson02["words_dev"], lesson02["vocab"], 3)
    ns.update(MLP=MLP, replace=replace, cfg02=MLPConfig(vocab_size=lesson02["vocab_size"], n_hidden=50),
              vocab_size=lesson02["vocab_size"], n_embd=10, block_size=3, n_hidden=50, Xb=X[:32], Yb=Y[:32],
              Xdev=Xdev, Ydev=Ydev, evaluate=evaluate, uniform_loss=math.log(lesson02["vocab_size"]))
    ns["_train"] = lambda m: train(m, {"train": (X, Y), "dev": (Xdev, Ydev)},
                                   TrainConfig(max_steps=300, batch_size=32, lr=0.1, progress=False),
                                   generator=torch.Generator().manual_seed(0))


def run_03(exercise: str, code: str, after_solution: bool = False) -> list[Result]:
    from mmlib.checks import check, check_that
    from mmlib.expected import lesson03
    cells = _notebook_cells("03_activations_batchnorm")
    ns = _namespace(**_lesson_03(), expected=lesson03, check=check, check_that=check_that, report=_quiet_report)
    ns["model_bn"] = copy.deepcopy(ns["model_bn"])   # an answer that changes it in place must not change the next
    ns["bn_start"] = lesson03.snapshot(ns["model_bn"])   # as the answer cell's first line does
    if exercise == "03.1":
        _zero_init(ns)
        _run(_cell(cells, "learns = TODO"), ns)   # the notebook's own learns, for an answer that sets only zero_model
        _run(code, ns)
        ns["zero_start"] = lesson03.snapshot(ns["zero_model"])   # as the answer cell does before training
        try:
            ns["_train"](ns["zero_model"])
        except Exception as err:  # noqa: BLE001 - the answer cell's train() raised: the learner reads it there
            from mmlib.checks import describe_error
            trained = [Result("zero_model", "error", f"train(zero_model, ...) raised {describe_error(err)}")]
        else:
            trained = []
        return trained + _run(_cell(cells, "rep_zero = report("), ns)["rep_zero"].results
    if after_solution:
        _run(_cell(cells, "W_fold = TODO"), ns)
    _run(code, ns)
    return _run(_cell(cells, "rep_fold = report("), ns)["rep_fold"].results


RUNNERS = {"00": run_00, "01": run_01, "02": run_02, "03": run_03, "04": run_04, "05": run_05, "06": run_06}


def _rows(entry: dict) -> list[Result]:
    runner = RUNNERS[entry["exercise"][:2]]
    if entry.get("after_solution"):
        return runner(entry["exercise"], entry["code"], after_solution=True)
    return runner(entry["exercise"], entry["code"])


def _ids(entries):
    return [f"{e['exercise']} {e['name']}" for e in entries]


RIGHT = [e for e in ENTRIES if e.get("kind") == "right"]
WRONG = [e for e in ENTRIES if e.get("kind", "wrong") == "wrong"]


@pytest.mark.parametrize("entry", RIGHT, ids=_ids(RIGHT))
def test_a_right_answer_passes_every_row(entry):
    rows = _rows(entry)
    assert rows and all(r.passed for r in rows), "\n".join(r.text() for r in rows if not r.passed)


@pytest.mark.parametrize("entry", WRONG, ids=_ids(WRONG))
def test_a_wrong_answer_fails_naming_its_cause(entry):
    rows = _rows(entry)
    failed = "\n".join(r.text() for r in rows if not r.passed)
    assert failed, f"passed every row: {[r.text() for r in rows]}"
    missing = [w for w in entry["words"] if w not in failed]
    assert not missing, f"the failing rows do not say {missing}:\n{failed}"


# Every exercise of lessons 00-06 that has a check cell (04.1a-d are exercise 1's four check cells).
EXERCISES = {"00.1", "00.2", "00.3", "01.1", "01.2", "01.3", "01.4", "01.5", "02.1", "02.2", "02.3", "03.1", "03.2",
             "04.1a", "04.1b", "04.1c", "04.1d", "04.2", "04.3", "04.4", "05.1", "05.2", "05.3", "05.4", "06.1", "06.2",
             "06.3", "06.4"}


def test_every_checked_exercise_has_four_wrong_answers_and_a_right_one_of_each_style():
    wrong = Counter(e["exercise"] for e in WRONG)
    right = Counter(e["exercise"] for e in RIGHT)
    assert set(wrong) == set(right) == EXERCISES, set(wrong) ^ EXERCISES
    assert all(wrong[x] >= 4 for x in right), wrong
    assert all(right[x] >= 2 for x in wrong), right


def summary() -> str:
    """The catalogue per lesson: wrong answers, how many fail, how many fail with their cause named."""
    lines = []
    totals = Counter()
    for lesson in sorted({e["exercise"][:2] for e in WRONG}):
        c = Counter()
        for e in (e for e in WRONG if e["exercise"].startswith(lesson)):
            try:
                rows = _rows(e)
            except Exception:  # noqa: BLE001 - a check that raises counts as not caught
                rows = []
            failed = "\n".join(r.text() for r in rows if not r.passed)
            c["entries"] += 1
            c["caught"] += bool(failed)
            c["named"] += bool(failed) and all(w in failed for w in e["words"])
        totals += c
        lines.append(f"lesson {lesson}: {c['entries']} wrong answers, {c['caught']} caught, {c['named']} with the "
                     f"cause named; {sum(e['exercise'].startswith(lesson) for e in RIGHT)} right answers")
    lines.append(f"all: {totals['entries']} wrong answers, {totals['caught']} caught "
                 f"({totals['caught'] / totals['entries']:.0%}), {totals['named']} with the cause named "
                 f"({totals['named'] / totals['entries']:.0%}); {len(RIGHT)} right answers")
    return "\n".join(lines)


def score(path: Path) -> list[dict]:
    """Run a set of answers written blind (the catalogue's format, with `cause` in place of `words`) through the
    checks; one record per entry: its verdict (`passed`, `raised`, `failed`) and the failing rows' text.

    Whether a failing message names the entry's cause is a reader's judgement, made on these records; the
    verdicts are counted here.
    """
    records = []
    for e in tomllib.loads(path.read_text())["answer"]:
        rec = {k: e.get(k, "") for k in ("exercise", "kind", "name", "cause")}
        rec["kind"] = rec["kind"] or "wrong"
        t0 = time.perf_counter()
        try:
            rows = _rows(e)
        except Exception as err:  # noqa: BLE001 - a check that raises is one of the verdicts
            rec.update(verdict="raised", failing=f"{type(err).__name__}: {err}")
        else:
            failing = "\n".join(r.text() for r in rows if not r.passed)
            rec.update(verdict="failed" if failing else "passed", failing=failing)
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        records.append(rec)
    return records


def _score_table(records: list[dict]) -> str:
    lines = [f"{'exercise':9} {'wrong':>5} {'passed':>6} {'raised':>6} | {'right':>5} {'rejected':>8}"]
    for x in sorted({r["exercise"] for r in records}):
        rs = [r for r in records if r["exercise"] == x]
        wrong = [r for r in rs if r["kind"] == "wrong"]
        right = [r for r in rs if r["kind"] == "right"]
        lines.append(f"{x:9} {len(wrong):5} {sum(r['verdict'] == 'passed' for r in wrong):6} "
                     f"{sum(r['verdict'] == 'raised' for r in rs):6} | {len(right):5} "
                     f"{sum(r['verdict'] != 'passed' for r in right):8}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    if len(sys.argv) > 1:   # python tests/test_wrong_answers.py BLIND.toml [RECORDS.json]
        import json
        records = score(Path(sys.argv[1]))
        print(_score_table(records))
        if len(sys.argv) > 2:
            Path(sys.argv[2]).write_text(json.dumps(records, indent=1) + "\n")
    else:
        print(summary())
