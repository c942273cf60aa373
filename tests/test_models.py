"""mmlib.models: one interface, the registry, and the library MLP against lesson 03's from-scratch layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmlib.data import IGNORE
from mmlib.layers import BatchNorm1d, Linear, Tanh
from mmlib.models import MLP, MODELS, Bigram, BigramConfig, MLPConfig, Model, create
from mmlib.runtime import eval_mode


def test_registry_builds_every_model_by_name_and_refuses_unknown_names():
    assert {"bigram", "mlp"} <= set(MODELS)
    for name, cls in MODELS.items():
        assert issubclass(cls, Model) and cls.name == name
    with pytest.raises(ValueError, match="no model named 'mpl'; the models are"):
        create("mpl")
    with pytest.raises(ValueError, match="mlp has no setting n_hiden; its settings are"):
        create("mlp", n_hiden=3)


@pytest.mark.parametrize("name", ["bigram", "mlp"])
def test_window_models_share_one_call(name):
    model = create(name, generator=torch.Generator().manual_seed(0), vocab_size=7)
    idx = torch.randint(0, 7, (5, model.block_size))
    logits, loss = model(idx)
    assert logits.shape == (5, 7) and loss is None
    targets = torch.randint(0, 7, (5,))
    logits, loss = model(idx, targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits, targets))
    assert not model.per_position and model.n_parameters() == sum(p.numel() for p in model.parameters())


def test_a_context_of_the_wrong_length_is_named():
    model = create("mlp", block_size=3)
    with pytest.raises(ValueError, match="reads exactly 3 characters, got idx of shape \\(2, 5\\)"):
        model(torch.zeros(2, 5, dtype=torch.long))


@pytest.mark.parametrize("field, value, message", [
    ("n_hidden", 0, "n_hidden must be a positive whole number, got 0"),
    ("block_size", 2.5, "block_size must be a positive whole number, got 2.5"),
    ("w1_scale", "kaiming-ish", "w1_scale must be a finite number >= 0"),
    ("bn_momentum", 2.0, "bn_momentum must be a finite number in \\[0, 1\\]"),
    ("batchnorm", 1, "batchnorm must be True or False"),
])
def test_mlp_config_refuses_nonsense(field, value, message):
    with pytest.raises(ValueError, match=message):
        MLPConfig(**{field: value})


def test_bigram_is_the_one_hot_net_of_lesson_01():
    g = torch.Generator().manual_seed(1)
    model = Bigram(BigramConfig(vocab_size=27), generator=g)
    xs = torch.randint(0, 27, (50,))
    logits, _ = model(xs[:, None])
    torch.testing.assert_close(logits, F.one_hot(xs, 27).float() @ model.W)
    with pytest.raises(ValueError, match="block_size must be 1"):
        BigramConfig(block_size=3)


def test_mlp_draws_its_weights_as_the_lectures_do():
    """Lesson 02's init: C, W1, b1, W2, b2 from N(0, 1), in that order, from one generator."""
    g = torch.Generator().manual_seed(2147483647)
    want = [torch.randn((27, 10), generator=g), torch.randn((30, 200), generator=g), torch.randn(200, generator=g),
            torch.randn((200, 27), generator=g), torch.randn(27, generator=g)]
    model = MLP(MLPConfig(), generator=torch.Generator().manual_seed(2147483647))
    for w, p in zip(want, (model.C, model.W1, model.b1, model.W2, model.b2)):
        assert torch.equal(w, p.detach())
    # Lesson 03's BatchNorm MLP: the same draws, b1 dropped, W1 Kaiming-scaled.
    bn = MLP(MLPConfig(batchnorm=True, w1_scale="kaiming", w2_scale=0.01, b2_scale=0.0),
             generator=torch.Generator().manual_seed(2147483647))
    assert bn.b1 is None and torch.equal(bn.W2.detach(), want[3] * 0.01)
    torch.testing.assert_close(bn.W1.detach(), want[1] * (5 / 3) / 30**0.5)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_mlp_agrees_with_the_from_scratch_layers_on_the_same_weights(batchnorm):
    """mmlib.layers (lesson 03, plain tensors) and mmlib.models.MLP compute the same function."""
    g = torch.Generator().manual_seed(0)
    cfg = MLPConfig(vocab_size=11, block_size=4, n_embd=5, n_hidden=16, batchnorm=batchnorm, bn_momentum=0.1)
    model = MLP(cfg, generator=g)
    layers = [Linear(20, 16, bias=not batchnorm)] + ([BatchNorm1d(16, momentum=0.1)] if batchnorm else []) + [
        Tanh(), Linear(16, 11)]
    with torch.no_grad():
        layers[0].weight.copy_(model.W1)
        if not batchnorm:
            layers[0].bias.copy_(model.b1)
        else:
            model.bngain.mul_(1.5)
            layers[1].gamma.copy_(model.bngain[0])
            layers[1].beta.copy_(model.bnbias[0])
        layers[-1].weight.copy_(model.W2)
        layers[-1].bias.copy_(model.b2)

    def scratch(idx):
        x = model.C.detach()[idx].view(len(idx), -1)
        for layer in layers:
            x = layer(x)
        return x

    for _ in range(3):  # training mode: batch statistics, and the running statistics move alike
        idx = torch.randint(0, 11, (32, 4), generator=g)
        torch.testing.assert_close(model(idx)[0], scratch(idx), atol=1e-5, rtol=1e-5)
    if batchnorm:
        torch.testing.assert_close(model.bnmean_running[0], layers[1].running_mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(model.bnvar_running[0], layers[1].running_var, atol=1e-6, rtol=1e-5)
    idx = torch.randint(0, 11, (1, 4), generator=g)  # eval mode: one example at a time
    with eval_mode(model, layers):
        torch.testing.assert_close(model(idx)[0], scratch(idx), atol=1e-5, rtol=1e-5)
    assert model.training and all(getattr(layer, "training", True) for layer in layers)


def test_batchnorm_mlp_needs_a_batch_in_training_mode_and_not_in_eval_mode():
    model = create("mlp", batchnorm=True)
    one = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="needs a batch of at least 2"):
        model(one)
    with eval_mode(model):
        assert model(one)[0].shape == (1, 27)


