"""Seeds PyTorch cannot take get one clear line wherever they are typed (issue 15): a lesson's `seed`,
a TrainConfig, `split_words`; the command line's --seed reaches the same check through TrainConfig."""

from __future__ import annotations

import pytest
import torch

from mmlib import validate
from mmlib.data import split_words
from mmlib.runtime import setup
from mmlib.train import TrainConfig

LINE = (r"^seed must be a whole number from 0 to 2\*\*63 - 1 = 9,223,372,036,854,775,807 \(within what PyTorch's "
        r"random generators accept\), got {}$")


@pytest.mark.parametrize("bad", [2**64, 99999999999999999999, 2**63, -1])
def test_seeds_out_of_range_are_one_line_everywhere(bad):
    for make in (lambda: validate.seed("seed", bad), lambda: setup(bad), lambda: TrainConfig(seed=bad),
                 lambda: split_words(["a"] * 10, bad)):
        with pytest.raises(ValueError, match=LINE.format(bad)):
            make()


def test_the_largest_seed_works_with_the_seeds_derived_from_it():
    top = validate.seed("seed", validate.MAX_SEED)
    for derived in (top, top + 1, top + 64):   # samples use seed + 1, torchrun's processes seed + rank
        torch.Generator().manual_seed(derived)
    with pytest.raises((RuntimeError, ValueError), match="Overflow"):   # why there is a limit at all
        torch.Generator().manual_seed(2**64)
    assert validate.seed("seed", 0) == 0 and setup(2147483647)[1].initial_seed() == 2147483647
