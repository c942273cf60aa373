"""The command line (mmlib.cli): every model trains, samples and evaluates; --resume is exact; Ctrl-C saves;
every bad input gets one line and a non-zero exit, and loses nothing."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmlib import cli
from mmlib.cli import flags, runs
from mmlib.data import NAMES
from mmlib.models import MODELS
from mmlib.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
TINY = {  # each model at its smallest, so that the tests train it in a few steps of little work
    "bigram": [],
    "mlp": ["--n-embd", "4", "--n-hidden", "16"],
    "wavenet": ["--n-embd", "4", "--n-hidden", "16"],
    "rnn": ["--n-embd", "8", "--n-hidden", "16"],
    "gru": ["--n-embd", "8", "--n-hidden", "16"],
    "transformer": ["--n-layer", "1", "--n-head", "2", "--n-embd", "16"],
}


@pytest.fixture(scope="module", name="words")
def words_file(tmp_path_factory) -> Path:
    """The first 600 names: every test of the command line trains on them."""
    path = tmp_path_factory.mktemp("words") / "names.txt"
    path.write_text("".join(NAMES.read_text(encoding="utf-8").splitlines(keepends=True)[:600]), encoding="utf-8")
    return path


def run(*argv: str) -> int:
    return cli.main([str(a) for a in argv])


def train_args(words: Path, out: Path, model: str = "mlp", steps: int = 20, *extra: str) -> list[str]:
    return ["train", "-i", words, "-o", out, "--model", model, "--max-steps", str(steps), "--eval-every", "10",
            "--samples", "3", "--threads", "1", *TINY[model], *extra]


def one_line_error(capsys, argv, code=1, match=None) -> str:
    """Run `argv`, which must be refused: the exit status, and one line on stderr (no traceback)."""
    try:
        status = run(*argv)
    except SystemExit as e:      # argparse's usage errors
        status = e.code
    err = capsys.readouterr().err
    assert status == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    if match:
        assert match in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


# ---- it works --------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_trains_samples_and_evaluates(model, words, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*train_args(words, out, model)) == 0
    printed = capsys.readouterr().out
    assert "step 10/20 | train" in printed and "best so far, saved" in printed
    assert "new, marked *" in printed, printed
    assert sorted(p.name for p in out.iterdir()) == sorted(runs.RUN_FILES)
    meta = runs.read_run(out)
    assert meta["model"] == model and meta["step"] == 20 and meta["finished"]

    assert run("sample", "-o", out, "-n", "5", "--seed", "1") == 0
    got = capsys.readouterr()
    drawn = got.out.splitlines()
    assert len(drawn) == 5 and "new (not in the word file)" in got.err and got.err.rstrip().endswith("; seed 1")
    assert run("sample", "-o", out, "-n", "5", "--seed", "1") == 0
    assert capsys.readouterr().out.splitlines() == drawn, "a seed repeats the draws"

    assert run("eval", "-o", out) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["train", "dev", "test"]
    dev = float(lines[1].split()[1])
    assert dev == pytest.approx(meta["best"]["dev"], abs=6e-5), "eval reloads the best checkpoint"


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_on_the_second_word_list(model, tmp_path, capsys):
    """data/cities.txt: spaces, hyphens and apostrophes inside words, and words up to 57 characters long."""
    cities = tmp_path / "cities.txt"
    lines = (ROOT / "data" / "cities.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    cities.write_text("".join(lines[:300] + [max(lines, key=len)]), encoding="utf-8")
    out = tmp_path / "run"
    assert run(*train_args(cities, out, model, 4)) == 0
    meta = runs.read_run(out)
    assert set(" -'") <= set(meta["vocab"])
    if MODELS[model].per_position:
        assert meta["model_config"]["block_size"] == 58, "the longest city name (57 characters) + 1"
    capsys.readouterr()
    assert run("sample", "-o", out, "-n", "3") == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_the_lectures_sgd_recipe_from_the_command_line(words, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*train_args(words, out, "mlp"), "--optimizer", "sgd", "--schedule", "step", "--lr", "0.1") == 0
    cfg = runs.read_run(out)["train_config"]
    assert cfg["optimizer"] == "sgd" and cfg["weight_decay"] == 0.0, "the AdamW recipe's weight decay is dropped"
    one_line_error(capsys, [*train_args(words, tmp_path / "x", "mlp"), "--optimizer", "sgd", "--weight-decay", "0.1"],
                   match="weight_decay is applied by AdamW only")


def test_samples_can_start_with_a_prefix_and_be_cut_to_the_top_k(words, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*train_args(words, out, "transformer")) == 0
    capsys.readouterr()
    assert run("sample", "-o", out, "-n", "8", "--prefix", "ka", "--top-k", "3", "--temperature", "0.7",
               "--seed", "0") == 0
    drawn = capsys.readouterr().out.splitlines()
    assert len(drawn) == 8 and all(w.startswith("ka") for w in drawn)


def test_help_explains_every_flag_and_every_setting_has_one(capsys):
    parser = flags.make_parser()
    subs = next(a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0])))
    for name, sub in subs.choices.items():
        for action in sub._actions:
            explained = (action.help or "").split("(default:")[0].strip()      # a default alone explains nothing
            assert len(explained) > 10, f"makemore {name} {action.option_strings} has no help: {action.help!r}"
    train_flags = {s for a in subs.choices["train"]._actions for s in a.option_strings}
    for cls in MODELS.values():
        for f in dataclasses.fields(cls.Config):
            if f.name != "vocab_size":
                assert flags.flag_of(f.name) in train_flags, f"{cls.__name__}.{f.name} has no flag"
    for f in dataclasses.fields(TrainConfig):
        if f.name not in flags.TRAIN_HIDDEN:
            assert flags.flag_of(f.name) in train_flags, f"TrainConfig.{f.name} has no flag"
    with pytest.raises(SystemExit) as e:
        run("train", "--help")
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "--n-layer" in text and "transformer: transformer blocks (default: 4)" in " ".join(text.split())


def test_a_flag_shared_by_several_models_has_one_type_and_each_comment_is_read_whole():
    for name, per_model in flags.model_fields().items():
        assert len({str(hint) for _, hint, _ in per_model.values()}) == 1, f"--{name} has two types: {per_model}"
    comment = flags.model_fields()["bn_init_noise"]["mlp"][0]
    assert comment.endswith("or a bias of exactly 0"), "a comment's continuation lines are part of its help"
    assert flags.field_comments(TrainConfig)["max_steps"].startswith("optimisation steps, one minibatch each")


def test_python_dash_m_mmlib_and_the_makemore_script():
    proc = subprocess.run([sys.executable, "-m", "mmlib", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "train" in proc.stdout and "sample" in proc.stdout
    scripts = importlib.metadata.entry_points(group="console_scripts", name="makemore")
    assert [s.value for s in scripts] == ["mmlib.cli:main"], "pip install -e . declares the makemore command"


# ---- --resume and Ctrl-C -----------------------------------------------------------------------


def _last(out: Path) -> dict:
    return torch.load(out / "last.pt", weights_only=True)


def test_resume_after_ctrl_c_gives_the_numbers_of_an_uninterrupted_run(words, tmp_path, capsys, monkeypatch):
    args = ["--optimizer", "adamw", "--lr", "0.01", "--warmup", "5"]
    full = tmp_path / "full"
    assert run(*train_args(words, full, "wavenet", 60, *args)) == 0

    real = cli.Stopper.check

    def ctrl_c_at_step_37(self, step, dist):   # a real SIGINT, delivered to this process at step 37
        if step == 37 and not self.requested:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, step, dist)

    part = tmp_path / "part"
    monkeypatch.setattr(cli.Stopper, "check", ctrl_c_at_step_37)
    assert run(*train_args(words, part, "wavenet", 60, *args)) == 130
    assert f"interrupted at step 37: saved {part / 'last.pt'}" in capsys.readouterr().out
    assert _last(part)["state"]["step"] == 37 and not runs.read_run(part)["finished"]
    monkeypatch.setattr(cli.Stopper, "check", real)

    assert run("train", "-o", part, "--resume") == 0      # -i may be left out: the run kept its words
    assert "resuming wavenet at step 37 of 60" in capsys.readouterr().out
    a, b = _last(full), _last(part)
    assert a["state"]["losses"] == b["state"]["losses"] and len(a["state"]["losses"]) == 60
    assert [{k: v for k, v in e.items()} for e in a["state"]["evals"]] == b["state"]["evals"]
    for k, v in a["weights"].items():
        assert torch.equal(v, b["weights"][k]), k
    assert a["best"] == b["best"]
    best_a = torch.load(full / "best.pt", weights_only=True)["weights"]
    best_b = torch.load(part / "best.pt", weights_only=True)["weights"]
    assert all(torch.equal(v, best_b[k]) for k, v in best_a.items())
    assert run("train", "-o", part, "--resume") == 0
    assert "finished at step 60 already" in capsys.readouterr().out


def test_a_run_stopped_before_its_first_evaluation_keeps_what_it_has(words, tmp_path, capsys, monkeypatch):
    def ctrl_c_at_step_3(self, step, dist):
        if step == 3:
            self.requested = True
        return real(self, step, dist)

    real = cli.Stopper.check
    monkeypatch.setattr(cli.Stopper, "check", ctrl_c_at_step_3)
    out = tmp_path / "run"
    assert run(*train_args(words, out, "gru")) == 130
    assert not (out / "best.pt").exists() and _last(out)["state"]["step"] == 3
    capsys.readouterr()
    one_line_error(capsys, ["sample", "-o", out], match="stopped before its first evaluation; use --checkpoint last")
    assert run("sample", "-o", out, "--checkpoint", "last", "-n", "2") == 0


def signal_a_real_run(words: Path, out: Path, sig: int) -> tuple[int, str, str]:
    """Start a long bigram run in a process of its own, send it `sig` once it has saved last.pt (its first
    evaluation), and return its exit code, stdout and stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "mmlib", *map(str, train_args(words, out, "bigram", 10**7)),
                             "--samples", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MMLIB_QUIET": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert (out / "last.pt").exists(), "the run saved nothing before the first evaluation"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stdout, stderr


