"""The run folder of `makemore train` and its checkpoints: where every file of a run is read and written.

    run.json    the run's id, the model's name and config, the training config, the vocabulary, the word
                file's fingerprint and that of its train/dev/test split, the step reached and the best dev
                loss so far (JSON, readable; checked against its schema whenever it is read)
    words.txt   a copy of the word file: eval, sample and --resume never depend on where it was
    best.pt     the weights with the lowest finite dev loss seen (below twice a uniform guess's), written
                whenever the dev loss improves
    last.pt     everything to continue exactly (weights, optimiser, minibatch generators, global
                generator, losses), written at every evaluation, at the end and when stopped
    lock        while `makemore train` runs: which process holds the folder (a second train is refused)

Every file is written to a temporary file of its own name and renamed over the old one, so an
interruption (even SIGKILL) never leaves half a file, and two writers never share a temporary file;
the temporary files a killed run left behind are removed when the next train takes the folder. A write
that fails (a full disk, a folder made read-only) leaves the previous file whole and is reported as
`SaveError`, naming the file. Every checkpoint carries the id of the run that wrote it, so one copied in
from another run folder is refused rather than resumed.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shlex
import socket
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mmlib.cli.errors import CLIError
from mmlib.data import build_splits, load_words, split_words
from mmlib.models import MODELS, Model, create
from mmlib.train import TrainConfig
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


RUNTIME_KEYS = ("threads",)
"""train_config keys of run.json that say where a run computes, not what: --resume may change them."""


class SaveError(CLIError):
    """A file of the run folder could not be written; the file it would have replaced is still whole."""

    def __init__(self, path: Path, error: OSError) -> None:
        self.path, self.error = path, error
        super().__init__(f"could not write {path}: {error.strerror or error}")


def sha256_of(words: Sequence[str]) -> str:
    return hashlib.sha256("".join(w + "\n" for w in words).encode()).hexdigest()


def split_sha256(words: Sequence[str], seed: int) -> str:
    """A fingerprint of the train/dev/test split `seed` makes of `words`: which word is in which part."""
    h = hashlib.sha256()
    for part in split_words(list(words), seed):
        h.update(sha256_of(part).encode())
    return h.hexdigest()


def new_run_id() -> str:
    return uuid.uuid4().hex


def quoted(path: Path | str) -> str:
    """A path as a shell reads it back, for the commands the messages suggest (spaces, quotes and all)."""
    return shlex.quote(str(path))


def read_run(run: Path) -> dict[str, Any]:
    """run.json of the run folder `run`, checked to be one of ours and complete."""
    path = run / "run.json"
    if not run.is_dir():
        raise CLIError(f"{run} is not a run folder (it does not exist); train one with: "
                       f"makemore train -i WORDS -o {quoted(run)}")
    if not path.exists():
        raise CLIError(f"{run} holds no run (no run.json); train one with: makemore train -i WORDS -o {quoted(run)}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CLIError(f"{path} is not readable JSON ({e}); the run folder is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
        raise CLIError(f"{path} was not written by makemore (format {RUN_FORMAT})")
    missing = [k for k in RUN_KEYS if k not in meta]
    data = meta.get("data")
    missing += [f"data.{k}" for k in ("words", "sha256") if isinstance(data, dict) and k not in data]
    if missing:
        raise CLIError(f"{path} lacks {', '.join(missing)}: the run folder is damaged; train it again with --force")
    tcfg = meta.get("train_config")
    if isinstance(tcfg, dict) and "steps" in tcfg and "max_steps" not in tcfg:
        tcfg["max_steps"] = tcfg.pop("steps")    # run.json from before TrainConfig.steps became max_steps
    problem = _schema_problem(meta)
    if problem:
        raise CLIError(f"{path}: {problem}; the run folder is damaged (edited by hand?): put the value back, "
                       "or train again with --force")
    return meta


def _whole(v: Any, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _schema_problem(meta: dict[str, Any]) -> str | None:
    """The first key of run.json whose value is not what makemore wrote there, said as 'key must be ...'."""
    model = meta["model"]
    if not isinstance(model, str):
        return f"model must be a model's name ({', '.join(sorted(MODELS))}), got {model!r}"
    if model not in MODELS:
        return f"model {model!r} is not a model this version has ({', '.join(sorted(MODELS))})"
    vocab = meta["vocab"]
    if not (isinstance(vocab, str) and vocab.startswith(".") and len(set(vocab)) == len(vocab) > 1):
        return f"vocab must be the run's characters as one string starting with '.', got {vocab!r}"
    mcfg, tcfg = meta["model_config"], meta["train_config"]
    if not isinstance(mcfg, dict):
        return f"model_config must be the {model}'s settings (an object), got {mcfg!r}"
    if mcfg.get("vocab_size") != len(vocab):
        return f"model_config.vocab_size must be the vocabulary's size, {len(vocab)}, got {mcfg.get('vocab_size')!r}"
    try:
        MODELS[model].Config(**mcfg)
    except (TypeError, ValueError) as e:
        return f"model_config: {e}"
    if not isinstance(tcfg, dict):
        return f"train_config must be the training settings (an object), got {tcfg!r}"
    settings = {k: tuple(v) if k == "betas" and isinstance(v, list) else v
                for k, v in tcfg.items() if k not in RUNTIME_KEYS}
    try:
        TrainConfig(**settings)
    except (TypeError, ValueError) as e:
        return f"train_config: {e}"
    if not _whole(tcfg.get("threads", 1), 1):
        return f"train_config.threads must be a whole number of at least 1, got {tcfg.get('threads')!r}"
    data = meta["data"]
    if not isinstance(data, dict):
        return f"data must describe the word file (an object), got {data!r}"
    if not _whole(data["words"], 1):
        return f"data.words must be the number of words, got {data['words']!r}"
    for key in ("sha256", "splits_sha256"):
        if key in data and not (isinstance(data[key], str) and len(data[key]) == 64):
            return f"data.{key} must be a sha256 digest (64 hex digits), got {data[key]!r}"
    if not _whole(meta["step"]):
        return f"step must be a whole number of steps, got {meta['step']!r}"
    best = meta["best"]
    if best is not None and not (isinstance(best, dict) and _whole(best.get("step"))
                                 and isinstance(best.get("dev"), (int, float)) and not isinstance(best["dev"], bool)):
        return f"best must be null or {{\"step\": N, \"dev\": loss}}, got {best!r}"
    if not isinstance(meta["finished"], bool):
        return f"finished must be true or false, got {meta['finished']!r}"
    for key, low in (("world_size", 1), ("samples", 0), ("n_parameters", 0)):
        if key in meta and not _whole(meta[key], low):
            return f"{key} must be a whole number of at least {low}, got {meta[key]!r}"
    if "id" in meta and not (isinstance(meta["id"], str) and meta["id"]):
        return f"id must be the run's id (a string), got {meta['id']!r}"
    return None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file of this process's own, then rename it over `path`: never half a file.

    The file gets the permissions a plain `open` would give (0666 less the umask), not mkstemp's 0600. Any
    failure (a full disk, a read-only folder) raises `SaveError` naming `path`, and `path` keeps its old
    content; the temporary file is removed where the folder still allows it."""
    tmp: Path | None = None
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        tmp = Path(name)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise SaveError(path, e) from None
    finally:
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:          # a read-only folder: the next train removes it (remove_stale_temporaries)
                pass


