"""mmlib.layers against torch.nn, with tolerances (lesson 03)."""

from __future__ import annotations

import pytest
import torch

from mmlib.layers import BatchNorm1d, LayerModel, Linear, ReLU, Tanh, parameters, retain_grads, train_mode

ATOL = 1e-5  # float32 arithmetic done in a different order


def test_linear_matches_torch_nn():
    g = torch.Generator().manual_seed(0)
    ours = Linear(7, 5, generator=g)
    ref = torch.nn.Linear(7, 5)
    with torch.no_grad():
        ours.bias += torch.randn(5, generator=g)
        ref.weight.copy_(ours.weight.T)
        ref.bias.copy_(ours.bias)
    x = torch.randn(11, 7, generator=g)
    y = ours(x)
    assert y.shape == (11, 5)
    torch.testing.assert_close(y, ref(x), atol=ATOL, rtol=0)
    assert ours.out is y
    # gradients flow to the same places
    y.square().sum().backward()
    ref(x).square().sum().backward()
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad.T, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad, atol=1e-4, rtol=1e-5)


def test_linear_init_scale_and_options():
    g = torch.Generator().manual_seed(1)
    lin = Linear(400, 300, bias=False, generator=g, gain=5 / 3)
    assert lin.bias is None and lin.parameters() == [lin.weight]
    assert lin.weight.std().item() == pytest.approx(5 / 3 / 400**0.5, rel=0.02)
    # same seed, same weights
    a = Linear(3, 4, generator=torch.Generator().manual_seed(5)).weight
    b = Linear(3, 4, generator=torch.Generator().manual_seed(5)).weight
    assert torch.equal(a, b)
    # works on 3-D inputs like torch.nn.Linear
    assert Linear(3, 2)(torch.randn(4, 6, 3)).shape == (4, 6, 2)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_linear_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match="fan_in must be a positive whole number"):
        Linear(bad, 3)


def test_linear_rejects_wrong_width():
    with pytest.raises(ValueError, match="expects inputs with 4 features"):
        Linear(4, 2)(torch.randn(3, 5))


def test_batchnorm_train_and_eval_match_torch_nn():
    g = torch.Generator().manual_seed(2)
    ours = BatchNorm1d(6, momentum=0.2)
    ref = torch.nn.BatchNorm1d(6, momentum=0.2)
    with torch.no_grad():
        ours.gamma.copy_(torch.rand(6, generator=g) + 0.5)
        ours.beta.copy_(torch.randn(6, generator=g))
        ref.weight.copy_(ours.gamma)
        ref.bias.copy_(ours.beta)
    for _ in range(4):  # running statistics accumulate over several batches
        x = torch.randn(32, 6, generator=g) * 3 + 1
        torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.running_mean, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(ours.running_var, ref.running_var, atol=ATOL, rtol=1e-5)
    # gradients with respect to input, gain and bias
    x = torch.randn(16, 6, generator=g, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    w = torch.randn(16, 6, generator=g)
    (ours(x) * w).sum().backward()
    (ref(x2) * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.gamma.grad, ref.weight.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.beta.grad, ref.bias.grad, atol=1e-4, rtol=1e-4)
    # eval mode: running statistics, buffers untouched, one example at a time works
    train_mode([ours], False)
    ref.eval()
    before = ours.running_mean.clone()
    x = torch.randn(1, 6, generator=g)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=1e-5)
    assert torch.equal(ours.running_mean, before)


