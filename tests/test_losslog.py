"""mmlib.losslog: the loss log lessons 02, 03 and 05 keep."""

from __future__ import annotations

import pytest

from mmlib.losslog import LossLog


def test_loss_log_prints_each_run_replaces_a_rerun_and_keeps_the_order(capsys):
    log = LossLog()
    log.add("small", parameters=3481, steps=30_000, train=2.37851, dev=2.38512)
    assert capsys.readouterr().out == "small: 3,481 parameters; train 2.3785  dev 2.3851  (30,000 steps)\n"
    log.add("big", parameters=11897, steps=200_000, train=2.1, dev=2.2)
    log.add("small", parameters=3481, steps=30_000, train=2.0, dev=2.5)   # a re-run replaces its row, in place
    assert len(log) == 2 and [r["change"] for r in log.to_list()] == ["small", "big"]
    assert log.to_list()[0] == {"change": "small", "parameters": 3481, "steps": 30_000, "train": 2.0, "dev": 2.5}
    capsys.readouterr()
    log.show()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["change", "parameters", "steps", "train", "dev"]
    assert lines[2].split() == ["big", "11,897", "200,000", "2.1000", "2.2000"]


def test_loss_log_takes_train_and_dev_only():
    with pytest.raises(TypeError):
        LossLog().add("x", parameters=1, steps=1, train=1.0, dev=1.0, test=1.0)


def test_loss_log_shows_training_time_when_every_run_has_one(capsys):
    log = LossLog()
    log.add("tree", parameters=22_397, steps=20_000, train=2.05, dev=2.1, seconds=41.6)
    assert capsys.readouterr().out == "tree: 22,397 parameters; train 2.0500  dev 2.1000  (20,000 steps in 42 s)\n"
    log.add("wide", parameters=76_579, steps=200_000, train=1.9, dev=2.0, seconds=390.2)
    assert log.to_list()[1]["seconds"] == 390.2
    capsys.readouterr()
    log.show()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "seconds"
    assert lines[2].split()[-1] == "390"
    log.add("untimed", parameters=1, steps=1, train=1.0, dev=1.0)   # one run without a time: no column
    capsys.readouterr()
    log.show()
    assert capsys.readouterr().out.splitlines()[0].split()[-1] == "dev"
