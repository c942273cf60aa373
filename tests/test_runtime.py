"""mmlib.runtime, mmlib.timing, mmlib.metrics and mmlib.sample."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mmlib.metrics import save_metrics
from mmlib.models import Bigram, BigramConfig
from mmlib.runtime import device_of, n_parameters, pick_device, seed_everything, setup
from mmlib.sample import sample_words
from mmlib.timing import seconds_per_call
from mmlib.vocab import Vocab


def test_seeding_makes_draws_repeatable():
    a = torch.randn(3, generator=seed_everything(7)), torch.randn(3)
    b = torch.randn(3, generator=seed_everything(7)), torch.randn(3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="seed must be a whole number"):
        seed_everything("42")


def test_device_choice():
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="must be one of cpu, cuda, mps"):
        pick_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            pick_device("cuda")
    dev, g = setup(1, "cpu")
    assert dev.type == "cpu" and isinstance(g, torch.Generator)


def test_a_models_device_and_size_whatever_the_model():
    model = Bigram(BigramConfig(vocab_size=5))
    assert device_of(model) == torch.device("cpu") == model.device and n_parameters(model) == 25 == model.n_parameters()

    class Stack:                                  # lesson 03's hand-built models: parameters() is a list
        def parameters(self):
            return [torch.zeros(2, 3), torch.zeros(3)]

    assert device_of(Stack()) == torch.device("cpu") and n_parameters(Stack()) == 9
    with pytest.raises(ValueError, match="^Empty has no parameters, so it is on no device; give it at least one$"):
        device_of(Empty())


class Empty(torch.nn.Module):
    pass


def test_save_metrics_writes_plain_json_and_nulls_for_nan(tmp_path):
    p = tmp_path / "sub" / "m.json"
    base = {"lesson": "02", "model": "MLP", "parameters": {}, "train_seconds": 1.5, "n_parameters": 10,
            "checks": {"correct": 0, "exact": 0, "wrong": 0, "todo": 0, "total": 0}}
    m = {**base, "losses": {"train": torch.tensor(2.5), "dev": float("nan"), "test": None},
         "nested": {"x": [torch.tensor(1)]}}
    out = save_metrics(p, m)
    assert json.loads(p.read_text()) == out
    assert out["losses"] == {"train": 2.5, "dev": None, "test": None} and out["nested"] == {"x": [1]}
    assert out["schema"] == "mmlib.metrics/1"
    assert save_metrics(None, {**base, "losses": {"train": 1, "dev": 2, "test": 3}})["losses"]["dev"] == 2


def test_sample_words_follows_the_model_and_stops():
    vocab = Vocab.from_words(["ab"])
    # A model that always says: after '.', 'a'; after 'a', 'b'; after 'b', end.
    table = torch.full((3, 3), -1e9)
    table[0, 1] = table[1, 2] = table[2, 0] = 0.0
    model = Bigram(BigramConfig(vocab_size=3))
    with torch.no_grad():
        model.W.copy_(table)
    words = sample_words(model, vocab, n=4, g=torch.Generator().manual_seed(0))
    assert words == ["ab"] * 4
    # A model that never ends a word is cut at max_len.
    never = torch.zeros(3, 3)
    never[:, 0] = -math.inf
    with torch.no_grad():
        model.W.copy_(never)
    out = sample_words(model, vocab, n=2, max_len=5, g=torch.Generator().manual_seed(0))
    assert [len(w) for w in out] == [5, 5]


def test_setup_caps_threads_and_rejects_nonsense():
    before = torch.get_num_threads()
    try:
        setup(0, "cpu", threads=1)
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads must be a positive whole number"):
            setup(0, "cpu", threads=0)
    finally:
        torch.set_num_threads(before)


def test_seconds_per_call_keeps_the_fastest_round():
    calls = []
    t = seconds_per_call(lambda: calls.append(1), reps=5, rounds=4)
    assert len(calls) == 20 and 0 <= t < 0.01
    # the rounds differ: the first sleeps, the rest do not; the fastest is reported
    slow = iter([0.05] + [0.0] * 3)
    import time
    assert seconds_per_call(lambda: time.sleep(next(slow)), rounds=4) < 0.04
    with pytest.raises(ValueError, match="reps must be a positive whole number, got 0"):
        seconds_per_call(lambda: None, reps=0)
