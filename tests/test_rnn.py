"""mmlib.models' recurrent models (RNN, GRU): the hidden state of each step feeds the next."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmlib.models import GRU, MODELS, RNN, create


@pytest.mark.parametrize("name", ["rnn", "gru"])
def test_recurrent_models_share_the_sequence_interface(name):
    model = create(name, generator=torch.Generator().manual_seed(0), vocab_size=9, block_size=7, n_embd=5, n_hidden=11)
    assert MODELS[name] is type(model) and model.per_position
    idx = torch.randint(0, 9, (4, 7))
    targets = torch.randint(0, 9, (4, 7))
    targets[:, 5:] = -1
    logits, loss = model(idx, targets)
    assert logits.shape == (4, 7, 9)
    torch.testing.assert_close(loss, F.cross_entropy(logits[:, :5].reshape(-1, 9), targets[:, :5].reshape(-1)))
    assert model(idx[:, :3])[0].shape == (4, 3, 9)
    with pytest.raises(ValueError, match="reads at most 7 characters"):
        model(torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="n_hidden must be a positive whole number, got 0"):
        create(name, n_hidden=0)


@pytest.mark.parametrize("name", ["rnn", "gru"])
def test_the_state_of_each_step_feeds_the_next(name):
    """Changing the first character changes every later output (the original makemore reused the start
    state at every step, which made later outputs depend on the current character only), and the
    outputs equal the cell applied by hand, step after step, from the learned start state."""
    g = torch.Generator().manual_seed(1)
    model = create(name, generator=g, block_size=8, n_embd=6, n_hidden=10)
    with torch.no_grad():
        model.h0.normal_(generator=g)           # a start state that is not zero, so reusing it would show
    idx = torch.randint(1, 27, (3, 8), generator=g)
    changed = idx.clone()
    changed[:, 0] = (changed[:, 0] + 7) % 26 + 1
    logits, _ = model(idx)
    logits2, _ = model(changed)
    for t in range(1, 8):   # positions 1..7 read the same characters but a different history
        assert not torch.allclose(logits[:, t], logits2[:, t], atol=1e-6), f"position {t} ignores the first character"

    h = model.h0.expand(3, -1)
    for t in range(8):
        h = model.cell(model.wte(idx[:, t]), h)
        torch.testing.assert_close(logits[:, t], model.lm_head(h))
    # Never looks ahead: changing the future leaves the past alone.
    later = idx.clone()
    later[:, 5:] = (later[:, 5:] + 3) % 27
    torch.testing.assert_close(model(later)[0][:, :5], logits[:, :5])


def test_gru_can_pass_its_state_through_unchanged():
    """With the update gate shut (z = 0), h_t = h_{t-1}: the state survives any number of steps."""
    model = create("gru", generator=torch.Generator().manual_seed(2), n_embd=4, n_hidden=6)
    with torch.no_grad():
        model.cell.xz.weight.zero_()
        model.cell.xz.bias.fill_(-1e4)   # sigmoid(-1e4) = 0
        model.h0.normal_(generator=torch.Generator().manual_seed(3))
    states = model.states(torch.randint(0, 27, (2, 9)))
    torch.testing.assert_close(states, model.h0.expand(2, 9, -1))


def test_the_initialisation_is_seeded_by_the_generator():
    a = create("gru", generator=torch.Generator().manual_seed(4))
    b = create("gru", generator=torch.Generator().manual_seed(4))
    c = create("gru", generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.cell.xh.weight, c.cell.xh.weight)
    assert isinstance(a, GRU) and isinstance(create("rnn"), RNN)
