"""Faults that must say what happened and lose nothing: a checkpoint copied in from another run, an edited
run.json, a full disk, a folder made read-only mid-run, temporaries a killed run left, a closed pipe, two
lessons on one metrics file, and the smaller ones (too many threads, paths with spaces, file modes)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from test_cli import ROOT, one_line_error, run, snapshot, train_args, words_file  # noqa: F401 (a fixture)

from mmlib import cli, metrics
from mmlib.cli import runs


def _stop_before(monkeypatch, step: int) -> None:
    """Every later run in this test stops before `step`, as Ctrl-C there would."""
    real = cli.Stopper.check

    def check(self, at, dist):
        if at == step:
            self.request()
        return real(self, at, dist)

    monkeypatch.setattr(cli.Stopper, "check", check)


@pytest.fixture(scope="module")
def bigram_run(words, tmp_path_factory) -> Path:
    """One finished bigram run, trained once: each test that only reads a run works on a copy of it."""
    out = tmp_path_factory.mktemp("bigram") / "run"
    assert run(*train_args(words, out, "bigram")) == 0
    return out


def copy_of(run_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_folder, tmp_path / "run"))


# ---- work replaced without a word ------------------------------------------------------------------


def test_a_checkpoint_copied_in_from_another_run_is_refused(words, tmp_path, capsys, monkeypatch):
    """Same model, config and vocabulary, other words: without run ids, --resume rolled S back to B's weights."""
    other_words = tmp_path / "other.txt"
    other_words.write_text("".join(reversed(words.read_text(encoding="utf-8").splitlines(keepends=True))),
                           encoding="utf-8")
    s, b = tmp_path / "S", tmp_path / "B"
    _stop_before(monkeypatch, 15)
    assert run(*train_args(words, s, "mlp", 30)) == 130
    assert run(*train_args(other_words, b, "mlp", 30)) == 130
    capsys.readouterr()
    assert runs.read_run(s)["id"] != runs.read_run(b)["id"]
    for name in ("last.pt", "best.pt"):
        shutil.copy(b / name, s / name)
    before = snapshot(s)
    line = one_line_error(capsys, ["train", "-o", s, "--resume"], match="last.pt belongs to another run")
    assert "copied in from another folder" in line and "nothing was loaded" in line
    for argv in (["eval", "-o", s], ["sample", "-o", s, "-n", "3"]):
        one_line_error(capsys, argv, match="best.pt belongs to another run")
    assert snapshot(s) == before, "a refused command changed the run folder"


