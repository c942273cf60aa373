"""mmlib.vocab's rules for words a vocabulary meets: '.' inside text, characters it lacks (issue 15)."""

from __future__ import annotations

import pytest

from mmlib.vocab import Vocab, VocabError, no_boundary, quote

V = Vocab.from_words(["emma", "olivia"])


@pytest.mark.parametrize("what, text", [("prefix", "ann."), ("name", "ann.a"), ("prefix", "."), ("word 3", "ma.ry")])
def test_one_rule_for_the_boundary_character_in_any_text(what, text):
    with pytest.raises(VocabError) as err:
        no_boundary(what, text)
    assert str(err.value) == (f"{what} {text!r} contains '.', the token that marks the start and end of every word, "
                              "so no word can hold it: remove the '.'")
    assert no_boundary(what, "anna") == "anna"


def test_check_words_refuses_the_boundary_inside_a_word_as_training_does():
    words = ["emma", "ma.ry", "liv"]
    with pytest.raises(VocabError, match=r"^word 2 'ma.ry' contains '\.'") as scored:
        V.check_words(words)
    with pytest.raises(VocabError) as trained:
        Vocab.from_words(words)
    assert str(scored.value) == str(trained.value), "eval -i and train say the same line"


def test_check_words_names_every_missing_character_with_its_first_word():
    with pytest.raises(VocabError) as err:
        V.check_words(["emma", "zoé", "zora", "oli"])
    msg = str(err.value)
    assert msg.startswith("3 characters of the words are not in the vocabulary '.aeilmov': 'z' (U+007A, first in "
                          "word 2, 'zoé'), 'é' (U+00E9, first in word 2, 'zoé'), 'r' (U+0072, first in word 3, 'zora')")
    assert "\n" not in msg
    assert V.check_words(["emma", "mia"]) == ["emma", "mia"]


def test_many_missing_characters_are_counted_not_all_listed():
    with pytest.raises(VocabError, match=r"^20 characters .*'x' \(U\+0078.* and 15 more;"):
        V.check_words(["xyzbcdfghjknpqrstuwé"])


def test_long_words_are_quoted_not_echoed():
    assert quote("anna") == "'anna'"
    long = "x" * 100_000
    assert quote(long) == f"{'x' * 24!r}... (100,000 characters)"
    with pytest.raises(VocabError) as err:
        V.encode("z" * 100_000)
    assert len(str(err.value)) < 300
    with pytest.raises(VocabError) as err:
        no_boundary("prefix", long + ".")
    assert len(str(err.value)) < 300
