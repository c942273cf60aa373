"""The character vocabulary (taught in lesson 01).

Index 0 is `.`, a token that marks both the start and the end of a word, as in the lectures:
one special token is enough because a model never needs to tell "before the first character"
from "after the last" apart - the position in the sequence already says which it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

BOUNDARY = "."


class VocabError(ValueError):
    """A word holds a character the vocabulary cannot encode."""


def quote(text: str, limit: int = 24) -> str:
    """`text` as a message shows it: its repr, cut after `limit` characters (a data file may hold a 100 KB line)."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text):,} characters)"


def no_boundary(what: str, text: str) -> str:
    """`text` (a word, a name, a prefix) unchanged, or a VocabError if it holds the boundary token `.`.

    The one rule for `.` inside text, used wherever a word enters the course: word files
    (`Vocab.from_words`, `Vocab.check_words`), sampling prefixes and the explorers' names. `.` ends
    every word, so no word can hold it; encoding it would silently cut the word there.
    """
    if BOUNDARY in text:
        raise VocabError(f"{what} {quote(text)} contains {BOUNDARY!r}, the token that marks the start and end of "
                         f"every word, so no word can hold it: remove the {BOUNDARY!r}")
    return text


class Vocab:
    """Maps characters to integer ids and back. `stoi`/`itos` are named as in the lectures."""

    def __init__(self, chars: Iterable[str]):
        chars = sorted(set(chars))
        if BOUNDARY in chars:
            raise VocabError(
                f"the character {BOUNDARY!r} is reserved for the start/end token; "
                "remove it from the words (or replace it) before building the vocabulary"
            )
        bad = [c for c in chars if len(c) != 1]
        if bad:
            raise VocabError(f"a vocabulary holds single characters, got {bad[:3]!r}")
        self.itos: list[str] = [BOUNDARY, *chars]
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos)}

    @classmethod
    def from_words(cls, words: Iterable[str]) -> "Vocab":
        """Every character that occurs in `words`, sorted, after `.` at index 0."""
        words = list(words)
        for i, w in enumerate(words, 1):
            no_boundary(f"word {i:,}", w)
        return cls(c for w in words for c in w)

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {''.join(self.itos)!r})"

    def check_words(self, words: Iterable[str]) -> list[str]:
        """`words` as a list, or one VocabError naming what this vocabulary cannot encode in them.

        A word holding `.` is refused (`no_boundary`); so are characters the vocabulary lacks, all of
        them named in one line with the first word that holds each. Call it before scoring words with
        a trained model (`makemore eval -i`): a model's vocabulary is fixed when it is trained.
        """
        words = list(words)
        missing: dict[str, tuple[int, str]] = {}
        for i, w in enumerate(words, 1):
            no_boundary(f"word {i:,}", w)
            for c in w:
                if c not in self.stoi and c not in missing:
                    missing[c] = (i, w)
        if missing:
            shown = [f"{c!r} (U+{ord(c):04X}, first in word {i:,}, {quote(w)})"
                     for c, (i, w) in list(missing.items())[:5]]
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise VocabError(f"{len(missing)} character{'s' if len(missing) > 1 else ''} of the words "
                             f"{'are' if len(missing) > 1 else 'is'} not in the vocabulary {''.join(self.itos)!r}: "
                             f"{', '.join(shown)}{more}; the model can only score words made of its own characters")
        return words

    def encode(self, word: str) -> list[int]:
        """Ids of the characters of `word` (without start/end tokens)."""
        try:
            return [self.stoi[c] for c in word]
        except KeyError as e:
            ch = e.args[0]
            raise VocabError(
                f"the character {ch!r} (U+{ord(ch):04X}) in the word {quote(word)} is not in the "
                f"vocabulary {''.join(self.itos)!r}; build the vocabulary from data that contains "
                "it, or clean the word"
            ) from None

    def decode(self, ids: Sequence[int] | Iterable[int]) -> str:
        """The characters for `ids`; accepts a list or a 1-D tensor."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise VocabError(f"id {i} is outside the vocabulary (0..{len(self.itos) - 1})")
            out.append(self.itos[i])
        return "".join(out)
