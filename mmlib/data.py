"""Word files, train/dev/test splits and (context, next character) datasets.

`load_words` and `split_words` are taught in lesson 01, `build_dataset` and `build_splits` in lesson 02,
`build_sequences` (one padded word per example, for models that predict every position) in lesson 06.
"""

from __future__ import annotations

import os
import random
import unicodedata
import warnings
from functools import partial
from importlib.resources import files
from pathlib import Path

import torch

from mmlib import validate
from mmlib.vocab import Vocab, quote

NAMES = Path(str(files("mmlib.words") / "names.txt"))
"""The names file that ships with the course (data/names.txt in the repository; see data/README.md)."""

MAX_WORD_LENGTH = 100
"""The longest word `load_words` accepts. Sequence models pad every word to the longest one, so a
single 100,000-character line would make every example 100,000 positions long; the course's longest
words are 15 (names) and 57 (cities) characters."""

MAX_BLOCK_SIZE = 128
"""The most characters a model may read (`block_size`): the longest word and its end token fit, rounded up
to a power of two for lesson 05's WaveNet; more positions would only ever hold padding or start tokens."""
IGNORE = -1
"""The target that marks padding in `build_sequences`' Y; `F.cross_entropy(..., ignore_index=IGNORE)` skips it."""
BLOCK_SIZE_WHY = f"words have at most {MAX_WORD_LENGTH} characters, so more positions would hold only padding"

LINE_BREAKS = {"\r": "CARRIAGE RETURN", "\x0b": "LINE TABULATION", "\x0c": "FORM FEED", "\x1c": "FILE SEPARATOR",
               "\x1d": "GROUP SEPARATOR", "\x1e": "RECORD SEPARATOR", "\x85": "NEXT LINE",
               "\u2028": "LINE SEPARATOR", "\u2029": "PARAGRAPH SEPARATOR"}
"""The characters other than '\\n' that some programs (and `str.splitlines`) read as the end of a line, by name."""


class DataError(ValueError):
    """A word file that cannot be used, with what is wrong and how to fix it."""