def test_a_run_from_before_run_ids_still_resumes(words, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _stop_before(monkeypatch, 15)
    assert run(*train_args(words, out, "mlp", 30)) == 130
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    del meta["id"], meta["data"]["splits_sha256"]           # as written before either existed
    (out / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    monkeypatch.undo()
    assert run("train", "-o", out, "--resume") == 0
    assert "resuming mlp at step 15" in capsys.readouterr().out


def test_an_edited_seed_no_longer_makes_the_runs_split(words, bigram_run, tmp_path, capsys):
    out = copy_of(bigram_run, tmp_path)
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    meta["train_config"]["seed"] += 1
    (out / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    capsys.readouterr()
    for argv in (["eval", "-o", out], ["train", "-o", out, "--resume"]):
        one_line_error(capsys, argv, match=f"train_config.seed {meta['train_config']['seed']} no longer makes the "
                                           "train/dev/test split the run was trained on")


@pytest.mark.parametrize("key, value, match", [
    ("vocab", 123, "vocab must be the run's characters"),
    ("train_config", None, "train_config must be the training settings"),
    ("model_config", None, "model_config must be the bigram's settings"),
    ("model", ["mlp"], "model must be a model's name"),
    ("step", "abc", "step must be a whole number of steps, got 'abc'"),
    ("step", -3, "step must be a whole number"),
    ("best", 2.5, "best must be null or"),
    ("finished", "yes", "finished must be true or false"),
    ("data", [], "data must describe the word file"),
    ("train_config.lr", "fast", "train_config: lr must be"),
    ("train_config.max_steps", 0, "train_config: max_steps must be a positive whole number"),
    ("train_config.optimiser", "adam", "train_config: TrainConfig.__init__() got an unexpected keyword"),
    ("model_config.block_size", "x", "model_config: block_size must be"),
    ("data.splits_sha256", "abc", "data.splits_sha256 must be a sha256 digest"),
    ("world_size", 0, "world_size must be a whole number of at least 1"),
])
def test_a_damaged_run_json_is_named_in_one_line(key, value, match, words, bigram_run, tmp_path, capsys):
    out = copy_of(bigram_run, tmp_path)
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    *parents, last = key.split(".")
    target = meta
    for k in parents:
        target = target[k]
    target[last] = value
    (out / "run.json").write_text(json.dumps(meta), encoding="utf-8")
    capsys.readouterr()
    for argv in (["sample", "-o", out], ["eval", "-o", out], ["train", "-o", out, "--resume"]):
        line = one_line_error(capsys, argv, match=match)
        assert "run.json" in line and "the run folder is damaged" in line, line


# ---- a full disk, a read-only folder: name the file, say what is still saved -----------------------


@contextmanager
def small_disk(path: Path, size: int):
    """A tmpfs of `size` bytes mounted at `path` (root only: skipped elsewhere), unmounted afterwards."""
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def test_a_folder_made_read_only_mid_run_names_the_file_and_what_is_saved(words, tmp_path, capsys, monkeypatch):
    """The write of best.pt at the second evaluation fails; the lock's clean-up must not hide that."""
    with small_disk(tmp_path / "disk", 64 << 20) as disk:
        out = disk / "r"
        real = cli.TrainHooks.save_last

        def save_last_then_read_only(self):
            real(self)
            if self.state.step == 10:
                remount(disk, "ro")

        monkeypatch.setattr(cli.TrainHooks, "save_last", save_last_then_read_only)
        line = one_line_error(capsys, train_args(words, out, "mlp", 30))
        assert f"could not write {out / 'best.pt'}: Read-only file system at step 20" in line, line
        assert f"{out / 'last.pt'} still holds step 10" in line and "make the folder writable" in line, line
        assert f"continue with: makemore train -o {out} --resume" in line, line
        monkeypatch.undo()
        remount(disk, "rw")
        assert torch.load(out / "last.pt", weights_only=True)["state"]["step"] == 10
        assert run("train", "-o", out, "--resume") == 0
        assert runs.read_run(out)["finished"] and not list(out.glob("*.tmp"))


def test_a_read_only_folder_at_the_start_is_one_line(words, tmp_path, capsys):
    with small_disk(tmp_path / "disk", 1 << 20) as disk:
        (disk / "r").mkdir()
        remount(disk, "ro")
        one_line_error(capsys, train_args(words, disk / "r", "bigram"),
                       match=f"cannot write in the run folder {disk / 'r'} (Read-only file system)")


def test_a_full_disk_names_the_file_and_what_is_saved(words, tmp_path, capsys):
    """Room for the first evaluation's files, not for the second's: last.pt of step 10 stays whole."""
    sizes = tmp_path / "sizes"
    assert run(*train_args(words, sizes, "mlp", 10)) == 0
    room = sum(p.stat().st_size for p in sizes.iterdir()) + (sizes / "best.pt").stat().st_size + (16 << 10)
    capsys.readouterr()
    with small_disk(tmp_path / "disk", room) as disk:
        out = disk / "full"
        line = one_line_error(capsys, train_args(words, out, "mlp", 30))
        assert f"could not write {out / 'last.pt'}: No space left on device at step 20" in line, line
        assert f"{out / 'last.pt'} still holds step 10" in line and "free some disk space" in line, line
        assert not list(out.glob("*.tmp")), "a failed write left its temporary file"
        assert torch.load(out / "last.pt", weights_only=True)["state"]["step"] == 10
        remount(disk, f"size={room * 4}")
        assert run("train", "-o", out, "--resume") == 0
        assert runs.read_run(out)["finished"]


def test_temporaries_of_killed_writers_are_removed_when_train_takes_the_folder(words, tmp_path, capsys,
                                                                                monkeypatch):
    out = tmp_path / "run"
    _stop_before(monkeypatch, 15)
    assert run(*train_args(words, out, "mlp", 30)) == 130
    monkeypatch.undo()
    stale = [out / f"{name}.{uuid.uuid4().hex[:8]}.tmp" for name in ("last.pt", "best.pt", "run.json", "last.pt")]
    for p in stale:
        p.write_bytes(b"x" * 1000)
    (out / "notes.tmp").write_text("not ours", encoding="utf-8")   # not a run file's temporary: left alone
    assert run("train", "-o", out, "--resume") == 0
    assert not any(p.exists() for p in stale) and (out / "notes.tmp").exists()


# ---- the smaller ones -------------------------------------------------------------------------------


def test_more_threads_than_cores_is_one_line(words, tmp_path, capsys):
    cores = cli.available_cores()
    one_line_error(capsys, [*train_args(words, tmp_path / "run"), "--threads", str(cores + 1)],
                   match=f"--threads {cores + 1} is more than the {cores} CPU core")
    one_line_error(capsys, [*train_args(words, tmp_path / "run"), "--threads", "999"], match="--threads 999")
    assert not (tmp_path / "run").exists()


class OneProcessGotSigterm:
    """Stands in for torchrun's other processes: one of them was sent SIGTERM."""

    def max(self, value: int) -> int:
        return max(value, int(signal.SIGTERM))


def test_sigterm_to_one_torchrun_process_is_reported_as_sigterm_by_every_process():
    stopper = cli.Stopper()
    with pytest.raises(cli.Interrupted):
        stopper.check(7, OneProcessGotSigterm())
    assert stopper.signal == signal.SIGTERM
    quiet = cli.Stopper()
    quiet.check(7, type("NoSignal", (), {"max": staticmethod(lambda v: v)})())   # nobody asked: no stop


def test_the_continue_hint_is_a_command_a_shell_can_run(words, tmp_path, capsys, monkeypatch):
    out = tmp_path / "my run's folder"
    _stop_before(monkeypatch, 15)
    assert run(*train_args(words, out, "mlp", 30)) == 130
    printed = capsys.readouterr().out
    hint = printed.split("continue with: ")[1].strip()
    assert hint == f"makemore train -o {shlex.quote(str(out))} --resume"
    monkeypatch.undo()
    assert run(*shlex.split(hint)[1:]) == 0 and runs.read_run(out)["finished"]


def test_an_empty_word_is_not_counted_as_new(words, bigram_run, tmp_path, capsys):
    out = copy_of(bigram_run, tmp_path)
    capsys.readouterr()
    assert run("sample", "-o", out, "-n", "300", "--seed", "1", "--temperature", "1e300") == 0
    got = capsys.readouterr()
    drawn = got.out.split("\n")[:-1]
    known = set(runs.run_words(out))
    empty = drawn.count("")
    assert len(drawn) == 300 and empty > 0, "at this temperature every character is as likely, the end included"
    new = sum(w not in known for w in drawn if w)
    assert f", {new} new (not in the word file), {empty} empty (the model ended the word at once" in got.err


def test_command_line_messages_name_flags_not_notebook_parameters(words, bigram_run, tmp_path, capsys):
    out = copy_of(bigram_run, tmp_path)
    (out / "words.txt").unlink()
    line = one_line_error(capsys, ["eval", "-o", out], match=f"{out / 'words.txt'} is missing")
    assert "data_path" not in line, line
    one_line_error(capsys, ["train", "-i", tmp_path / "absent.txt", "-o", tmp_path / "r2"], match="check -i")
    if not torch.cuda.is_available():
        line = one_line_error(capsys, [*train_args(words, tmp_path / "r3"), "--device", "cuda"])
        assert "device=" not in line and "use --device cpu" in line, line
    assert cli.in_flags("device='mps' was asked; use device='cpu'") == "--device mps was asked; use --device cpu"


def test_a_closed_pipe_ends_sample_quietly(words, bigram_run, tmp_path, capsys):
    out = copy_of(bigram_run, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "mmlib", "sample", "-o", str(out), "-n", "200000", "--seed", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = [proc.stdout.readline() for _ in range(3)]      # what `| head -3` reads, then it closes the pipe
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 128 + signal.SIGPIPE
    assert len(first) == 3 and err == "", err


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_run_files_follow_the_umask(umask, mode, words, tmp_path, capsys):
    old = os.umask(umask)
    try:
        out = tmp_path / "run"
        assert run(*train_args(words, out, "bigram")) == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes == {name: mode for name in runs.RUN_FILES}, modes


# ---- two lessons on one metrics file ------------------------------------------------------------------


LESSON = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mmlib.metrics import check_metrics_path, save_metrics
    lesson, path, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    check_metrics_path(path)                       # the lesson's start
    print("started", flush=True)
    while not go.exists():                         # the lesson's training
        time.sleep(0.05)
    save_metrics(path, {"lesson": lesson, "model": "m", "parameters": {}, "losses": {"train": 1.0, "dev": 2.0,
                 "test": None}, "train_seconds": 1.0, "n_parameters": 1,
                 "checks": {"correct": 0, "exact": 0, "wrong": 0, "todo": 0, "total": 0}}, show=False)
""")


def _lesson_process(lesson: str, path: Path, go: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", LESSON, lesson, str(path), str(go)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "started", proc.stderr.read()
    return proc


def test_two_lessons_at_once_on_one_metrics_file_both_keep_their_metrics(tmp_path):
    path = tmp_path / "metrics.json"
    a = _lesson_process("05", path, tmp_path / "go05")
    b = _lesson_process("06", path, tmp_path / "go06")
    (tmp_path / "go05").touch()
    out_a, err_a = a.communicate(timeout=60)
    (tmp_path / "go06").touch()
    out_b, err_b = b.communicate(timeout=60)
    assert a.returncode == b.returncode == 0, err_a + err_b
    assert json.loads(path.read_text())["lesson"] == "05" and out_a == ""
    assert json.loads((tmp_path / "metrics_06.json").read_text())["lesson"] == "06"
    assert out_b.strip() == (f"metrics_path {path} holds lesson 05's metrics (another run wrote it while this one "
                             f"ran), so lesson 06's were written to {tmp_path / 'metrics_06.json'} instead: give each "
                             "lesson a metrics file of its own")


def test_a_metrics_file_of_another_lesson_is_kept_and_the_same_lesson_overwrites_its_own(tmp_path, capsys):
    path = tmp_path / "metrics.json"
    m = {"model": "m", "parameters": {}, "losses": {"train": 1.0, "dev": 2.0, "test": None}, "train_seconds": 1.0,
         "n_parameters": 1, "checks": {"correct": 0, "exact": 0, "wrong": 0, "todo": 0, "total": 0}}
    metrics.check_metrics_path(path)
    metrics.save_metrics(path, {"lesson": "05", **m}, show=False)
    metrics.check_metrics_path(path)
    metrics.save_metrics(path, {"lesson": "05", **m, "model": "again"}, show=False)
    assert capsys.readouterr().out == "" and json.loads(path.read_text())["model"] == "again"
    metrics.check_metrics_path(path)
    metrics.save_metrics(path, {"lesson": "06", **m}, show=False)
    assert capsys.readouterr().out == (f"metrics_path {path} holds lesson 05's metrics (from an earlier run), so "
                                       f"lesson 06's were written to {tmp_path / 'metrics_06.json'} instead: give "
                                       "each lesson a metrics file of its own\n")
    assert json.loads(path.read_text())["lesson"] == "05"
    assert json.loads((tmp_path / "metrics_06.json").read_text())["lesson"] == "06"