def test_lessons_hand_built_dict_loads_into_the_mlp():
    g = torch.Generator().manual_seed(3)
    params = {"C": torch.randn(27, 10, generator=g), "W1": torch.randn(30, 200, generator=g),
              "b1": torch.randn(200, generator=g), "W2": torch.randn(200, 27, generator=g),
              "b2": torch.randn(27, generator=g)}
    model = create("mlp")
    model.load_state_dict(params)
    X = torch.randint(0, 27, (8, 3), generator=g)
    h = torch.tanh(params["C"][X].view(8, -1) @ params["W1"] + params["b1"])
    assert torch.equal(model(X)[0], h @ params["W2"] + params["b2"])


def test_wavenet_fuses_pairs_and_refuses_a_block_size_that_does_not_halve():
    model = create("wavenet", generator=torch.Generator().manual_seed(0))
    assert model.n_parameters() == 76_579   # the lecture's scaled-up WaveNet: 24-dim embeddings, 128 hidden
    logits, _ = model(torch.randint(0, 27, (4, 8)))
    assert logits.shape == (4, 27)
    assert create("wavenet", block_size=16).config.n_levels == 4
    for bad in (3, 6, 12, 1):
        with pytest.raises(ValueError, match="block_size must be a power of two"):
            create("wavenet", block_size=bad)


def test_wavenet_batchnorm_keeps_statistics_per_channel_over_batch_and_time():
    model = create("wavenet")
    model(torch.randint(0, 27, (32, 8)))
    for level in model.levels:
        assert level["bn"].running_mean.shape == (128,)


def test_transformer_predicts_every_position_and_never_looks_ahead():
    g = torch.Generator().manual_seed(0)
    model = create("transformer", generator=g, block_size=10, n_layer=2, n_head=2, n_embd=16).eval()
    assert model.per_position
    idx = torch.randint(1, 27, (3, 10), generator=g)
    logits, _ = model(idx)
    assert logits.shape == (3, 10, 27)
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] + 5) % 27   # change the future of position 5
    logits2, _ = model(changed)
    torch.testing.assert_close(logits[:, :6], logits2[:, :6])
    assert not torch.allclose(logits[:, 6:], logits2[:, 6:])
    # shorter inputs are fine, longer ones are refused
    assert model(idx[:, :4])[0].shape == (3, 4, 27)
    with pytest.raises(ValueError, match="reads at most 10 characters"):
        model(torch.zeros(1, 11, dtype=torch.long))
    with pytest.raises(ValueError, match="n_embd must be a multiple of n_head"):
        create("transformer", n_embd=10, n_head=4)