def load_words(path: str | os.PathLike | None = None) -> list[str]:
    """Read one word per line from a UTF-8 text file (`None`: the names file the course ships).

    A byte-order mark and Windows line endings are accepted; surrounding whitespace is stripped
    and blank lines are dropped. Lines end at '\\n' only: a file holding another line break (a lone
    '\\r', a form feed, U+2028, ...) is refused, as is a word longer than `MAX_WORD_LENGTH`.
    Nothing else is changed: no lowercasing, no filtering of
    characters, so the vocabulary is exactly what the file holds. Characters that are easy to
    miss (tabs and other control characters, zero-width characters, combining accents) are kept
    too, but each kind gets a warning naming the first line that holds it.
    Only regular files are read: a pipe would wait forever and a device such as /dev/zero never ends.
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise DataError(f"data_path must be None (the course's names) or the path of a text file, "
                        f"got {path!r} ({type(path).__name__})")
    path = Path(NAMES if path is None else path)
    if not path.exists():
        raise DataError(f"no word file at {path}: check data_path (the course ships {NAMES})")
    if path.is_dir():
        raise DataError(f"{path} is a folder; data_path must name a text file with one word per line")
    if not path.is_file():
        raise DataError(f"{path} is not a regular file (a pipe, socket or device); "
                        "data_path must name a text file with one word per line")
    raw = path.read_bytes()
    even, odd = raw[0:8:2].count(0), raw[1:8:2].count(0)   # UTF-16 puts a NUL beside every ASCII letter
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff") or (len(raw) >= 8 and {even, odd} & {0} and max(even, odd) >= 3):
        raise DataError(f"{path} looks like UTF-16 text; save it as UTF-8, e.g. "
                        f"`iconv -f utf-16 -t utf-8 {path.name} > words-utf8.txt`")
    if b"\x00" in raw:
        raise DataError(
            f"{path} looks binary (it contains NUL bytes at offset {raw.index(0)}); "
            "data_path must name a UTF-8 text file with one word per line"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path} is not valid UTF-8 (byte {raw[e.start]:#04x} on line {line}); "
            "save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    # One word per line means lines end at '\n' (or '\r\n') only: str.splitlines would also cut at form
    # feeds, U+0085, U+2028 and others, turning one line into several words without a word said.
    raw_lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    _refuse_other_line_breaks(path, raw_lines)
    lines = [w.strip() for w in raw_lines]
    _refuse_long_words(path, lines)
    _warn_hidden_characters(path, lines)
    words = [w for w in lines if w]
    if not words:
        raise DataError(f"{path} holds no words (it is empty or only blank lines)")
    return words


def _refuse_other_line_breaks(path: Path, lines: list[str]) -> None:
    for n, line in enumerate(lines, 1):
        at = next((i for i, ch in enumerate(line) if ch in LINE_BREAKS), None)
        if at is not None:
            ch = line[at]
            count = sum(text.count(c) for text in lines for c in LINE_BREAKS)
            raise DataError(f"{path.name}, line {n}: U+{ord(ch):04X} {LINE_BREAKS[ch]} "
                            f"at character {at + 1}, which some programs read as a line break ({count:,} such "
                            f"character{'s' if count != 1 else ''} in the file); words are separated by newlines "
                            "('\\n') only: replace each with a newline, e.g. "
                            "`python -c \"import sys; sys.stdout.write(sys.stdin.read()"
                            f".replace('\\u{ord(ch):04x}', '\\n'))\" < in.txt > out.txt`")


def _refuse_long_words(path: Path, lines: list[str]) -> None:
    for n, line in enumerate(lines, 1):
        if len(line) > MAX_WORD_LENGTH:
            raise DataError(f"{path.name}, line {n}: a word of {len(line):,} characters; words may have at most "
                            f"{MAX_WORD_LENGTH} (models pad every word to the longest one): split or remove that line")


HIDDEN = {
    "Cc": "a control character such as a tab",
    "Cf": "an invisible formatting character such as a zero-width space",
    "Mn": "a combining accent (a letter written as two code points)",
    "Me": "a combining mark",
}
"""Unicode categories that become vocabulary tokens a reader cannot see; `load_words` warns about them."""


def _warn_hidden_characters(path: Path, lines: list[str]) -> None:
    first: dict[str, tuple[int, str, str]] = {}
    counts: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        for ch in line:
            cat = unicodedata.category(ch)
            if cat in HIDDEN:
                first.setdefault(cat, (n, ch, line))
                counts[cat] = counts.get(cat, 0) + 1
    for cat, (n, ch, line) in first.items():
        fix = (_combining_fix(lines, cat) if cat in ("Mn", "Me")
               else "remove it from the file if it is not meant to be a character of the words")
        warnings.warn(f"{path.name}, line {n} ({quote(line)}): U+{ord(ch):04X} "
                      f"{unicodedata.name(ch, 'unnamed')} is {HIDDEN[cat]}; it becomes a token of its own "
                      f"({counts[cat]:,} such character{'s' if counts[cat] != 1 else ''} in the file): {fix}",
                      stacklevel=3)


def _combining_fix(lines: list[str], cat: str) -> str:
    """Advice that removes the combining marks of category `cat`: NFC joins a mark to its letter where
    Unicode has one character for the pair (e + U+0301 is é) and leaves the others (i + U+0307, which
    Python's 'İ'.lower() gives), which only deleting the mark removes."""
    total = sum(unicodedata.category(c) == cat for line in lines for c in line)
    left = [(line[i - 1:i], c) for line in map(partial(unicodedata.normalize, "NFC"), lines)
            for i, c in enumerate(line) if unicodedata.category(c) == cat]
    nfc = "unicodedata.normalize('NFC', sys.stdin.read())"
    if not left:
        return (f"normalise the file to NFC, which joins each such mark to its letter (e.g. `python -c \"import "
                f"unicodedata,sys; sys.stdout.write({nfc})\" < in.txt > out.txt`)")
    marks = list(dict.fromkeys(c for _, c in left))[:3]
    letter, mark = left[0]
    deletes = "".join(f".replace('\\u{ord(c):04x}', '')" for c in marks)
    return (f"NFC normalisation leaves {len(left):,} of the {total:,} unchanged (Unicode has no single character for "
            f"{letter!r} + U+{ord(mark):04X}), so normalise and delete what is left, e.g. `python -c \"import "
            f"unicodedata,sys; sys.stdout.write({nfc}{deletes})\" < in.txt > out.txt`")


def _split_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    n1, n2 = int(fractions[0] * n), int((fractions[0] + fractions[1]) * n)
    return n1, n2 - n1, n - n2


def min_words(fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> int:
    """The fewest words `split_words` can cut into three non-empty parts: 6 for 80/10/10 (lesson 01)."""
    return next(n for n in range(3, 10_000) if min(_split_sizes(n, fractions)) > 0)


def require_words(words: list[str], minimum: int, why: str, path: str | os.PathLike | None = None) -> list[str]:
    """Stop a lesson in its data cell when the word file is smaller than the lesson can use (lesson 01 onwards).

    `minimum` is the smallest file the lesson accepts, `why` what needs it; without this check a
    small file fails many cells later, in an exercise or deep inside a helper.
    """
    validate.positive_int("minimum", minimum)
    if len(words) < minimum:
        where = f"{path} holds" if path is not None else "the word file holds"
        raise DataError(f"{where} {len(words)} word{'s' if len(words) != 1 else ''}; this lesson needs at least "
                        f"{minimum} ({why}): use a longer word file (data_path)")
    return words


def split_words(
    words: list[str], seed: int = 42, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[list[str], list[str], list[str]]:
    """Shuffle a copy of `words` with `seed` and cut it into train, dev and test lists.

    The split is by word, not by example, so no word's characters leak from train into dev or test.
    The same seed always gives the same split; every part gets at least one word, or a clear error
    says how many words the file needs (`min_words`).
    """
    validate.seed("seed", seed)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    sizes = _split_sizes(len(words), fractions)
    if min(sizes) == 0:
        empty = [name for name, k in zip(("train", "dev", "test"), sizes) if k == 0]
        raise DataError(f"{len(words)} words are too few to split {fractions[0]:g}/{fractions[1]:g}/{fractions[2]:g} "
                        f"into train/dev/test: the {' and '.join(empty)} split would be empty; "
                        f"use a file with at least {min_words(fractions)} words")
    words = list(words)
    random.Random(seed).shuffle(words)
    n1, n2 = sizes[0], sizes[0] + sizes[1]
    return words[:n1], words[n1:n2], words[n2:]


def build_dataset(words: list[str], vocab: Vocab, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (context, next character) pair of `words`.

    Each word is padded with `block_size` start tokens in front and one end token behind; every
    window of `block_size` ids is a context `X[i]` and the id after it is its target `Y[i]`.
    Returns X of shape (N, block_size) and Y of shape (N,), both int64.
    """
    validate.at_most("block_size", validate.positive_int("block_size", block_size), MAX_BLOCK_SIZE, BLOCK_SIZE_WHY)
    if not words:
        raise DataError("build_dataset got no words")
    seqs = [[0] * block_size + vocab.encode(w) + [0] for w in words]
    flat = torch.tensor([i for s in seqs for i in s], dtype=torch.long)
    # A padded word of length L holds L - block_size windows. Laid end to end, window n of
    # word k starts block_size * k positions further along than n: each earlier word adds
    # block_size padding positions that start no window.
    n_windows = torch.tensor([len(s) - block_size for s in seqs])
    word_of = torch.repeat_interleave(torch.arange(len(seqs)), n_windows)
    starts = torch.arange(len(word_of)) + block_size * word_of
    X = flat[starts[:, None] + torch.arange(block_size)]
    Y = flat[starts + block_size]
    return X, Y


def sequence_length(words: list[str]) -> int:
    """The block size a sequence model needs for `words`: the longest word plus its end token.

    Words longer than `MAX_WORD_LENGTH` are refused here too (a list made in code skips `load_words`).
    """
    if not words:
        raise DataError("sequence_length got no words")
    i, longest = max(enumerate(words, 1), key=lambda iw: len(iw[1]))
    if len(longest) > MAX_WORD_LENGTH:
        raise DataError(f"word {i:,} has {len(longest):,} characters; words may have at most {MAX_WORD_LENGTH} "
                        "(models pad every word to the longest one): split or remove it")
    return len(longest) + 1


def build_sequences(words: list[str], vocab: Vocab, block_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One example per word, for models that predict every position at once (lesson 06).

    X[i] is the start token followed by the word, Y[i] the word followed by the end token, so
    Y[i, t] is the character after X[i, :t + 1]. Both are padded to `block_size` (None: the
    longest word + 1); padding is 0 in X and `IGNORE` in Y, which the loss leaves out.
    Returns X and Y of shape (N, block_size), int64.
    """
    if not words:
        raise DataError("build_sequences got no words")
    if block_size is None:
        T = sequence_length(words)
    else:
        T = validate.at_most("block_size", validate.positive_int("block_size", block_size), MAX_BLOCK_SIZE,
                             BLOCK_SIZE_WHY)
    longest = max(words, key=len)
    if len(longest) + 1 > T:
        raise DataError(f"block_size {T} is too short for the word {quote(longest)} ({len(longest)} characters "
                        "plus the end token); use a block_size of at least " + str(len(longest) + 1))
    X = torch.zeros(len(words), T, dtype=torch.long)
    Y = torch.full((len(words), T), IGNORE, dtype=torch.long)
    for i, w in enumerate(words):
        ids = vocab.encode(w)
        X[i, 1 : len(ids) + 1] = torch.tensor(ids, dtype=torch.long)
        Y[i, : len(ids) + 1] = torch.tensor(ids + [0], dtype=torch.long)
    return X, Y


def build_splits(
    words: list[str], vocab: Vocab, block_size: int | None, seed: int = 42, *, per_position: bool = False
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """`split_words` then a dataset of each part: {"train": (X, Y), "dev": ..., "test": ...}.

    Window datasets (`build_dataset`) by default; with `per_position=True`, sequence datasets
    (`build_sequences`) padded to `block_size` (None: the longest word of all three parts + 1, so
    the three share one shape). Taught in lesson 02; later lessons call this one line instead of
    repeating the setup. `mmlib.models` says which kind each model reads (`model.per_position`).
    """
    parts = dict(zip(("train", "dev", "test"), split_words(words, seed)))
    if per_position:
        T = sequence_length(words) if block_size is None else block_size
        return {name: build_sequences(ws, vocab, T) for name, ws in parts.items()}
    if block_size is None:
        raise ValueError("window datasets need a block_size (the number of characters of context)")
    return {name: build_dataset(ws, vocab, block_size) for name, ws in parts.items()}


def train_and_dev(splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The train and dev parts of `build_splits`' result, the data a training run may look at (lessons 05, 06).

    The test split is looked at once, by the results cell, so a run never gets it: `mmlib.train.train`
    fits on "train" and measures on "dev".
    """
    missing = [k for k in ("train", "dev") if k not in splits]
    if missing:
        raise KeyError(f"splits needs the parts 'train' and 'dev' (as build_splits returns), lacks {missing}")
    return {"train": splits["train"], "dev": splits["dev"]}
