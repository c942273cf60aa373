"""mmlib.train's Callbacks.before_step hook (added for the command line's Ctrl-C): a run stopped there and resumed
equals one that never stopped, BatchNorm's running statistics included."""

from __future__ import annotations

import pytest
import torch

from mmlib.models import create
from mmlib.train import Callbacks, TrainConfig, TrainState, train


class _Stop(Exception):
    pass


def _splits():
    g = torch.Generator().manual_seed(0)
    X = torch.randint(0, 6, (500, 4), generator=g)
    return {"train": (X[:400], X[:400].sum(1) % 6), "dev": (X[400:], X[400:].sum(1) % 6)}


def _model():
    return create("wavenet", generator=torch.Generator().manual_seed(1), vocab_size=6, block_size=4, n_embd=3,
                  n_hidden=8)


def test_a_run_stopped_before_a_step_resumes_exactly_batchnorm_statistics_included():
    cfg = TrainConfig(max_steps=40, batch_size=16, optimizer="adamw", schedule="cosine", lr=1e-2, warmup=5,
                      progress=False)
    full = _model()
    want = train(full, _splits(), cfg)

    model, state = _model(), TrainState(torch.Generator().manual_seed(cfg.seed))

    class StopAt17(Callbacks):
        def before_step(self, step):
            if step == 17:
                raise _Stop

    with pytest.raises(_Stop):
        train(model, _splits(), cfg, state=state, callbacks=StopAt17())
    assert state.step == 17
    saved, weights = state.state_dict(), {k: v.clone() for k, v in model.state_dict().items()}
    resumed = _model()
    resumed.load_state_dict(weights)
    got = train(resumed, _splits(), cfg, state=TrainState.from_state_dict(saved))
    assert got.losses == want.losses and got.final == want.final
    for k, v in full.state_dict().items():        # running_mean / running_var / num_batches_tracked too
        assert torch.equal(v, resumed.state_dict()[k]), k
