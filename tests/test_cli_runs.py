"""Runs you can trust from the command line: a seed repeats a run exactly, a stopped run keeps its work, one
train per run folder, and odd input (a damaged run.json, a changed words.txt, Ctrl-C while loading) gets one line."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_cli import ROOT, one_line_error, run, signal_a_real_run, snapshot, train_args, words_file  # noqa: F401 (a fixture)

from mmlib import cli
from mmlib.cli import runs
from mmlib.models import MODELS


def _last(out: Path) -> dict:
    return torch.load(out / "last.pt", weights_only=True)


def _stopped_at(monkeypatch, step: int, *argv) -> int:
    """`run(*argv)` with a stop requested before step `step`, as Ctrl-C would; later runs are not stopped."""
    real = cli.Stopper.check

    def stop(self, at, dist):
        if at == step:
            self.requested = True
        return real(self, at, dist)

    monkeypatch.setattr(cli.Stopper, "check", stop)
    try:
        return run(*argv)
    finally:
        monkeypatch.setattr(cli.Stopper, "check", real)


def _samples(printed: str) -> list[str]:
    return [line for line in printed.splitlines() if line.lstrip().startswith("samples")]


# ---- a seed repeats a run exactly ----------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_seed_repeats_a_run_bit_for_bit(model, words, tmp_path, capsys):
    """Same seed, same threads: the same losses, weights and samples, whatever the global generator held before
    (the transformer's dropout draws from it)."""
    seen = []
    for i, noise in enumerate([1, 1000]):
        torch.rand(noise)                   # the global generator elsewhere, as after any other work
        out = tmp_path / f"run{i}"
        assert run(*train_args(words, out, model, 20), "--seed", "5") == 0
        printed = capsys.readouterr().out
        assert run("sample", "-o", out, "-n", "5", "--seed", "3") == 0
        seen.append((_last(out), _samples(printed), capsys.readouterr().out))
    (a, samples_a, drawn_a), (b, samples_b, drawn_b) = seen
    assert a["state"]["losses"] == b["state"]["losses"] and a["state"]["evals"] == b["state"]["evals"]
    assert all(torch.equal(v, b["weights"][k]) for k, v in a["weights"].items())
    assert samples_a == samples_b and len(samples_a) == 2 and drawn_a == drawn_b
    if model == "transformer":
        assert runs.read_run(tmp_path / "run0")["model_config"]["dropout"] > 0, "the recipe's dropout is on"


def test_resume_keeps_the_threads_and_the_samples_of_the_run(words, tmp_path, capsys, monkeypatch):
    full = tmp_path / "full"
    assert run(*train_args(words, full, "transformer", 40), "--samples", "2") == 0
    full_samples = _samples(capsys.readouterr().out)

    part = tmp_path / "part"
    assert _stopped_at(monkeypatch, 15, *train_args(words, part, "transformer", 40), "--samples", "2") == 130
    before = _samples(capsys.readouterr().out)
    torch.set_num_threads(2)
    assert run("train", "-o", part, "--resume") == 0          # neither --threads nor --samples given
    printed = capsys.readouterr().out
    assert "seed 42, 1 thread" in printed and torch.get_num_threads() == 1
    assert before + _samples(printed) == full_samples, "the same samples as the run that never stopped"
    assert _last(part)["state"]["losses"] == _last(full)["state"]["losses"]


def test_a_run_from_before_sampling_and_late_dropout_resumes_as_it_started(words, tmp_path, capsys, monkeypatch):
    """A run.json written before TrainConfig had `sampling` and `dropout_from` continues with random draws and
    dropout throughout, as it was trained, not with what the transformer's recipe says today."""
    old = ("--sampling", "random", "--dropout-from", "0")
    full = tmp_path / "full"
    assert run(*train_args(words, full, "transformer", 40), *old) == 0

    part = tmp_path / "part"
    assert _stopped_at(monkeypatch, 15, *train_args(words, part, "transformer", 40), *old) == 130
    meta = runs.read_run(part)
    for name in ("sampling", "dropout_from"):
        del meta["train_config"][name]
    runs.write_run(part, meta)
    capsys.readouterr()
    assert run("train", "-o", part, "--resume") == 0
    as_started = _last(full)["state"]["losses"]
    assert _last(part)["state"]["losses"] == as_started
    assert run(*train_args(words, tmp_path / "recipe", "transformer", 40)) == 0
    assert _last(tmp_path / "recipe")["state"]["losses"] != as_started, "today's recipe trains differently"


# ---- a stopped run keeps its work ------------------------------------------------------------------


def test_sigterm_in_a_real_process_saves_and_says_how_to_resume(words, tmp_path):
    out = tmp_path / "run"
    returncode, stdout, stderr = signal_a_real_run(words, out, signal.SIGTERM)
    assert returncode == 128 + signal.SIGTERM, stdout + stderr
    assert "Traceback" not in stderr
    step = _last(out)["state"]["step"]
    assert f"interrupted at step {step:,}: saved {out / 'last.pt'} on SIGTERM; continue with: makemore train " \
           f"-o {out} --resume" in stdout
    assert runs.read_run(out)["step"] == step and not (out / runs.LOCK_FILE).exists()


def test_a_run_stopped_before_its_first_evaluation_can_be_resumed(words, tmp_path, capsys, monkeypatch):
    real = cli.Stopper.check

    def sigterm_at_step_3(self, step, dist):   # a real SIGTERM, before the first evaluation (step 10)
        if step == 3 and not self.requested:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, step, dist)

    out = tmp_path / "run"
    monkeypatch.setattr(cli.Stopper, "check", sigterm_at_step_3)
    assert run(*train_args(words, out, "mlp")) == 128 + signal.SIGTERM
    assert _last(out)["state"]["step"] == 3 and not (out / "best.pt").exists()
    monkeypatch.setattr(cli.Stopper, "check", real)
    assert run("train", "-o", out, "--resume") == 0
    assert "resuming mlp at step 3 of 20" in capsys.readouterr().out and runs.read_run(out)["finished"]


