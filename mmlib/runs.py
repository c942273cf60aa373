"""The run folder of `makemore train` and its checkpoints: where every file of a run is read and written.

    run.json    the model's name and config, the training config, the vocabulary, the word file's
                fingerprint, the step reached and the best dev loss so far (JSON, readable)
    words.txt   a copy of the word file: eval, sample and --resume never depend on where it was
    best.pt     the weights with the lowest finite dev loss seen (below twice a uniform guess's), written
                whenever the dev loss improves
    last.pt     everything to continue exactly (weights, optimiser, minibatch generators, global
                generator, losses), written at every evaluation, at the end and when stopped
    lock        while `makemore train` runs: which process holds the folder (a second train is refused)

Every file is written to a temporary file of its own name and renamed over the old one, so an
interruption (even SIGKILL) never leaves half a file, and two writers never share a temporary file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mmlib.data import build_splits, load_words
from mmlib.models import MODELS, Model, create
from mmlib.vocab import Vocab

try:
    import fcntl
except ImportError:        # Windows: no advisory locks; the folder is not locked there
    fcntl = None

RUN_FORMAT = "mmlib.run/1"
CHECKPOINT_FORMAT = "mmlib.checkpoint/1"
RUN_FILES = ("run.json", "words.txt", "best.pt", "last.pt")
"""Everything `makemore train` leaves in a run folder (and all that --force may replace)."""
LOCK_FILE = "lock"
RUN_KEYS = ("format", "model", "model_config", "train_config", "vocab", "data", "step", "best", "finished")
"""What run.json must hold (world_size and n_parameters came later and have defaults)."""


class CLIError(Exception):
    """A problem with what was asked for, said in one line."""


def sha256_of(words: Sequence[str]) -> str:
    return hashlib.sha256("".join(w + "\n" for w in words).encode()).hexdigest()


def read_run(run: Path) -> dict[str, Any]:
    """run.json of the run folder `run`, checked to be one of ours and complete."""
    path = run / "run.json"
    if not run.is_dir():
        raise CLIError(f"{run} is not a run folder (it does not exist); train one with: "
                       f"makemore train -i WORDS -o {run}")
    if not path.exists():
        raise CLIError(f"{run} holds no run (no run.json); train one with: makemore train -i WORDS -o {run}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CLIError(f"{path} is not readable JSON ({e}); the run folder is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
        raise CLIError(f"{path} was not written by makemore (format {RUN_FORMAT})")
    missing = [k for k in RUN_KEYS if k not in meta]
    missing += [f"data.{k}" for k in ("words", "sha256") if k not in (meta.get("data") or {})]
    if missing:
        raise CLIError(f"{path} lacks {', '.join(missing)}: the run folder is damaged; train it again with --force")
    tcfg = meta.get("train_config")
    if isinstance(tcfg, dict) and "steps" in tcfg and "max_steps" not in tcfg:
        tcfg["max_steps"] = tcfg.pop("steps")    # run.json from before TrainConfig.steps became max_steps
    if meta["model"] not in MODELS:
        raise CLIError(f"{path} names the model {meta['model']!r}, which this version does not have")
    return meta


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary file of this process's own, then rename it over `path`: never half a file."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_run(run: Path, meta: dict[str, Any]) -> None:
    write_atomically(run / "run.json", lambda p: p.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8"))


def check_out_dir(run: Path, *, force: bool) -> None:
    """Refuse a folder that holds something train would overwrite: another run (unless --force) or other files."""
    if run.exists() and not run.is_dir():
        raise CLIError(f"{run} is a file; -o needs a folder for the run (a new or empty one)")
    if not run.exists():
        return
    present = sorted(p.name for p in run.iterdir() if p.name != LOCK_FILE and not p.name.endswith(".tmp"))
    foreign = [n for n in present if n not in RUN_FILES]
    if foreign:
        raise CLIError(f"{run} holds files that are not a makemore run ({', '.join(foreign[:3])}"
                       f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty folder for -o")
    if present and not force:
        what = ""
        try:
            meta = read_run(run)
            what = f" ({meta['model']}, step {meta['step']:,} of {meta['train_config']['max_steps']:,})"
        except CLIError:
            pass
        raise CLIError(f"{run} holds a run already{what}; continue it with --resume, or train a new one over it "
                       "with --force")


class RunLock:
    """One `makemore train` per run folder: the folder is locked (flock) while it trains.

    The lock belongs to the open folder, so the system lets it go however the process ends (even
    SIGKILL); the `lock` file beside it only names the holder, for the second process's message."""

    def __init__(self, run: Path) -> None:
        self.run = run
        self.fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None or self.fd is not None:
            return
        fd = os.open(self.run, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):   # a file system without locks (ENOLCK): go unlocked
                return
            try:
                holder = (self.run / LOCK_FILE).read_text(encoding="utf-8").strip()
            except OSError:
                holder = "another process"
            raise CLIError(f"{self.run} is in use by {holder}: one makemore train per run folder; wait for it to "
                           "end (or stop it: Ctrl-C saves), or choose another -o") from None
        self.fd = fd
        (self.run / LOCK_FILE).write_text(f"makemore train (process {os.getpid()} on {socket.gethostname()})\n",
                                          encoding="utf-8")

    def release(self) -> None:
        if self.fd is not None:
            (self.run / LOCK_FILE).unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


