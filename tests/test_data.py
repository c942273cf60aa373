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
    with pytest.raises(VocabError, match=r"^word 2 'a.b' contains '\.', the token that marks the start and end"):
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
    with pytest.raises(DataError,
                       match="5 words are too few .* the dev split would be empty; use a file with at least 6"):
        split_words(list("abcde"))
    assert [len(part) for part in split_words(list("abcdef"))] == [4, 1, 1]


def test_min_words_is_the_smallest_file_split_words_accepts():
    from mmlib.data import min_words

    n = min_words()
    assert n == 6
    assert all(len(part) > 0 for part in split_words([f"w{i}" for i in range(n)]))
    with pytest.raises(DataError, match=f"at least {n} words"):
        split_words([f"w{i}" for i in range(n - 1)])


def test_require_words_names_the_file_the_count_and_the_reason():
    from mmlib.data import require_words

    words = ["anna", "bob"]
    assert require_words(words, 2, "why") is words
    with pytest.raises(DataError, match=r"tiny.txt holds 2 words; this lesson needs at least 6 \(a split\): "
                                        r"use a longer word file \(data_path\)"):
        require_words(words, 6, "a split", "tiny.txt")
    with pytest.raises(ValueError, match="minimum must be a positive whole number"):
        require_words(words, 0, "why")


def test_train_and_dev_leaves_the_test_split_out():
    from mmlib.data import train_and_dev

    words = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail"]
    splits = build_splits(words, Vocab("abcdefghijklmnopqrstuvwxyz"), 3)
    got = train_and_dev(splits)
    assert list(got) == ["train", "dev"] and got["train"] is splits["train"] and got["dev"] is splits["dev"]
    with pytest.raises(KeyError, match=r"splits needs the parts 'train' and 'dev' \(as build_splits returns\), "
                                       r"lacks \['dev'\]"):
        train_and_dev({"train": splits["train"]})


# ---- line breaks other than '\n', very long words, block sizes (issue 15) ---------------------------


def test_only_newlines_end_lines_and_other_line_breaks_are_refused_with_their_line(tmp_path):
    # The file: 7 lines, 4 of them holding a character str.splitlines also cuts at (11 "words").
    text = "anna\nbo\x85b\ncarl\nda\u2028vid\nev\x0ce\nfr\x1cank\ngus\n"
    assert len(text.splitlines()) == 11 and text.count("\n") == 7
    p = write(tmp_path, text.encode("utf-8"))
    with pytest.raises(DataError) as err:
        load_words(p)
    msg = str(err.value)
    assert msg.startswith("words.txt, line 2: U+0085 NEXT LINE at character 3, which some programs read as a line "
                          "break (4 such characters in the file)"), msg
    assert "\n" not in msg, "one line"
    for ch, name in [("\u2028", "LINE SEPARATOR"), ("\x0c", "FORM FEED"), ("\x1c", "FILE SEPARATOR"),
                     ("\r", "CARRIAGE RETURN"), ("\x0b", "LINE TABULATION"), ("\u2029", "PARAGRAPH SEPARATOR")]:
        with pytest.raises(DataError, match=f"line 3: U\\+{ord(ch):04X} {name} at character 2"):
            load_words(write(tmp_path, f"ana\nbob\nx{ch}y\n".encode("utf-8")))
    # Windows endings and a final line without a newline are still one word per line.
    assert load_words(write(tmp_path, b"ana\r\nbob\r\ncarl")) == ["ana", "bob", "carl"]


def test_the_advice_for_another_line_break_fixes_the_file(tmp_path):
    p = write(tmp_path, "ana\rbob\rcarl\r".encode("utf-8"))   # classic Mac line endings
    with pytest.raises(DataError, match="line 1: U\\+000D CARRIAGE RETURN") as err:
        load_words(p)
    fixed = _run_advice(str(err.value), p)
    assert load_words(fixed) == ["ana", "bob", "carl"]


def _run_advice(message: str, path: Path) -> Path:
    """Run the `python -c "..." < in.txt > out.txt` command a message advises on `path`; return out.txt."""
    import re
    import subprocess
    import sys

    code = re.search(r'`python -c "(.*?)" < in.txt > out.txt`', message).group(1)
    out = path.with_name("out.txt")
    with open(path, "rb") as src, open(out, "wb") as dst:
        subprocess.run([sys.executable, "-c", code], stdin=src, stdout=dst, check=True)
    return out


@pytest.mark.parametrize("text, left", [
    ("Jose\u0301\nana\n", False),                 # NFC has é: it joins them
    ("i\u0307stanbul\nana\n", True),             # 'İ'.lower(): NFC has no single character for i + U+0307
    ("i\u0307stanbul\nJose\u0301\nana\n", True),  # both in one file
])
def test_the_combining_mark_warning_gives_advice_that_works(tmp_path, text, left):
    p = write(tmp_path, text.encode("utf-8"))
    with pytest.warns(UserWarning, match="line 1 .*combining accent") as rec:
        load_words(p)
    (w,) = [str(r.message) for r in rec if "combining" in str(r.message)]
    assert ("NFC normalisation leaves" in w) == left, w
    fixed = _run_advice(w, p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        words = load_words(fixed)   # no mark left to warn about
    assert words[-1] == "ana" and ("José" in words) == ("Jose\u0301" in text)


def test_a_very_long_word_is_refused_with_its_line_and_length_never_echoed(tmp_path):
    from mmlib.data import MAX_WORD_LENGTH

    p = write(tmp_path, ("ana\n" + "x" * 100_000 + "\nbob\n").encode("utf-8"))
    with pytest.raises(DataError) as err:
        load_words(p)
    msg = str(err.value)
    assert msg == (f"words.txt, line 2: a word of 100,000 characters; words may have at most {MAX_WORD_LENGTH} "
                   "(models pad every word to the longest one): split or remove that line")
    ok = "y" * MAX_WORD_LENGTH
    assert load_words(write(tmp_path, f"ana\n{ok}\n".encode("utf-8"))) == ["ana", ok]


def test_words_made_in_code_meet_the_same_length_rule_and_block_sizes_have_a_maximum():
    from mmlib.data import MAX_BLOCK_SIZE, MAX_WORD_LENGTH, build_sequences, sequence_length

    v = Vocab("xab")
    assert sequence_length(["ab", "x" * MAX_WORD_LENGTH]) == MAX_WORD_LENGTH + 1 <= MAX_BLOCK_SIZE
    with pytest.raises(DataError, match=r"^word 2 has 100,001 characters; words may have at most 100") as err:
        build_sequences(["ab", "x" * 100_001], v)
    assert len(str(err.value)) < 200
    with pytest.raises(ValueError, match=f"block_size must be a whole number <= {MAX_BLOCK_SIZE} .*got 100001"):
        build_sequences(["ab"], v, 100_001)
    with pytest.raises(ValueError, match=f"block_size must be a whole number <= {MAX_BLOCK_SIZE}"):
        build_dataset(["ab"], v, MAX_BLOCK_SIZE + 1)
    with pytest.raises(DataError, match=r"too short for the word 'xxxxxxxx.*'\.\.\. \(60 characters\)"):
        build_sequences(["x" * 60], v, 8)   # the word is quoted, not echoed whole