def test_ctrl_c_in_a_real_process_saves_a_checkpoint(words, tmp_path):
    out = tmp_path / "run"
    returncode, stdout, stderr = signal_a_real_run(words, out, signal.SIGINT)
    assert returncode == 130, stdout + stderr
    assert "Traceback" not in stderr
    step = _last(out)["state"]["step"]
    assert f"interrupted at step {step:,}: saved" in stdout and step >= 10
    assert runs.read_run(out)["step"] == step


# ---- bad input: one line, a non-zero exit, nothing lost -------------------------------------------


@pytest.mark.parametrize("content, match", [
    (None, "no word file at"),
    (b"", "holds no words"),
    (b"\n  \n", "holds no words"),
    (b"ab\x00cd\n", "looks binary"),
    ("anna\nrené\n".encode("latin-1"), "is not valid UTF-8 (byte 0xe9 on line 2)"),
])
def test_unusable_word_files_are_refused_in_one_line(content, match, tmp_path, capsys):
    path = tmp_path / "words.txt"
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "run"
    one_line_error(capsys, ["train", "-i", path, "-o", out], match=match)
    assert not out.exists(), "a refused run leaves no folder behind"


def test_characters_the_saved_vocabulary_lacks(words, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*train_args(words, out)) == 0
    other = tmp_path / "other.txt"
    other.write_text("anna\nzoë\n", encoding="utf-8")
    line = one_line_error(capsys, ["eval", "-o", out, "-i", other], match="'ë' (U+00EB, first in word 2, 'zoë')")
    assert "train a new run on this file" in line
    one_line_error(capsys, ["sample", "-o", out, "--prefix", "Ka"], match="'K' (U+004B)")
    same = tmp_path / "same.txt"
    same.write_text("anna\nbob\n", encoding="utf-8")
    assert run("eval", "-o", out, "-i", same) == 0
    assert "2 words, loss" in capsys.readouterr().out