def test_every_dropout_of_the_transformer_is_a_dropout_layer_that_switches_it_on_and_off():
    """So the trainer's late dropout (and eval mode) reach the attention weights' dropout too."""
    from mmlib.models import CausalSelfAttention, TransformerConfig
    attn = CausalSelfAttention(TransformerConfig(n_embd=16, n_head=2, dropout=0.5)).train()
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(0))
    attn.drop.eval()                       # the output's dropout off: what is left is the attention weights'
    assert not torch.equal(attn(x), attn(x))
    attn.attn_drop.eval()
    torch.testing.assert_close(attn(x), attn(x), rtol=0, atol=0)
    torch.testing.assert_close(attn(x), attn.eval()(x), rtol=0, atol=0)


def test_an_ensemble_trains_each_member_on_its_own_loss_and_predicts_their_mean_distribution():
    settings = {"block_size": 8, "n_layer": 2, "n_head": 2, "n_embd": 16}
    one = create("transformer", generator=torch.Generator().manual_seed(0), **settings)
    ens = create("transformer", generator=torch.Generator().manual_seed(0), members=3, **settings)
    assert len(ens.members) == 3 and ens.n_parameters() == 3 * one.n_parameters()
    for a, b in zip(one.state_dict().values(), ens.members[0].state_dict().values()):
        assert torch.equal(a, b)                                  # the first member is the single model
    assert not torch.equal(ens.members[1].wte.weight, ens.members[0].wte.weight)
    assert ens.hidden_matrices() == [w for m in ens.members for w in m.hidden_matrices()]

    g = torch.Generator().manual_seed(1)
    X, Y = torch.randint(0, 27, (4, 8), generator=g), torch.randint(0, 27, (4, 8), generator=g)
    Y[0, 5:] = IGNORE
    ens.eval()
    logits, loss = ens(X, Y)
    mean = torch.stack([m(X)[0].softmax(-1) for m in ens.members]).mean(0)
    torch.testing.assert_close(logits.softmax(-1), mean)
    keep = Y != IGNORE
    torch.testing.assert_close(loss, -mean[keep].gather(-1, Y[keep][:, None]).log().mean())
    from mmlib.data import NAMES
    from mmlib.sample import sample_words
    from mmlib.vocab import Vocab
    words = sample_words(ens, Vocab.from_words(NAMES.read_text(encoding="utf-8").split()), 5,
                         g=torch.Generator().manual_seed(2), max_len=7)
    assert len(words) == 5 and all(isinstance(w, str) for w in words)

    ens.train()
    _, loss = ens(X, Y)
    torch.testing.assert_close(loss, sum(m(X, Y)[1] for m in ens.members) / 3)
    loss.backward()
    member = ens.members[1]
    grads = torch.autograd.grad(member(X, Y)[1] / 3, list(member.parameters()))
    for p, want in zip(member.parameters(), grads):
        torch.testing.assert_close(p.grad, want)                  # nothing from the other members' losses
    for what in ("attention_maps", "load_heads"):
        with pytest.raises(ValueError, match=f"ensemble of 3: call it on a member, model.members\\[i\\].{what}"):
            getattr(ens, what)(X)


def test_padding_never_reaches_the_loss():
    g = torch.Generator().manual_seed(0)
    model = create("transformer", generator=g, block_size=6, n_layer=1, n_head=1, n_embd=8).eval()
    X = torch.tensor([[0, 3, 4, 0, 0, 0]])
    Y = torch.tensor([[3, 4, 0, -1, -1, -1]])
    _, loss = model(X, Y)
    logits, _ = model(X[:, :3])
    torch.testing.assert_close(loss, F.cross_entropy(logits[0], Y[0, :3]))
    X2 = X.clone()
    X2[0, 3:] = torch.tensor([7, 8, 9])   # whatever sits in the padding
    torch.testing.assert_close(model(X2, Y)[1], loss)


def test_bigram_from_counts_is_the_smoothed_count_table():
    X = torch.tensor([[0], [0], [1], [1], [1], [2]])
    Y = torch.tensor([1, 2, 2, 2, 0, 0])
    model = Bigram.from_counts(X, Y, vocab_size=3, smoothing=1.0)
    counts = torch.tensor([[0, 1, 1], [1, 0, 2], [1, 0, 0]], dtype=torch.float64) + 1
    P = counts / counts.sum(1, keepdim=True)
    logits, loss = model(X, Y)
    assert torch.allclose(logits.softmax(1).double(), P[X[:, 0]], atol=1e-6)
    want = -P[X[:, 0], Y].log().mean()
    assert abs(loss.item() - want.item()) < 1e-5
    with pytest.raises(ValueError, match="block_size=1"):
        Bigram.from_counts(torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long), vocab_size=3)