def test_batchnorm_sequence_layout_matches_torch_on_transposed_input():
    g = torch.Generator().manual_seed(3)
    ours, ref = BatchNorm1d(4), torch.nn.BatchNorm1d(4)
    x = torch.randn(8, 5, 4, generator=g)  # (N, L, C), the lectures' layout
    torch.testing.assert_close(ours(x), ref(x.transpose(1, 2)).transpose(1, 2), atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(ours.running_var, ref.running_var, atol=ATOL, rtol=1e-5)


def test_batchnorm_errors_are_clear():
    with pytest.raises(ValueError, match="needs more than one value per feature"):
        BatchNorm1d(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="expects inputs with 3 features"):
        BatchNorm1d(3)(torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"momentum must be a finite number in \[0, 1\], got 1.5"):
        BatchNorm1d(3, momentum=1.5)
    with pytest.raises(ValueError, match="eps must be a finite number > 0, got 0"):
        BatchNorm1d(3, eps=0)
    with pytest.raises(ValueError, match="training must be True or False"):
        train_mode([BatchNorm1d(3)], "eval")


def test_nonlinearities_match_torch_nn():
    x = torch.linspace(-4, 4, 101)
    for ours, ref in ((Tanh(), torch.nn.Tanh()), (ReLU(), torch.nn.ReLU())):
        torch.testing.assert_close(ours(x), ref(x), atol=0, rtol=0)
        assert ours.out is not None and ours.parameters() == []


def test_parameters_in_layer_order():
    layers = [Linear(3, 4, bias=False), BatchNorm1d(4), Tanh(), Linear(4, 2)]
    ps = parameters(layers)
    assert [tuple(p.shape) for p in ps] == [(3, 4), (4,), (4,), (4, 2), (2,)]
    assert all(p.requires_grad for p in ps)


# ---- lesson 05: Embedding, FlattenConsecutive, Sequential ---------------------------------------------


def test_embedding_matches_torch_nn():
    from mmlib.layers import Embedding

    g = torch.Generator().manual_seed(4)
    ours, ref = Embedding(27, 5, generator=g), torch.nn.Embedding(27, 5)
    with torch.no_grad():
        ref.weight.copy_(ours.weight)
    idx = torch.randint(0, 27, (6, 8), generator=g)
    y = ours(idx)
    assert y.shape == (6, 8, 5) and ours.out is y
    torch.testing.assert_close(y, ref(idx), atol=0, rtol=0)
    y.square().sum().backward()
    ref(idx).square().sum().backward()
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, atol=1e-6, rtol=1e-6)
    assert ours.parameters() == [ours.weight]


def test_embedding_errors_are_clear():
    from mmlib.layers import Embedding

    with pytest.raises(ValueError, match="ids must lie in 0..26; got ids from 0 to 27"):
        Embedding(27, 3)(torch.tensor([[0, 27]]))
    with pytest.raises(TypeError, match="integer ids"):
        Embedding(27, 3)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="embedding_dim must be a positive whole number"):
        Embedding(27, 0)


@pytest.mark.parametrize("shape, n, want", [((4, 8, 3), 2, (4, 4, 6)), ((4, 8, 3), 4, (4, 2, 12)),
                                            ((4, 8, 3), 8, (4, 24)), ((1, 2, 5), 2, (1, 10))])