def test_a_checkpoint_of_another_model_or_vocabulary_is_named(words, tmp_path, capsys):
    mlp, gru = tmp_path / "mlp", tmp_path / "gru"
    assert run(*train_args(words, mlp, "mlp")) == 0
    assert run(*train_args(words, gru, "gru")) == 0
    (gru / "best.pt").write_bytes((mlp / "best.pt").read_bytes())
    one_line_error(capsys, ["sample", "-o", gru], match="is a checkpoint of a mlp, but")
    one_line_error(capsys, ["train", "-o", gru, "--resume", "--model", "mlp"], match="holds a gru run")

    upper = tmp_path / "upper.txt"        # the same model on other characters
    upper.write_text(words.read_text(encoding="utf-8").upper(), encoding="utf-8")
    other = tmp_path / "other"
    assert run(*train_args(upper, other, "mlp")) == 0
    capsys.readouterr()
    (mlp / "last.pt").write_bytes((other / "last.pt").read_bytes())
    one_line_error(capsys, ["eval", "-o", mlp, "--checkpoint", "last"], match="was trained on another vocabulary")
    (mlp / "best.pt").write_bytes(b"not a checkpoint")
    one_line_error(capsys, ["eval", "-o", mlp], match="is not a checkpoint makemore can read")
    one_line_error(capsys, ["sample", "-o", tmp_path / "nowhere"], match="is not a run folder")


