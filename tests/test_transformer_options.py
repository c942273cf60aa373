"""The transformer's speedrun options (issue 33): rotary positions, RMSNorm, QK-norm, ReLU^2, zero-initialised
output layers. Each keeps the model causal and counted; at their defaults the model is lesson 06's; a run with them
(and Muon) saves them in run.json, loads them back and resumes exactly."""

from __future__ import annotations

import math
import os
import signal

import pytest
import torch
import torch.nn.functional as F

from mmlib import cli
from mmlib.cli import runs
from mmlib.data import NAMES
from mmlib.models import TransformerConfig, create, rotary_angles, rotate

OPTIONS = [{"rotary": True}, {"norm": "rms"}, {"qk_norm": True}, {"activation": "relu2"}, {"zero_init": True},
           {"rotary": True, "norm": "rms", "qk_norm": True, "activation": "relu2", "zero_init": True}]
SMALL = {"block_size": 10, "n_layer": 2, "n_head": 2, "n_embd": 16}


def small(seed=0, **kw):
    return create("transformer", generator=torch.Generator().manual_seed(seed), **SMALL, **kw)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "+".join(o))
def test_every_option_keeps_the_shapes_the_count_and_causality(options):
    model = small(**options).eval()
    if options.get("zero_init"):      # the blocks start as the identity: give them weights to test causality with
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    assert model.config.n_parameters() == model.n_parameters()
    idx = torch.randint(1, 27, (3, 10), generator=torch.Generator().manual_seed(1))
    logits, _ = model(idx)
    assert logits.shape == (3, 10, 27)
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] + 5) % 27
    later, _ = model(changed)
    torch.testing.assert_close(logits[:, :6], later[:, :6])
    assert not torch.allclose(logits[:, 6:], later[:, 6:])
    maps = model.attention_maps(idx)        # the weights forward uses: rotary and QK-norm included
    assert len(maps) == 2 and torch.allclose(maps[0].sum(-1), torch.ones(3, 2, 10))
    assert float(maps[0].triu(1).abs().max()) == 0


def reference(model, idx):
    """Lesson 06's transformer written out: learned positions, LayerNorm, attention, GELU; the model's weights."""
    B, T = idx.shape
    x = model.wte(idx) + model.wpe(torch.arange(T))
    for b in model.blocks:
        h = F.layer_norm(x, (x.shape[-1],), b.ln1.weight, b.ln1.bias)
        qkv = h @ b.attn.qkv.weight.T + b.attn.qkv.bias
        q, k, v = (t.view(B, T, 2, -1).transpose(1, 2) for t in qkv.chunk(3, -1))
        att = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(torch.ones(T, T).triu(1).bool(), -math.inf)
        x = x + (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, -1) @ b.attn.proj.weight.T + b.attn.proj.bias
        h = F.layer_norm(x, (x.shape[-1],), b.ln2.weight, b.ln2.bias)
        x = x + F.gelu(h @ b.mlp[0].weight.T + b.mlp[0].bias) @ b.mlp[2].weight.T + b.mlp[2].bias
    x = F.layer_norm(x, (x.shape[-1],), model.ln_f.weight, model.ln_f.bias)
    return x @ model.lm_head.weight.T + model.lm_head.bias


