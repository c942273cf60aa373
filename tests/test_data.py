"""mmlib.data and mmlib.vocab: reading word files, the vocabulary, datasets and splits."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

from mmlib.data import NAMES, DataError, build_dataset, build_splits, load_words, split_words
from mmlib.vocab import Vocab, VocabError


def write(tmp_path, data: bytes, name="words.txt"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_load_words_reads_the_shipped_names():
    words = load_words()
    assert words == load_words(NAMES)
    assert len(words) == 29910 and words[:3] == ["emma", "liam", "olivia"]


def test_load_words_tolerates_bom_crlf_whitespace_and_blank_lines(tmp_path):
    p = write(tmp_path, "\ufeffAnna\r\n  bob  \r\n\r\n\tÉlodie\r\n\n".encode("utf-8"))
    assert load_words(p) == ["Anna", "bob", "Élodie"], "case and accents must be kept as they are"


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.txt", "no word file"),
    (lambda d: d, "is a folder"),
    (lambda d: write(d, b""), "holds no words"),
    (lambda d: write(d, b"\n  \n\r\n"), "holds no words"),
    (lambda d: write(d, b"\x89PNG\r\n\x1a\n\x00\x00"), "looks binary"),
    (lambda d: write(d, "ana\nJosé\n".encode("latin-1")), "not valid UTF-8 (byte 0xe9 on line 2)"),
    (lambda d: write(d, "ana\nbob\n".encode("utf-16")), "looks like UTF-16 text; save it as UTF-8"),
    (lambda d: write(d, "ana\nbob\n".encode("utf-16-le")), "looks like UTF-16 text"),
    (lambda d: write(d, "ana\nbob\n".encode("utf-16-be")), "looks like UTF-16 text"),
    (lambda d: Path("/dev/zero"), "not a regular file"),
])
def test_load_words_errors_say_what_is_wrong(tmp_path, make, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_words(make(tmp_path))


def test_vocab_puts_the_boundary_token_first_and_round_trips():
    v = Vocab.from_words(["emma", "bob"])
    assert v.itos == [".", "a", "b", "e", "m", "o"] and v.stoi["."] == 0 and len(v) == 6
    assert v.decode(v.encode("mamba")) == "mamba"
    assert v.decode(torch.tensor([4, 1, 0])) == "ma."


def test_vocab_error_names_the_character_and_the_word():
    v = Vocab.from_words(["emma"])
    with pytest.raises(VocabError, match=r"'z' \(U\+007A\) in the word 'zoe'"):
        v.encode("zoe")
    with pytest.raises(VocabError, match="outside the vocabulary"):
        v.decode([99])


def test_vocab_rejects_words_containing_the_boundary_token():
    with pytest.raises(VocabError, match=r"the word 'a.b' contains '\.'"):
        Vocab.from_words(["ok", "a.b"])


def loop_dataset(words, vocab, block_size):
    X, Y = [], []
    for w in words:
        ctx = [0] * block_size
        for ch in w + ".":
            ix = vocab.stoi[ch]
            X.append(ctx)
            Y.append(ix)
            ctx = ctx[1:] + [ix]
    return torch.tensor(X), torch.tensor(Y)


@pytest.mark.parametrize("block_size", [1, 3, 8])
def test_build_dataset_matches_the_lecture_loop(block_size):
    words = load_words()[:500] + ["a", "zz"]
    v = Vocab.from_words(words)
    X, Y = build_dataset(words, v, block_size)
    Xl, Yl = loop_dataset(words, v, block_size)
    assert X.dtype == Y.dtype == torch.int64
    assert torch.equal(X, Xl) and torch.equal(Y, Yl)


def test_build_dataset_rejects_bad_arguments():
    v = Vocab.from_words(["ab"])
    with pytest.raises(ValueError, match="block_size must be a positive whole number"):
        build_dataset(["ab"], v, 0)
    with pytest.raises(DataError, match="no words"):
        build_dataset([], v, 3)
    with pytest.raises(VocabError, match="'c'"):
        build_dataset(["abc"], v, 3)


def test_split_is_deterministic_disjoint_and_80_10_10():
    words = load_words()
    a = split_words(words, seed=1)
    assert a == split_words(words, seed=1) and a != split_words(words, seed=2)
    train, dev, test = a
    assert (len(train), len(dev), len(test)) == (23928, 2991, 2991)
    assert sorted(train + dev + test) == sorted(words)
    with pytest.raises(ValueError, match="fractions"):
        split_words(words, fractions=(0.5, 0.6, 0.1))
    with pytest.raises(DataError, match="use a file with at least 6 words"):
        split_words(["a", "b"])


def test_build_splits_covers_every_example_once():
    words = load_words()
    v = Vocab.from_words(words)
    parts = build_splits(words, v, block_size=3, seed=42)
    assert list(parts) == ["train", "dev", "test"]
    assert sum(len(Y) for _, Y in parts.values()) == sum(len(w) + 1 for w in words)


def test_load_words_refuses_a_pipe_instead_of_waiting_forever(tmp_path):
    fifo = tmp_path / "words.fifo"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        load_words(fifo)


@pytest.mark.parametrize("bad", [123, 1.5, ["names.txt"]])
def test_load_words_names_a_data_path_of_the_wrong_type(bad):
    with pytest.raises(DataError, match="data_path must be None .* or the path of a text file, got"):
        load_words(bad)


@pytest.mark.parametrize("text, what, line", [
    ("ana\nbo\tb\n", "U\\+0009 .* control character", 2),
    ("ana\nzoe\u200b\n", "U\\+200B ZERO WIDTH SPACE .* invisible", 2),
    ("Jose\u0301\nana\n", "U\\+0301 COMBINING ACUTE ACCENT .* NFC", 1),
])
def test_invisible_characters_are_kept_but_named_with_their_line(tmp_path, text, what, line):
    p = write(tmp_path, text.encode("utf-8"))
    with pytest.warns(UserWarning, match=f"line {line} .*{what}"):
        words = load_words(p)
    assert len(words) == 2, "the words are kept as they are"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_words(write(tmp_path, "New York\nJosé\n".encode("utf-8"), "ok.txt"))  # spaces, accents: no warning


def test_split_needs_a_seed_and_enough_words_for_every_part():
    with pytest.raises(ValueError, match="seed must be a whole number"):
        split_words(["a"] * 20, seed=None)
    with pytest.raises(DataError, match="5 words are too few .* the dev split would be empty; use a file with at least 6"):
        split_words(list("abcde"))
    assert [len(part) for part in split_words(list("abcdef"))] == [4, 1, 1]