def test_flatten_consecutive_puts_neighbours_side_by_side(shape, n, want):
    from mmlib.layers import FlattenConsecutive

    x = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    y = FlattenConsecutive(n)(x)
    assert y.shape == want
    y3 = y.reshape(shape[0], shape[1] // n, n * shape[2])
    for grp in range(shape[1] // n):          # group g = positions g*n .. g*n + n - 1, one after the other
        torch.testing.assert_close(y3[:, grp], torch.cat([x[:, grp * n + i] for i in range(n)], dim=1), atol=0, rtol=0)
    # FlattenConsecutive(T) is torch.nn.Flatten on (B, T, C)
    if want == (shape[0], shape[1] * shape[2]):
        torch.testing.assert_close(y, torch.nn.Flatten()(x), atol=0, rtol=0)


def test_flatten_consecutive_refuses_what_it_cannot_fuse():
    from mmlib.layers import FlattenConsecutive

    with pytest.raises(ValueError, match="got 6 positions .* which 4 does not divide"):
        FlattenConsecutive(4)(torch.randn(2, 6, 3))
    with pytest.raises(ValueError, match="already fused into one - does the stack have more FlattenConsecutive"):
        FlattenConsecutive(2)(torch.randn(2, 6))
    with pytest.raises(ValueError, match="n must be a positive whole number, got 0"):
        FlattenConsecutive(0)


def test_sequential_matches_torch_nn_sequential_on_the_same_weights():
    from mmlib.layers import Sequential

    g = torch.Generator().manual_seed(6)
    ours = Sequential([Linear(6, 5, bias=False, generator=g), BatchNorm1d(5), Tanh(), Linear(5, 3, generator=g)])
    ref = torch.nn.Sequential(torch.nn.Linear(6, 5, bias=False), torch.nn.BatchNorm1d(5), torch.nn.Tanh(),
                              torch.nn.Linear(5, 3))
    with torch.no_grad():
        ref[0].weight.copy_(ours[0].weight.T)
        ref[3].weight.copy_(ours[3].weight.T)
        ref[3].bias.copy_(ours[3].bias)
    x = torch.randn(10, 6, generator=g)
    torch.testing.assert_close(ours(x), ref(x), atol=ATOL, rtol=1e-5)
    assert len(ours) == 4 and [tuple(p.shape) for p in ours.parameters()] == [(6, 5), (5,), (5,), (5, 3), (3,)]
    assert ours.out is ours[-1].out
    from mmlib.runtime import eval_mode

    with eval_mode(ours):                         # reaches the BatchNorm inside
        assert ours[1].training is False
        ref.eval()
        torch.testing.assert_close(ours(x[:1]), ref(x[:1]), atol=ATOL, rtol=1e-5)
    assert ours[1].training is True
    with pytest.raises(TypeError, match="layer 1 of Sequential"):
        Sequential([Tanh(), "tanh"])


@pytest.mark.parametrize("block_size", [2, 4, 8, 16, 32])
def test_hierarchical_stack_works_for_every_power_of_two(block_size):
    """Any number of levels: log2(block_size) of them, each halving the positions, down to (B, vocab)."""
    from mmlib.layers import FlattenConsecutive, hierarchical_stack, n_levels

    net = hierarchical_stack(27, block_size, 4, 6, generator=torch.Generator().manual_seed(0))
    assert sum(isinstance(x, FlattenConsecutive) for x in net) == n_levels(block_size) == block_size.bit_length() - 1
    assert net(torch.randint(0, 27, (3, block_size))).shape == (3, 27)


@pytest.mark.parametrize("block_size", [1, 3, 6, 12, 24, 2.0])
def test_hierarchical_stack_refuses_other_block_sizes_when_built(block_size):
    from mmlib.layers import hierarchical_stack

    with pytest.raises(ValueError, match="block_size must be a power of two .* got"):
        hierarchical_stack(27, block_size, 4, 6)


def test_the_first_batchnorm_keeps_statistics_per_position():
    """Lesson 05's exhibit: averaging over dim 0 only gives running statistics of shape (1, L, C)."""
    from mmlib.layers import BatchNorm1dOverBatch

    bad, good = BatchNorm1dOverBatch(5), BatchNorm1d(5)
    x = torch.randn(32, 4, 5, generator=torch.Generator().manual_seed(7)) + torch.arange(4.0)[:, None]
    yb, yg = bad(x), good(x)
    assert bad.running_mean.shape == (1, 4, 5) and good.running_mean.shape == (5,)
    # per position: every position's mean is 0 on its own; the fix keeps the positions' differences
    torch.testing.assert_close(yb.mean(0), torch.zeros(4, 5), atol=1e-5, rtol=0)
    assert yg.mean(0)[3].mean() - yg.mean(0)[0].mean() > 1.0


def test_layer_model_trains_and_samples_like_a_library_model():
    from mmlib.layers import hierarchical_stack
    from mmlib.sample import sample_words
    from mmlib.train import TrainConfig, evaluate, train
    from mmlib.vocab import Vocab

    g = torch.Generator().manual_seed(8)
    X = torch.randint(0, 5, (200, 4), generator=g)
    Y = (X[:, -1] + 1) % 5                        # learnable: the next id follows the last one
    model = LayerModel(hierarchical_stack(5, 4, 3, 8, generator=g), block_size=4)
    before = evaluate(model, X, Y)
    result = train(model, {"train": (X, Y)}, TrainConfig(max_steps=300, batch_size=16, lr=0.3, progress=False))
    assert result.final["train"] < before / 2
    words = sample_words(model, Vocab("abcd"), 3, g=g, max_len=5)
    assert len(words) == 3 and all(len(w) <= 5 for w in words)
    assert model.n_parameters() == sum(p.numel() for p in model.parameters()) and "C" not in model.weights()
    with pytest.raises(ValueError, match="reads exactly 4 characters, got idx of shape \\(2, 3\\)"):
        model(torch.zeros(2, 3, dtype=torch.long))


def _deep(batchnorm=False, seed=0, keep_grads=False):
    return LayerModel.mlp(11, 3, 4, gain=5 / 3, depth=3, width=16, batchnorm=batchnorm, keep_grads=keep_grads,
                         generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("batchnorm", [False, True])
def test_deep_mlp_trains_under_mmlib_train_exactly_as_by_hand(batchnorm):
    """Lesson 03's deep network: mmlib.train.train takes the same steps as the lesson's old hand-written loop."""
    import torch.nn.functional as F

    from mmlib.diagnostics import Recorder
    from mmlib.train import TrainConfig, train

    g = torch.Generator().manual_seed(5)
    X, Y = torch.randint(0, 11, (200, 3), generator=g), torch.randint(0, 11, (200,), generator=g)
    cfg = TrainConfig(max_steps=40, batch_size=8, lr=0.1, lr_late=0.01, progress=False)

    by_hand, gh = _deep(batchnorm, keep_grads=True), torch.Generator().manual_seed(9)
    rec_hand = Recorder(every=10)
    losses = []
    for i in range(cfg.max_steps):
        ix = torch.randint(0, len(X), (8,), generator=gh)
        x = by_hand.C[X[ix]].view(8, -1)
        for layer in by_hand.layers:
            x = layer(x)
        loss = F.cross_entropy(x, Y[ix])
        retain_grads(by_hand.layers)
        for p in by_hand.parameters():
            p.grad = None
        loss.backward()
        rate = 0.1 if i < 20 else 0.01
        rec_hand.record(i, by_hand.layers, by_hand.weights(), rate, loss.item())
        with torch.no_grad():
            for p in by_hand.parameters():
                p -= rate * p.grad
        losses.append(loss.item())

    model = _deep(batchnorm, keep_grads=True)
    rec = Recorder(every=10)
    result = train(model, {"train": (X, Y)}, cfg, generator=torch.Generator().manual_seed(9),
                   callbacks=rec.callbacks(model.layers, model.weights()))
    assert result.losses == losses
    assert rec.ud == rec_hand.ud and rec.steps == [0, 10, 20, 30] and rec.names == rec_hand.names
    for a, b in zip(model.parameters(), by_hand.parameters()):
        assert torch.equal(a, b)


def test_deep_mlp_has_the_course_call_and_samples_in_eval_mode():
    from mmlib.sample import sample_words
    from mmlib.vocab import Vocab

    model = _deep(batchnorm=True)
    logits, loss = model(torch.randint(0, 11, (5, 3)))
    assert logits.shape == (5, 11) and loss is None and model.block_size == 3
    assert model.n_parameters() == 11 * 4 + sum(p.numel() for p in parameters(model.layers))
    assert list(model.weights()) == ["C", "0: Linear", "3: Linear", "6: Linear", "9: Linear"]
    words = sample_words(model, Vocab.from_words(["abcdefghij"]), n=3, g=torch.Generator().manual_seed(0))
    assert len(words) == 3 and all(layer.training for layer in model.layers if hasattr(layer, "training"))
    with pytest.raises(ValueError, match="the first layer must be a Linear reading block_size \\* n_embd = 3 \\* 4"):
        LayerModel([Tanh()], 3, C=torch.zeros(11, 4))
    with pytest.raises(ValueError, match="reading block_size \\* n_embd = 2 \\* 4 features, got Linear\\(12, 5"):
        LayerModel([Linear(12, 5)], 2, C=torch.zeros(11, 4))
    with pytest.raises(TypeError, match="layer 1 .* is not a layer"):
        LayerModel([Tanh(), "tanh"], 3)
    with pytest.raises(ValueError, match="reads exactly 3 characters"):
        model(torch.zeros(5, 4, dtype=torch.long))