def test_resume_without_last_pt_says_what_to_do(words, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*train_args(words, out)) == 0
    (out / "last.pt").unlink()            # as a run killed (SIGKILL) before it saved anything leaves it
    line = one_line_error(capsys, ["train", "-o", out, "--resume"], match="stopped before it saved anything")
    assert f"start it again with: makemore train -i WORDS -o {out} --force" in line


def test_a_second_train_on_a_folder_in_use_is_refused_naming_the_first(words, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*train_args(words, out)) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(runs.RUN_FILES), "the lock goes when the run ends"
    other = runs.RunLock(out)              # another makemore train, holding the folder
    other.acquire()
    try:
        before = snapshot(out)
        for extra in (["--force"], ["--resume"]):
            argv = ["train", "-o", out, *extra] if extra == ["--resume"] else [*train_args(words, out), *extra]
            line = one_line_error(capsys, argv, match="is in use by makemore train (process ")
            assert f"process {os.getpid()} on " in line and "one makemore train per run folder" in line
        assert snapshot(out) == before
    finally:
        other.release()
    assert run(*train_args(words, out), "--force") == 0


def test_writers_never_share_a_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    names = []
    real = os.replace

    def replace(src, dst) -> None:
        names.append(Path(src).name)
        if len(names) == 1:       # another writer of the same file starts while this one is about to rename
            runs.write_atomically(target, b"second")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    runs.write_atomically(target, b"first")
    assert len(set(names)) == 2 and all(n.endswith(".tmp") and n != "last.pt.tmp" for n in names)
    assert target.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_diverged_weights_never_become_the_best(words, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "-i", words, "-o", out, "--model", "mlp", "--max-steps", "400", "--eval-every", "50",
            "--samples", "0", "--threads", "1", "--optimizer", "sgd", "--schedule", "constant", "--lr", "10"]
    line = one_line_error(capsys, argv, match="the loss is diverging")
    assert "best.pt" not in line and not (out / "best.pt").exists()
    evals = _last(out)["state"]["evals"]
    assert evals and all(e["dev"] > 2 * math.log(27) for e in evals), "every evaluation was a diverged one"
    one_line_error(capsys, ["sample", "-o", out], match="the run diverged before any evaluation")


# ---- odd input: one line ---------------------------------------------------------------------------


