"""Lesson 01 (bigram): the metrics of a CI-sized run, solution and learner versions."""

from __future__ import annotations

import math

import pytest

from conftest import NOTEBOOKS
from mmlib.data import load_words
from mmlib.expected import lesson01 as expected
from mmlib.vocab import Vocab

SOLUTION = NOTEBOOKS / "solutions" / "01_bigram_solutions.ipynb"
LEARNER = NOTEBOOKS / "01_bigram.ipynb"


def test_counting_model_loss_is_the_independent_one():
    words = load_words()
    vocab = Vocab.from_words(words)
    nll = expected.ngram_nll(expected.ngram_counts(words, vocab, 2), words, vocab)
    # On the original makemore names.txt the same model gives 2.454; our SSA 2017 names land close.
    assert nll == pytest.approx(2.4547, abs=1e-4)


@pytest.mark.parametrize("path", [SOLUTION, LEARNER], ids=["solution", "learner"])
def test_ci_run_reports_the_counting_loss_and_a_learning_net(path, run_lesson):
    m, _ = run_lesson(path)
    assert m["n_words"] == 29910 and m["vocab_size"] == 27
    assert m["count_nll"] == pytest.approx(2.4547, abs=1e-4)
    assert m["uniform_nll"] == pytest.approx(math.log(27))
    # A CI run takes few steps: the net must be well on its way from ~3.7 but need not have converged.
    assert m["count_nll"] - 0.01 < m["net_nll"] < 2.6


def test_default_run_net_matches_counts_within_0_01(run_lesson):
    """At the lesson's default max_steps the net lands within 0.01 of the counting model."""
    import nbformat

    nb = nbformat.read(SOLUTION, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    defaults = {}
    exec(params.source, {}, defaults)
    m, _ = run_lesson(SOLUTION, max_steps=defaults["max_steps"])
    assert abs(m["net_nll"] - m["count_nll"]) < 0.01


def test_solution_passes_every_check_and_learner_attempts_none(run_lesson):
    sol, _ = run_lesson(SOLUTION)
    learner, _ = run_lesson(LEARNER)
    assert sol["checks"]["correct"] == sol["checks"]["total"] == 14
    assert learner["checks"] == {"correct": 0, "exact": 0, "wrong": 0, "todo": 14, "total": 14}


def test_lesson_runs_unchanged_on_another_word_list(tmp_path, run_lesson):
    other = tmp_path / "pets.txt"
    other.write_text("\n".join(["rex", "fido", "bella", "max", "luna", "coco", "milo", "bo", "kiki", "zed"] * 3) + "\n")
    m, _ = run_lesson(SOLUTION, data_path=str(other), max_steps=50)
    assert m["n_words"] == 30 and m["vocab_size"] == len(set("".join(open(other).read().split()))) + 1
    assert m["checks"]["correct"] == m["checks"]["total"]