# ---- sizes that cannot fit: block size, parameters, a training step's activations (issue 15) -----------


SIZES = [{}, {"block_size": 8, "n_embd": 5, "n_hidden": 7}, {"block_size": 4, "batchnorm": True},
         {"block_size": 4, "batchnorm": True, "hidden_bias": True}, {"pos_emb": False, "n_layer": 2, "n_embd": 8},
         {"block_size": 16, "n_embd": 3, "n_hidden": 5}, {"members": 3, "n_layer": 2, "n_embd": 8}]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_config_counts_its_models_parameters_without_building_it(name):
    cls = MODELS[name]
    known = {f for f in cls.Config.__dataclass_fields__}
    built = 0
    for sizes in SIZES:
        settings = {k: v for k, v in sizes.items() if k in known}
        try:
            model = create(name, vocab_size=11, **settings)
        except ValueError:   # e.g. a bigram's block_size must be 1, a WaveNet's a power of two
            continue
        assert model.config.n_parameters() == model.n_parameters(), settings
        built += 1
    assert built >= 2


@pytest.mark.parametrize("name", ["mlp", "transformer", "gru"])
def test_block_size_has_a_maximum_every_model_shares(name):
    from mmlib.data import MAX_BLOCK_SIZE, MAX_WORD_LENGTH

    assert MAX_BLOCK_SIZE >= MAX_WORD_LENGTH + 1   # the longest word and its end token fit
    with pytest.raises(ValueError, match=r"^block_size must be a whole number <= 128 \(words have at most 100 "
                                         r"characters, so more positions would hold only padding\), got 100001$"):
        create(name, block_size=100_001)
    assert create(name, block_size=64).block_size == 64


@pytest.mark.parametrize("name, setting", [("transformer", "n_embd"), ("mlp", "n_embd"), ("gru", "n_hidden"),
                                           ("wavenet", "n_hidden")])
def test_a_model_too_large_for_memory_is_refused_before_it_allocates(name, setting):
    with pytest.raises(ValueError) as err:
        create(name, **{setting: 10**8})
    msg = str(err.value)
    assert msg.startswith(f"this {MODELS[name].__name__} would have ") and " parameters, " in msg, msg
    assert "of weights at 4 bytes each, more than this machine's" in msg and f"{setting}=100,000,000" in msg
    assert "\n" not in msg


def test_the_memory_limit_is_the_machines(monkeypatch):
    import mmlib.models as models

    config = MLPConfig(n_embd=1000, n_hidden=1000)   # 3,055,027 parameters: 12 MB of weights
    monkeypatch.setattr(models, "device_memory", lambda device="cpu": 10_000_000)
    with pytest.raises(ValueError, match=r"would have 3,055,027 parameters, 12\.2 MB of weights .* this machine's "
                                         r"10\.0 MB of memory"):
        MLP(config)
    monkeypatch.setattr(models, "device_memory", lambda device="cpu": 20_000_000)
    assert MLP(config).n_parameters() == 3_055_027


def test_a_batch_whose_activations_cannot_fit_is_refused_with_the_largest_that_would():
    from mmlib.cli.memory import check_batch_fits, training_memory
    from mmlib.models import device_memory

    model = create("transformer", vocab_size=27, block_size=16, n_layer=2, n_head=2, n_embd=16)
    fixed, per_example = training_memory(model, 32)
    assert fixed == 16 * model.n_parameters() and per_example > 16 * 16 * 4   # at least the residual stream
    assert check_batch_fits(model, 128) == 128
    with pytest.raises(ValueError) as err:
        check_batch_fits(model, 10**12)
    msg = str(err.value)
    most = (device_memory() - fixed) // per_example
    assert msg.startswith("batch_size 1,000,000,000,000 needs about ") and msg.endswith(
        f"of memory: use a batch_size of at most {most:,}"), msg
    check_batch_fits(model, most)


def test_measuring_a_training_step_changes_nothing():
    from mmlib.cli.memory import training_memory

    model = create("mlp", generator=torch.Generator().manual_seed(0), block_size=3, batchnorm=True)
    transformer = create("transformer", vocab_size=27, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    torch.manual_seed(7)
    training_memory(model, 4)
    training_memory(transformer, 4)   # dropout draws from the global generator: it is put back
    assert not model.training, "the mode is put back"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "BatchNorm's statistics too"
    drawn = torch.rand(1)
    torch.manual_seed(7)
    assert torch.equal(drawn, torch.rand(1)), "the global generator is where it was"
