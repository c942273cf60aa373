"""The command line's default recipe for each model: how `makemore train` trains it unless a flag says otherwise.

The lessons train with the lectures' plain SGD on batches of 32; the command line trains the same models
(with a model setting changed where a recipe's `model` says so) faster, with AdamW, a short warm-up and a
cosine decay on larger batches. `benchmarks/recipes.py` measures every recipe against the lectures' and
prints its tables of dev losses and times, so the numbers live in its output, where a rerun updates them,
and not in comments here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """One model's defaults: `train` holds TrainConfig fields, `model` the model config's where they differ."""

    why: str                                                   # one line: why these settings
    train: dict[str, Any]                                      # TrainConfig fields
    model: dict[str, Any] = field(default_factory=dict)       # the model config's fields the recipe changes


_ADAMW = {"optimizer": "adamw", "schedule": "cosine", "eval_every": 500, "eval_rows": None, "lr_min": 1e-4,
          "weight_decay": 0.01, "grad_clip": 1.0, "warmup": 200}

RECIPES: dict[str, Recipe] = {
    "bigram": Recipe("one table of logits: a high rate, no warm-up, and short runs are enough",
                     {**_ADAMW, "max_steps": 2_000, "batch_size": 512, "lr": 0.1, "warmup": 0, "eval_every": 200}),
    "mlp": Recipe("lesson 03's initialisation (the config keeps lesson 02's, which the lesson improves on by hand)",
                  {**_ADAMW, "max_steps": 3_000, "batch_size": 512, "lr": 2e-2},
                  {"w1_scale": "kaiming", "b1_scale": 0.01, "w2_scale": 0.1, "b2_scale": 0.0}),
    "wavenet": Recipe("192 units a level, not the lecture's 128: at 128 no schedule this short matched the lecture's "
                      "dev loss on cities' longer words; the wider model passes it well before the end",
                      {**_ADAMW, "max_steps": 3_000, "batch_size": 512, "lr": 4e-3}, {"n_hidden": 192}),
    "rnn": Recipe("whole words per row, so smaller batches, and a lower rate for the recurrent weights",
                  {**_ADAMW, "max_steps": 6_000, "batch_size": 128, "lr": 3e-3}),
    "gru": Recipe("the RNN's recipe: the same rows, the same rate",
                  {**_ADAMW, "max_steps": 6_000, "batch_size": 128, "lr": 3e-3}),
    "transformer": Recipe("two of lesson 06's transformers trained side by side, predicting the mean of their "
                          "distributions: one overfits 30,000 names, two overfit differently; Muon and ReLU^2 (the "
                          "nanoGPT speedruns') fit sooner; words of like length in a minibatch pad a third less, "
                          "so the two train in the time one took; dropout only in the second half",
                          {**_ADAMW, "optimizer": "muon", "max_steps": 3_500, "batch_size": 128, "lr": 5e-3,
                           "weight_decay": 0.3, "lr_min": 0.0, "grad_clip": None, "sampling": "lengths",
                           "dropout_from": 0.5},
                          {"dropout": 0.1, "activation": "relu2", "members": 2}),
}
"""Every model's recipe, by the model's name in `mmlib.models.MODELS`."""