def test_a_run_json_with_keys_missing_is_named(words, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*train_args(words, out, "bigram")) == 0
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    del meta["vocab"], meta["data"]["sha256"]
    (out / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    for argv in (["sample", "-o", out], ["eval", "-o", out], ["train", "-o", out, "--resume"]):
        one_line_error(capsys, argv, match="run.json lacks vocab, data.sha256: the run folder is damaged")


def test_ctrl_c_while_the_modules_load_is_one_line(tmp_path):
    """A Ctrl-C that lands while PyTorch is being imported (the first second or more of every command).

    The hook raises the KeyboardInterrupt from the import itself. A real SIGINT sent from the hook is
    handled wherever the interpreter next checks for signals: in one CI run on a loaded machine it never
    surfaced and the command went on to its own error (exit 1). Where a signal lands is timing, which
    this test is not about."""
    code = ("import sys, runpy\n"
            "class CtrlC:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch':\n"
            "            raise KeyboardInterrupt\n"
            "sys.meta_path.insert(0, CtrlC())\n"
            "sys.argv = ['makemore', 'eval', '-o', 'nowhere']\n"
            "runpy.run_module('mmlib', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "makemore: interrupted while loading"


def test_errors_name_the_flag_not_the_lessons_parameter(tmp_path, capsys):
    line = one_line_error(capsys, ["train", "-i", tmp_path / "missing.txt", "-o", tmp_path / "run"],
                          match="no word file at")
    assert "check -i" in line and "data_path" not in line
    line = one_line_error(capsys, ["train", "-i", tmp_path, "-o", tmp_path / "run"], match="is a folder")
    assert "-i must name a text file" in line


def test_samples_per_evaluation_are_bounded(words, tmp_path, capsys):
    one_line_error(capsys, [*train_args(words, tmp_path / "run"), "--samples", "1000000"],
                   match=f"--samples must be at most {cli.MAX_SAMPLES}")
    assert not (tmp_path / "run").exists()


def test_eval_notices_a_changed_word_file_and_dots_inside_words(words, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*train_args(words, out, "bigram")) == 0
    capsys.readouterr()
    dotted = tmp_path / "dotted.txt"
    dotted.write_text("anna\nma.ry\n", encoding="utf-8")
    one_line_error(capsys, ["eval", "-o", out, "-i", dotted], match="word 2 'ma.ry' contains '.'")
    with open(out / "words.txt", "a", encoding="utf-8") as f:
        f.write("zed\n")
    one_line_error(capsys, ["eval", "-o", out], match="words.txt changed since the run was trained on it")


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this PyTorch build has no gloo backend")
def test_under_torchrun_a_bad_input_is_said_once_and_sigterm_saves(words, tmp_path):
    env = {**os.environ, "MMLIB_QUIET": "1", "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mmlib"]
    bad = subprocess.run([*torchrun, *map(str, train_args(words, tmp_path / "bad", "bigram")), "--lr", "-1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert bad.returncode != 0 and bad.stderr.count("makemore train: error: --lr must be a learning rate") == 1

    out = tmp_path / "run"
    proc = subprocess.Popen([*torchrun, *map(str, train_args(words, out, "bigram", 10**7)), "--samples", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 180
        while not (out / "last.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)   # to torchrun, which passes it on to both processes
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    step = _last(out)["state"]["step"]
    assert f"interrupted at step {step:,}: saved" in stdout, stdout + stderr
    assert f"continue with: torchrun --standalone --nproc_per_node 2 -m mmlib train -o {out} --resume" in stdout
    assert len(_last(out)["generators"]) == 2 and runs.read_run(out)["step"] == step


def test_sample_draws_any_number_in_bounded_chunks(words, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert run(*train_args(words, out, "transformer")) == 0
    capsys.readouterr()
    monkeypatch.setattr(cli, "SAMPLE_CHUNK", 3)
    drawn = []
    for _ in range(2):
        assert run("sample", "-o", out, "-n", "7", "--seed", "4") == 0
        got = capsys.readouterr()
        drawn.append(got.out.splitlines())
        assert got.err.startswith(f"7 words from {out}")
    assert len(drawn[0]) == 7 and drawn[0] == drawn[1], "chunk by chunk, a seed still repeats the draws"


def test_a_warmup_longer_than_the_run_is_refused_or_explained(tmp_path, capsys):
    """--warmup longer than --max-steps never reaches the peak rate: refused when given, explained when the
    recipe's default warm-up is the longer one (issue 15: accepted but meaningless)."""
    from mmlib import cli

    words = tmp_path / "w.txt"
    words.write_text("".join(f"{a}{b}{c}\n" for a in "abcd" for b in "aeio" for c in "nrst"), encoding="utf-8")
    base = ["train", "-i", str(words), "--model", "bigram", "--eval-every", "0", "--samples", "0", "--no-progress"]
    assert cli.main([*base, "-o", str(tmp_path / "r1"), "--max-steps", "10", "--warmup", "50"]) == 1
    err = capsys.readouterr().err
    assert "--warmup 50 is longer than the run (--max-steps 10)" in err and "\n" not in err.strip()
    assert not (tmp_path / "r1").exists(), "refused before anything was written"
    assert cli.main([*base, "-o", str(tmp_path / "r2"), "--max-steps", "10", "--warmup", "0",
                     "--schedule", "cosine"]) == 0
    assert "warm-up" not in capsys.readouterr().out
    assert cli.main([*base, "-o", str(tmp_path / "r3"), "--max-steps", "20", "--model", "mlp"]) == 0
    out = capsys.readouterr().out
    assert "note: the recipe's warm-up (200 steps) is longer than this run (20 steps)" in out