def test_a_folder_holding_another_run_is_refused_unless_resume_or_force(words, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*train_args(words, out)) == 0
    before = snapshot(out)
    one_line_error(capsys, train_args(words, out), match="holds a run already (mlp, step 20 of 20)")
    one_line_error(capsys, train_args(words, out, "gru"), match="continue it with --resume")
    one_line_error(capsys, [*train_args(words, out), "--resume", "--force"], match="give one of them")
    assert snapshot(out) == before, "nothing was overwritten"
    other = tmp_path / "other.txt"
    other.write_text("anna\nbob\ncarl\ndora\n", encoding="utf-8")
    one_line_error(capsys, ["train", "-i", other, "-o", out, "--resume"], match="is not the word file")
    one_line_error(capsys, ["train", "-o", out, "--resume", "--lr", "0.5"], match="--lr 0.5 differs from the run's")
    assert snapshot(out) == before
    assert run(*train_args(words, out, "gru"), "--force") == 0
    assert runs.read_run(out)["model"] == "gru"

    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious", encoding="utf-8")
    for extra in ([], ["--force"]):
        one_line_error(capsys, [*train_args(words, foreign), *extra], match="holds files that are not a makemore run")
    assert snapshot(foreign) == {"chapter1.tex": b"precious"}
    one_line_error(capsys, ["train", "-o", tmp_path / "empty", "--resume"], match="is not a run folder")


@pytest.mark.parametrize("argv, match, code", [
    (["--max-steps", "0"], "--max-steps must be a positive whole number, got 0", 1),
    (["--max-steps", "lots"], "--max-steps must be a whole number, got 'lots'", 1),
    (["--lr", "-1"], "--lr must be a learning rate in (0, 10], got -1.0", 1),
    (["--lr", "nan"], "--lr must be a learning rate", 1),
    (["--batch-size", "2.5"], "--batch-size must be a whole number, got '2.5'", 1),
    (["--n-hidden", "0"], "--n-hidden must be a positive whole number, got 0", 1),
    (["--block-size", "6", "--model", "wavenet"], "--block-size must be a power of two", 1),
    (["--n-layer", "2"], "--n-layer is not a setting of the mlp model", 1),
    (["--betas", "0.9"], "--betas must be two numbers", 1),
    (["--optimizer", "adam"], "--optimizer must be one of sgd, adamw, muon; got 'adam'", 1),
    (["--optimizer", "muon", "--model", "bigram"], "--optimizer muon trains a model's hidden weight matrices and "
                                                   "the bigram model has none", 1),
    (["--samples", "-1"], "--samples must be a whole number >= 0, got -1", 1),
    (["--batchnorm", "maybe"], "--batchnorm must be true or false, got 'maybe'", 1),
    (["--device", "tpu"], "--device must be one of cpu, cuda, mps; got 'tpu'", 1),
    (["--model", "lstm"], "invalid choice: 'lstm'", 2),
    (["--steps", "5"], "unrecognized arguments: --steps 5", 2),
])
def test_nonsense_numbers_and_names_are_refused_in_one_line(argv, match, code, words, tmp_path, capsys):
    base = ["train", "-i", words, "-o", tmp_path / "run"]
    if "--model" not in argv:
        base += ["--model", "mlp"]
    one_line_error(capsys, [*base, *argv], code=code, match=match)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, match", [
    (["-n", "0"], "-n must be a positive whole number, got 0"),
    (["-n", "many"], "-n must be a whole number, got 'many'"),
    (["--temperature", "0"], "--temperature must be a finite number > 0, got 0.0"),
    (["--top-k", "x"], "--top-k must be a whole number, got 'x'"),
    (["--seed", "1.5"], "--seed must be a whole number, got '1.5'"),
])
def test_nonsense_sampling_settings_are_refused_in_one_line(argv, match, words, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*train_args(words, out, "bigram")) == 0
    capsys.readouterr()
    one_line_error(capsys, ["sample", "-o", out, *argv], match=match)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU, so cuda is not absent")
def test_an_absent_device_is_named_before_any_work(words, tmp_path, capsys):
    one_line_error(capsys, [*train_args(words, tmp_path / "run"), "--device", "cuda"], match="sees no CUDA GPU")
    assert not (tmp_path / "run").exists()
    out = tmp_path / "ok"
    assert run(*train_args(words, out, "bigram")) == 0
    capsys.readouterr()
    one_line_error(capsys, ["sample", "-o", out, "--device", "cuda"], match="sees no CUDA GPU")
