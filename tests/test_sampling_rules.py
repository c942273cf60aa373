"""Sampling's edge cases, in mmlib.sample and the lesson 06 widgets (issues 14 and 15): one rule for '.' in
names and prefixes, empty samples, tiny temperatures, top-k and max_len limits, bounded memory."""

from __future__ import annotations

import pytest
import torch

import mmlib.sample as sample
from mmlib.models import create
from mmlib.sample import SAMPLE_CHUNK, sample_words
from mmlib.vocab import Vocab, VocabError
from mmlib.widgets import attention_explorer, attention_map, receptive_field, sample_summary

VOCAB = Vocab("abcdefghijklmnopqrstuvwxyz")
DOT = "contains '.', the token that marks the start and end of every word, so no word can hold it: remove the '.'"


@pytest.fixture(scope="module")
def tiny():
    return create("transformer", generator=torch.Generator().manual_seed(0), vocab_size=27, block_size=16,
                  n_layer=1, n_head=2, n_embd=16)


def g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("prefix", ["ann.", ".", "ma.ry"])
def test_a_prefix_holding_the_boundary_is_refused_not_cut(tiny, prefix):
    with pytest.raises(VocabError) as err:
        sample_words(tiny, VOCAB, 3, g=g(), prefix=prefix)
    assert str(err.value) == f"prefix {prefix!r} {DOT}"


def test_every_explorer_refuses_a_name_holding_the_boundary_with_the_same_line(tiny):
    with pytest.raises(VocabError) as attention:
        attention_map(tiny, VOCAB, "ann.a")
    with pytest.raises(VocabError) as receptive:
        receptive_field("ann.a", 2, 8)
    assert str(attention.value) == str(receptive.value) == f"name 'ann.a' {DOT}"
    e = attention_explorer(tiny, VOCAB, "emma")
    e.name.value = "ann.a"
    assert e.error == f"name 'ann.a' {DOT}" and e.result.name == "emma"   # the last good map stays


def _always_ends():
    """A bigram model whose first character is always the end token: every sample is empty."""
    model = create("bigram", generator=g(), vocab_size=27)
    with torch.no_grad():
        model.W[0] = -10.0
        model.W[0, 0] = 10.0
    return model


def test_empty_samples_are_not_new_names():
    s = sample_summary(_always_ends(), VOCAB, ["anna", "bob"], 8, seed=0)
    assert s.words == [""] * 8 and s.new == [False] * 8 and s.share_new == 0 and s.n_empty == 8
    assert "8 samples, 8 empty, 0% new" in s.header()
    assert "(empty)*" not in s.text() and "(empty)" in s.text()


@pytest.mark.parametrize("temperature", [1e-40, 1e-320, 5e-324])
def test_a_temperature_too_small_to_divide_by_is_greedy_sampling(tiny, temperature):
    greedy = sample_words(tiny, VOCAB, 4, g=g(), top_k=1)
    assert sample_words(tiny, VOCAB, 4, g=g(), temperature=temperature) == greedy
    assert len(set(greedy)) == 1


def test_top_k_above_the_vocabulary_is_refused_and_at_it_keeps_everything(tiny):
    with pytest.raises(ValueError, match=r"^top_k must be at most the vocabulary's size, 27 \(top_k=27 keeps every "
                                         r"character, as None does\), got 28$"):
        sample_words(tiny, VOCAB, 3, g=g(), top_k=28)
    assert sample_words(tiny, VOCAB, 5, g=g(), top_k=27) == sample_words(tiny, VOCAB, 5, g=g())


def test_max_len_must_leave_room_for_a_character(tiny):
    with pytest.raises(ValueError, match="^max_len must be a positive whole number, got 0$"):
        sample_words(tiny, VOCAB, 3, g=g(), max_len=0)
    with pytest.raises(ValueError, match=r"^prefix 'anna' has 4 characters, more than max_len=3 allows"):
        sample_words(tiny, VOCAB, 3, g=g(), prefix="anna", max_len=3)
    assert all(w.startswith("ann") and len(w) <= 4 for w in sample_words(tiny, VOCAB, 5, g=g(), prefix="ann",
                                                                        max_len=4))


def test_many_samples_are_drawn_in_bounded_chunks(monkeypatch):
    model = create("bigram", generator=g(), vocab_size=27)
    rows = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda idx, targets=None: (rows.append(len(idx)), forward(idx))[1])
    n = 2 * SAMPLE_CHUNK + 5
    words = sample_words(model, VOCAB, n, g=g(), max_len=3)
    assert len(words) == n and max(rows) == SAMPLE_CHUNK, "memory follows the chunk, not n"
    # Chunk after chunk from one generator: the first chunk is what asking for one chunk draws.
    monkeypatch.setattr(sample, "SAMPLE_CHUNK", 4)
    rows.clear()
    ten = sample_words(model, VOCAB, 10, g=g(), max_len=3)
    assert ten[:4] == sample_words(model, VOCAB, 4, g=g(), max_len=3) and max(rows) == 4


def test_a_model_with_nan_weights_gets_one_clear_line():
    model = create("bigram", generator=g(), vocab_size=27)
    with torch.no_grad():
        model.W[0, 3] = float("nan")
    with pytest.raises(ValueError, match="^the model's logits are NaN, so there is nothing to sample: its weights "
                                         "diverged in training; train it again with a lower learning rate$"):
        sample_words(model, VOCAB, 2, g=g())
