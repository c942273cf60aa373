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
        for w in words:
            if BOUNDARY in w:
                raise VocabError(
                    f"the word {w!r} contains {BOUNDARY!r}, which is reserved for the start/end "
                    "token; remove that character from the data file"
                )
        return cls(c for w in words for c in w)

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {''.join(self.itos)!r})"

    def encode(self, word: str) -> list[int]:
        """Ids of the characters of `word` (without start/end tokens)."""
        try:
            return [self.stoi[c] for c in word]
        except KeyError as e:
            ch = e.args[0]
            raise VocabError(
                f"the character {ch!r} (U+{ord(ch):04X}) in the word {word!r} is not in the "
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