def test_at_the_defaults_the_model_is_lesson_06s():
    defaults = {f: getattr(TransformerConfig(), f) for f in ("rotary", "norm", "qk_norm", "activation", "zero_init")}
    assert defaults == {"rotary": False, "norm": "layer", "qk_norm": False, "activation": "gelu", "zero_init": False}
    model = small().eval()
    assert [n for n, _ in model.named_parameters() if "blocks.1" not in n] == [
        "wte.weight", "wpe.weight", *(f"blocks.0.{n}" for n in (
            "ln1.weight", "ln1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
            "ln2.weight", "ln2.bias", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias")),
        "ln_f.weight", "ln_f.bias", "lm_head.weight", "lm_head.bias"]
    idx = torch.randint(0, 27, (4, 10), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(model(idx)[0], reference(model, idx), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options", OPTIONS[1:5], ids=lambda o: "+".join(o))
def test_an_option_draws_every_other_weight_as_the_default_model_does(options):
    """So a comparison of an option with the default is one of the option, not of another initialisation."""
    base, other = small().state_dict(), small(**options).state_dict()
    same = [k for k in base if k in other and base[k].shape == other[k].shape and torch.equal(base[k], other[k])]
    changed = {k for k in base if k not in same} | (set(other) - set(base))
    if options.get("zero_init"):
        assert changed == {f"blocks.{i}.{n}.{p}" for i in range(2) for n in ("attn.proj", "mlp.2")
                           for p in ("weight", "bias")}
        assert all(float(other[k].abs().max()) == 0 for k in changed)
    elif options.get("norm"):
        assert changed == {k for k in base if k.endswith("bias") and ("ln" in k)}, changed   # RMSNorm has no bias
    elif options.get("qk_norm"):
        assert changed == {f"blocks.{i}.attn.{q}_norm.weight" for i in range(2) for q in "qk"}
    else:
        assert not changed


def test_rotary_turns_pairs_so_that_attention_depends_on_the_distance_between_positions():
    cos, sin = rotary_angles(12, 8)
    q, k = torch.randn(8, generator=torch.Generator().manual_seed(0)), torch.randn(8)
    at = lambda v, t: rotate(v.view(1, 8), cos[t:t + 1], sin[t:t + 1])[0]   # noqa: E731
    assert torch.allclose(at(q, 5) @ at(k, 2), at(q, 9) @ at(k, 6), atol=1e-5)
    assert torch.allclose(at(q, 3).norm(), q.norm())
    assert not small(rotary=True).wpe and small(rotary=True, pos_emb=False).n_parameters() == small(
        rotary=True).n_parameters()
    with pytest.raises(ValueError, match="rotary needs an even head size"):
        create("transformer", n_embd=12, n_head=4, rotary=True)


@pytest.mark.parametrize("field, value, message", [
    ("norm", "batch", "norm must be one of layer, rms; got 'batch'"),
    ("activation", "relu", "activation must be one of gelu, relu2; got 'relu'"),
    ("qk_norm", 1, "qk_norm must be True or False, got 1"),
])
def test_options_refuse_nonsense_in_one_line(field, value, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig(**{field: value})


@pytest.fixture(name="words")
def words_file(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("".join(NAMES.read_text(encoding="utf-8").splitlines(keepends=True)[:300]), encoding="utf-8")
    return path


def test_a_speedrun_run_saves_its_options_loads_them_back_and_resumes_exactly(words, tmp_path, capsys, monkeypatch):
    args = ["train", "-i", words, "--model", "transformer", "--max-steps", "20", "--eval-every", "10", "--samples",
            "0", "--threads", "1", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--optimizer", "muon",
            "--rotary", "true", "--norm", "rms", "--qk-norm", "true", "--activation", "relu2", "--zero-init", "true"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli.main([str(a) for a in [*args, "-o", full]]) == 0
    meta = runs.read_run(full)
    assert meta["train_config"]["optimizer"] == "muon"
    assert {k: meta["model_config"][k] for k in ("rotary", "norm", "qk_norm", "activation", "zero_init")} == {
        "rotary": True, "norm": "rms", "qk_norm": True, "activation": "relu2", "zero_init": True}
    _, model, _ = runs.load_model(full, "last")
    assert meta["model_config"]["members"] == 2 and meta["train_config"]["sampling"] == "lengths"   # the recipe's
    member = model.members[0]
    assert model.config.rotary and member.wpe is None and member.blocks[0].attn.q_norm is not None

    real = cli.Stopper.check

    def ctrl_c_at_step_13(self, step, dist):
        if step == 13 and not self.requested:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, step, dist)

    monkeypatch.setattr(cli.Stopper, "check", ctrl_c_at_step_13)
    assert cli.main([str(a) for a in [*args, "-o", part]]) == 130
    monkeypatch.setattr(cli.Stopper, "check", real)
    assert cli.main(["train", "-o", str(part), "--resume"]) == 0
    capsys.readouterr()
    a, b = (torch.load(r / "last.pt", weights_only=True) for r in (full, part))
    assert a["state"]["losses"] == b["state"]["losses"] and len(a["state"]["losses"]) == 20
    assert all(torch.equal(v, b["weights"][k]) for k, v in a["weights"].items())