def write_run(run: Path, meta: dict[str, Any]) -> None:
    write_atomically(run / "run.json", (json.dumps(meta, indent=2) + "\n").encode("utf-8"))


def remove_stale_temporaries(run: Path) -> list[str]:
    """Delete the temporary files that killed writers of this run folder left (`last.pt.<random>.tmp`, ...).

    Called only while holding the folder's lock, so no live writer of this folder owns one."""
    removed = []
    for name in (*RUN_FILES, LOCK_FILE):
        for tmp in run.glob(f"{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    return removed


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
        try:
            (self.run / LOCK_FILE).write_text(f"makemore train (process {os.getpid()} on {socket.gethostname()})\n",
                                              encoding="utf-8")
            remove_stale_temporaries(self.run)
        except OSError as e:
            self.release()
            raise CLIError(f"cannot write in the run folder {self.run} ({e.strerror or e}); make it writable, or "
                           "choose another -o") from None

    def release(self) -> None:
        """Let the folder go. The lock file is only a name tag: where it cannot be removed (the folder became
        read-only) it stays, and the next train overwrites it; the lock itself goes with the descriptor."""
        if self.fd is not None:
            try:
                (self.run / LOCK_FILE).unlink(missing_ok=True)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None


def checkpoint(meta: dict[str, Any], model: Model, **extra: Any) -> dict[str, Any]:
    """What a .pt file holds: the model's identity (name, config, vocabulary) beside its weights."""
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"format": CHECKPOINT_FORMAT, "run_id": meta.get("id"), "model": meta["model"],
            "model_config": meta["model_config"], "vocab": meta["vocab"], "weights": weights, **extra}


def save(path: Path, obj: dict[str, Any]) -> None:
    """torch.save into memory first, so that a failing disk is a plain OSError (`SaveError`), never a
    half-written zip or torch's own message about stream positions."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomically(path, buffer.getvalue())


def _absent(path: Path, meta: dict[str, Any]) -> CLIError:
    """What to do about a checkpoint the run folder lacks."""
    run = path.parent
    if path.name == "last.pt":
        return CLIError(f"{path} does not exist: the run stopped before it saved anything to resume from; start it "
                        f"again with: makemore train -i WORDS -o {quoted(run)} --force")
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
    if "id" in meta and ck.get("run_id") != meta["id"]:     # run.json from before run ids: nothing to compare
        owner = f"run {ck['run_id'][:8]}" if ck.get("run_id") else "a run without an id"
        raise CLIError(f"{path} belongs to another run ({owner}; {path.parent / 'run.json'} is run "
                       f"{meta['id'][:8]}): it was copied in from another folder, and using it would replace this "
                       f"run's work; nothing was loaded: put back this run's own {path.name}, or train again with "
                       "--force")
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
    if not (run / "words.txt").is_file():
        raise CLIError(f"{run / 'words.txt'} is missing: the run keeps the words it was trained on there; put the "
                       "file back, or train again with --force")
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
    write_atomically(run / "words.txt", Path(source).read_bytes() if same else text.encode("utf-8"))


def splits_of(run: Path, meta: dict[str, Any], words: list[str],
              vocab: Vocab) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The run's train/dev/test datasets, checked to be the split it was trained on (run.json's seed makes it)."""
    check_split(run, meta, words)
    per_position = MODELS[meta["model"]].per_position
    return build_splits(words, vocab, meta["model_config"]["block_size"], meta["train_config"]["seed"],
                        per_position=per_position)


def check_split(run: Path, meta: dict[str, Any], words: list[str]) -> None:
    """Refuse a run.json whose seed no longer splits `words` as the run's training did."""
    seed = meta["train_config"]["seed"]
    recorded = meta["data"].get("splits_sha256")      # absent in run.json from before it was recorded
    if recorded is not None and split_sha256(words, seed) != recorded:
        raise CLIError(f"{run / 'run.json'}: train_config.seed {seed} no longer makes the train/dev/test split the "
                       "run was trained on (was the seed edited?): its losses would be measured on other words, "
                       "training words among them; put the run's seed back")