def checkpoint(meta: dict[str, Any], model: Model, **extra: Any) -> dict[str, Any]:
    """What a .pt file holds: the model's identity (name, config, vocabulary) beside its weights."""
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"format": CHECKPOINT_FORMAT, "model": meta["model"], "model_config": meta["model_config"],
            "vocab": meta["vocab"], "weights": weights, **extra}


def save(path: Path, obj: dict[str, Any]) -> None:
    write_atomically(path, lambda p: torch.save(obj, p))


def _absent(path: Path, meta: dict[str, Any]) -> CLIError:
    """What to do about a checkpoint the run folder lacks."""
    run = path.parent
    if path.name == "last.pt":
        return CLIError(f"{path} does not exist: the run stopped before it saved anything to resume from; start it "
                        f"again with: makemore train -i WORDS -o {run} --force")
    every = meta["train_config"].get("eval_every") or 0
    if meta["finished"] or (every and meta["step"] >= every):
        return CLIError(f"{path} does not exist: the run diverged before any evaluation got a finite dev loss "
                        "below twice a uniform guess's (train again with a lower --lr); --checkpoint last has its "
                        "last weights")
    hint = "; use --checkpoint last" if path.with_name("last.pt").exists() else ""
    return CLIError(f"{path} does not exist: the run stopped before its first evaluation{hint}")


def load_checkpoint(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """A .pt file of the run `meta` describes; a clear line for one of another model or vocabulary."""
    if not path.exists():
        raise _absent(path, meta)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged or foreign file
        raise CLIError(f"{path} is not a checkpoint makemore can read ({type(e).__name__}: {e})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise CLIError(f"{path} is not a makemore checkpoint (format {CHECKPOINT_FORMAT})")
    mine = (meta["model"], meta["model_config"], meta["vocab"])
    theirs = (ck.get("model"), ck.get("model_config"), ck.get("vocab"))
    if theirs[:2] != mine[:2]:
        what = f"a {theirs[0]} with {_config_diff(theirs[1], mine[1])}" if theirs[0] == mine[0] else f"a {theirs[0]}"
        raise CLIError(f"{path} is a checkpoint of {what}, but {path.parent / 'run.json'} describes a {mine[0]}: "
                       "the folder mixes two runs; train again with --force, or use the folder the checkpoint came "
                       "from")
    if theirs[2] != mine[2]:
        raise CLIError(f"{path} was trained on another vocabulary ({len(theirs[2] or '')} characters "
                       f"{theirs[2]!r}) than {path.parent / 'run.json'} describes ({len(mine[2])} characters "
                       f"{mine[2]!r})")
    return ck


def _config_diff(a: Any, b: Any) -> str:
    if not isinstance(a, dict) or not isinstance(b, dict):
        return "another config"
    diff = [f"{k}={a.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return ", ".join(diff[:4]) or "the same config"


def build_model(meta: dict[str, Any], seed: int = 0) -> Model:
    return create(meta["model"], generator=torch.Generator().manual_seed(seed), **meta["model_config"])


def load_model(run: Path, which: str = "best") -> tuple[dict[str, Any], Model, Vocab]:
    """The model of a run folder with the weights of best.pt (or last.pt), and its vocabulary."""
    meta = read_run(run)
    ck = load_checkpoint(run / f"{which}.pt", meta)
    model = build_model(meta)
    try:
        model.load_state_dict(ck["weights"])
    except RuntimeError as e:
        raise CLIError(f"{run / (which + '.pt')} does not fit the {meta['model']} of run.json: {e}") from None
    return meta, model, vocab_of(meta)


def vocab_of(meta: dict[str, Any]) -> Vocab:
    return Vocab(meta["vocab"][1:])


def run_words(run: Path, meta: dict[str, Any] | None = None) -> list[str]:
    """The run's copy of its word file; with `meta`, checked to be the file the run was trained on."""
    words = load_words(run / "words.txt")
    if meta is not None and sha256_of(words) != meta["data"]["sha256"]:
        raise CLIError(f"{run / 'words.txt'} changed since the run was trained on it ({meta['data']['words']:,} "
                       f"words then, {len(words):,} now): its train/dev/test split would differ; put the original back "
                       f"or train a new run on it")
    return words


def save_words(run: Path, source: str, words: list[str]) -> None:
    """words.txt: the file as it is when it is one clean word per line, else the words load_words read."""
    text = "".join(w + "\n" for w in words)
    try:
        same = Path(source).read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        same = False
    write_atomically(run / "words.txt", lambda p: p.write_bytes(Path(source).read_bytes()) if same
                     else p.write_text(text, encoding="utf-8"))


def splits_of(meta: dict[str, Any], words: list[str], vocab: Vocab) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    per_position = MODELS[meta["model"]].per_position
    return build_splits(words, vocab, meta["model_config"]["block_size"], meta["train_config"]["seed"],
                        per_position=per_position)
