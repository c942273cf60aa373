"""makemore from the command line: any word list in, more of it out (`python -m mmlib`, or `makemore`).

    makemore train  -i words.txt -o run/ --model transformer    # train; the best weights land in run/
    makemore sample -o run/ -n 20 --temperature 0.8 --prefix ka  # more words like the ones in words.txt
    makemore eval   -o run/                                      # the loss on train, dev and test
    torchrun --nproc_per_node 4 -m mmlib train ...               # the same training on 4 processes (DDP)

Every model of `mmlib.models` trains with the one trainer, `mmlib.train`; every model setting is a
flag made from the model's config dataclass (its comment is the flag's help), every training
setting one made from `TrainConfig`, and every value is checked by `mmlib.validate`, as in the lessons.

A run folder holds everything a run needs, so it can be sampled, evaluated or continued later:

    run.json    the model's name and config, the training config, the vocabulary, the word file's
                fingerprint, the step reached and the best dev loss so far (JSON, readable)
    words.txt   a copy of the word file: eval, sample and --resume never depend on where it was
    best.pt     the weights with the lowest dev loss seen, written whenever the dev loss improves
    last.pt     everything to continue exactly (weights, optimiser, minibatch generator, losses),
                written at every evaluation, at the end and on Ctrl-C

Bad input (a missing, empty, binary or non-UTF-8 word file, characters the saved vocabulary lacks, a
checkpoint of another model, a folder that holds another run, nonsense numbers, a device that is not
there) gets one line on stderr and a non-zero exit; nothing already saved is overwritten by mistake.
Set MMLIB_TRACEBACK=1 to see the full traceback behind such a line.

Deliberately left out (makemore.py leaves them out too): tokenizers other than characters, data
loaders (a word list fits in memory many times over), mixed precision, gradient accumulation.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import json
import os
import re
import shutil
import signal
import sys
import threading
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mmlib.data import DataError, build_dataset, build_sequences, build_splits, load_words, sequence_length
from mmlib.models import MODELS, Model, create
from mmlib.train import TrainConfig, TrainingDiverged, TrainState, evaluate, train
from mmlib.validate import choice, non_negative_int, number, positive_int
from mmlib.vocab import Vocab, VocabError

RUN_FORMAT = "mmlib.run/1"
CHECKPOINT_FORMAT = "mmlib.checkpoint/1"
RUN_FILES = ("run.json", "words.txt", "best.pt", "last.pt")
"""Everything `makemore train` writes into a run folder (and all that --force may replace)."""

TRAIN_FLAGS = {"steps": "max-steps"}
"""TrainConfig fields whose flag is not simply the field's name (makemore.py's --max-steps)."""
TRAIN_HIDDEN = ("progress", "live_plot")
"""TrainConfig fields the command line sets itself (the bar is on in a terminal; no notebook plots)."""
RUNTIME = ("device", "threads")
"""Training settings --resume may change: where the run computes, not what it computes."""

COMMON = {"optimizer": "adamw", "schedule": "cosine", "eval_every": 500, "eval_rows": None, "lr_min": 1e-4,
          "weight_decay": 0.01, "grad_clip": 1.0}
RECIPES: dict[str, dict[str, Any]] = {
    # The command line's default recipe per model: AdamW, a short warm-up and a cosine decay, on
    # batches larger than the lectures' 32 (benchmarks/recipes.py measures them against the lectures).
    "bigram": {**COMMON, "steps": 2_000, "batch_size": 512, "lr": 0.1, "warmup": 0, "eval_every": 200},
    "mlp": {**COMMON, "steps": 3_000, "batch_size": 512, "lr": 2e-2, "warmup": 200},
    "wavenet": {**COMMON, "steps": 3_000, "batch_size": 512, "lr": 2e-2, "warmup": 200},
    "rnn": {**COMMON, "steps": 6_000, "batch_size": 128, "lr": 3e-3, "warmup": 200},
    "gru": {**COMMON, "steps": 6_000, "batch_size": 128, "lr": 3e-3, "warmup": 200},
    # lesson 06's recipe for its transformer (with dropout 0.1, below): dev 1.9521 in 191 s there
    "transformer": {**COMMON, "steps": 4_500, "batch_size": 128, "lr": 5e-3, "warmup": 200, "weight_decay": 0.3,
                    "lr_min": 0.0, "grad_clip": None},
}
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    # Where the command line's model differs from the config's default: lesson 03's initialisation
    # for the MLP (the config keeps lesson 02's, which the lesson improves on by hand), and dropout
    # for the transformer, which overfits a word list of 30,000 names without it.
    "mlp": {"w1_scale": "kaiming", "b1_scale": 0.01, "w2_scale": 0.1, "b2_scale": 0.0},
    "transformer": {"dropout": 0.1},
}


class CLIError(Exception):
    """A problem with what was asked for, said in one line."""


class Interrupted(Exception):
    """Ctrl-C arrived; raised at the next step boundary so the run stops in a state it can resume from."""


# ---- flags made from the config dataclasses -----------------------------------------------------


def field_comments(cls: type) -> dict[str, str]:
    """The comment after each field of a config dataclass (and its continuation lines), by field name."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        last, column = None, -1
        for line in lines:
            m = re.match(r"\s+(\w+)\s*:[^=#]+=[^#]*#\s?(.*)$", line)
            if m:
                last, column = m.group(1), line.index("#")
                comments[last] = m.group(2).strip()
                continue
            cont = re.match(r"\s+#\s?(.*)$", line)
            if cont and last and line.index("#") == column:
                comments[last] += " " + cont.group(1).strip()
            else:
                last = None
    return comments


def flag_of(name: str) -> str:
    return "--" + TRAIN_FLAGS.get(name, name).replace("_", "-")


def parse_value(flag: str, text: str, hint: Any) -> Any:
    """`text` from the command line as the type the config field is annotated with."""
    if typing.get_origin(hint) is tuple:
        try:
            return tuple(float(p) for p in text.split(","))
        except ValueError:
            raise CLIError(f"{flag} must be numbers separated by commas, such as 0.9,0.99, got {text!r}") from None
    kinds = typing.get_args(hint) or (hint,)
    if text.lower() == "none" and type(None) in kinds:
        return None
    if bool in kinds:
        if text.lower() in ("true", "yes", "on", "1"):
            return True
        if text.lower() in ("false", "no", "off", "0"):
            return False
        raise CLIError(f"{flag} must be true or false, got {text!r}")
    if int in kinds and float not in kinds:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise CLIError(f"{flag} must be a whole number, got {text!r}") from None
    if float in kinds:
        try:
            return float(text)
        except ValueError:
            if str in kinds:
                return text
            raise CLIError(f"{flag} must be a number, got {text!r}") from None
    return text


def model_flags() -> dict[str, dict[str, tuple[str, Any]]]:
    """field -> {model name: (comment, CLI default)} for every model setting except vocab_size."""
    table: dict[str, dict[str, tuple[str, Any]]] = {}
    for name, cls in sorted(MODELS.items()):
        comments = field_comments(cls.Config)
        for f in dataclasses.fields(cls.Config):
            if f.name == "vocab_size":
                continue
            default = MODEL_DEFAULTS.get(name, {}).get(f.name, f.default)
            if f.name == "block_size" and cls.per_position:
                default = "longest word + 1"
            table.setdefault(f.name, {})[name] = (comments.get(f.name, ""), default)
    return table


def _model_help(per_model: dict[str, tuple[str, Any]]) -> str:
    """One sentence per distinct comment: the models it applies to, the comment, their defaults."""
    by_comment: dict[str, list[tuple[str, Any]]] = {}
    for model, (comment, default) in per_model.items():
        by_comment.setdefault(comment, []).append((model, default))
    parts = []
    for comment, models in by_comment.items():
        defaults = {str(d) for _, d in models}
        default = next(iter(defaults)) if len(defaults) == 1 else ", ".join(f"{m} {d}" for m, d in models)
        parts.append(f"{', '.join(m for m, _ in models)}: {comment} (default: {default})")
    return "; ".join(parts)


TRAIN_HELP = {"seed": "seeds the whole run: the train/dev/test split, the model's initialisation and the minibatches "
                     "(process r of a torchrun draws with seed + r)",
              "batch_size": "rows of the training split per step (examples for window models, words for sequence "
                            "models; per process under torchrun)"}
"""Where the command line does more with a training setting than TrainConfig's comment says."""


def _train_help(name: str, comment: str) -> str:
    comment = TRAIN_HELP.get(name, comment)
    defaults = {model: recipe.get(name) for model, recipe in RECIPES.items() if name in recipe}
    if defaults and len(set(map(str, defaults.values()))) == 1:
        return f"{comment} (default: {next(iter(defaults.values()))})"
    if defaults:
        return f"{comment} (default: " + ", ".join(f"{m} {v}" for m, v in defaults.items()) + ")"
    default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)
    return f"{comment} (default: {default})"


# ---- the run folder -----------------------------------------------------------------------------


def sha256_of(words: Sequence[str]) -> str:
    return hashlib.sha256("".join(w + "\n" for w in words).encode()).hexdigest()


def read_run(run: Path) -> dict[str, Any]:
    """run.json of the run folder `run`, checked to be one of ours."""
    path = run / "run.json"
    if not run.is_dir():
        raise CLIError(f"{run} is not a run folder (it does not exist); train one with: makemore train -i WORDS -o {run}")
    if not path.exists():
        raise CLIError(f"{run} holds no run (no run.json); train one with: makemore train -i WORDS -o {run}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CLIError(f"{path} is not readable JSON ({e}); the run folder is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != RUN_FORMAT:
        raise CLIError(f"{path} was not written by makemore (format {RUN_FORMAT})")
    if meta.get("model") not in MODELS:
        raise CLIError(f"{path} names the model {meta.get('model')!r}, which this version does not have")
    return meta


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary file, then rename it over `path`: an interruption never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_run(run: Path, meta: dict[str, Any]) -> None:
    write_atomically(run / "run.json", lambda p: p.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8"))


def check_out_dir(run: Path, *, force: bool) -> None:
    """Refuse a folder that holds something train would overwrite: another run (unless --force) or other files."""
    if run.exists() and not run.is_dir():
        raise CLIError(f"{run} is a file; -o needs a folder for the run (a new or empty one)")
    if not run.exists():
        return
    present = sorted(p.name for p in run.iterdir())
    foreign = [n for n in present if n not in RUN_FILES and not n.endswith(".tmp")]
    if foreign:
        raise CLIError(f"{run} holds files that are not a makemore run ({', '.join(foreign[:3])}"
                       f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty folder for -o")
    if present and not force:
        what = ""
        try:
            meta = read_run(run)
            what = f" ({meta['model']}, step {meta.get('step', 0):,} of {meta['train_config']['steps']:,})"
        except CLIError:
            pass
        raise CLIError(f"{run} holds a run already{what}; continue it with --resume, or train a new one over it "
                       "with --force")


def checkpoint(meta: dict[str, Any], model: Model, **extra: Any) -> dict[str, Any]:
    """What a .pt file holds: the model's identity (name, config, vocabulary) beside its weights."""
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"format": CHECKPOINT_FORMAT, "model": meta["model"], "model_config": meta["model_config"],
            "vocab": meta["vocab"], "weights": weights, **extra}


def save(path: Path, obj: dict[str, Any]) -> None:
    write_atomically(path, lambda p: torch.save(obj, p))


def load_checkpoint(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """A .pt file of the run `meta` describes; a clear line for one of another model or vocabulary."""
    if not path.exists():
        hint = "; use --checkpoint last" if path.name == "best.pt" and path.with_name("last.pt").exists() else ""
        raise CLIError(f"{path} does not exist: the run stopped before its first evaluation{hint}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged or foreign file
        raise CLIError(f"{path} is not a checkpoint makemore can read ({type(e).__name__}: {e})") from None
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise CLIError(f"{path} is not a makemore checkpoint (format {CHECKPOINT_FORMAT})")
    mine = (meta["model"], meta["model_config"], meta["vocab"])
    theirs = (ck.get("model"), ck.get("model_config"), ck.get("vocab"))
    if theirs != mine:
        if theirs[0] != mine[0] or theirs[1] != mine[1]:
            what = f"a {theirs[0]} with {_config_diff(theirs[1], mine[1])}" if theirs[0] == mine[0] else f"a {theirs[0]}"
            raise CLIError(f"{path} is a checkpoint of {what}, but {path.parent / 'run.json'} describes a {mine[0]}: "
                           "the folder mixes two runs; train again with --force, or use the folder the checkpoint came from")
        raise CLIError(f"{path} was trained on another vocabulary ({len(theirs[2] or '')} characters "
                       f"{theirs[2]!r}) than {path.parent / 'run.json'} describes ({len(mine[2])} characters {mine[2]!r})")
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


def run_words(run: Path) -> list[str]:
    return load_words(run / "words.txt")


def splits_of(meta: dict[str, Any], words: list[str], vocab: Vocab) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    per_position = MODELS[meta["model"]].per_position
    return build_splits(words, vocab, meta["model_config"]["block_size"], meta["train_config"]["seed"],
                        per_position=per_position)


# ---- across processes: torchrun and DistributedDataParallel -------------------------------------


@dataclass
class Distributed:
    """This process's place among the `torchrun` processes (None outside torchrun: one process)."""

    rank: int
    world: int
    local_rank: int

    @classmethod
    def from_env(cls) -> "Distributed | None":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))

    def start(self, device: str) -> None:
        import torch.distributed as dist

        if device == "cuda":
            if torch.cuda.device_count() <= self.local_rank:
                raise CLIError(f"process {self.rank} wants GPU {self.local_rank}, but PyTorch sees "
                               f"{torch.cuda.device_count()} GPUs here; start fewer processes per node")
            torch.cuda.set_device(self.local_rank)
        dist.init_process_group("nccl" if device == "cuda" else "gloo")

    def wrap(self, model: Model, device: str) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[self.local_rank] if device == "cuda" else None)

    def any(self, flag: bool) -> bool:
        """True on every process when `flag` is True on any (so all stop at the same step)."""
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=_dist_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, obj: Any) -> list[Any]:
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def stop(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _dist_device() -> str:
    import torch.distributed as dist

    return "cuda" if dist.get_backend() == "nccl" else "cpu"


def parameters_digest(model: torch.nn.Module) -> str:
    """A fingerprint of every parameter, to check that all processes hold the same model.

    Buffers are left out: BatchNorm's running statistics follow each process's own batches until
    DDP copies process 0's over them at the next forward pass."""
    h = hashlib.sha256()
    for k, v in model.named_parameters():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ---- makemore train -----------------------------------------------------------------------------


class Stopper:
    """Turns the first Ctrl-C into a request to stop at the next step boundary (the second one stops at once)."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = None

    def __enter__(self) -> "Stopper":
        if threading.current_thread() is threading.main_thread():   # Python delivers signals there only
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def check(self, step: int, dist: Distributed | None) -> None:
        """Called before each step (the trainer's before_step): stop here when asked, on every process alike.

        Not on_step: that runs after the forward pass, which has already moved BatchNorm's running
        statistics, so a run stopped there and resumed would move them twice."""
        requested = dist.any(self.requested) if dist is not None else self.requested
        if requested:
            raise Interrupted


def _explicit(args: argparse.Namespace, names: Sequence[str]) -> dict[str, str]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _configs(args: argparse.Namespace, model_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model and training settings asked for: the command line's defaults, then the flags given."""
    cls = MODELS[model_name]
    hints = typing.get_type_hints(cls.Config)
    model_fields = {f.name for f in dataclasses.fields(cls.Config)} - {"vocab_size"}
    given = _explicit(args, sorted(model_flags()))
    wrong = sorted(set(given) - model_fields)
    if wrong:
        raise CLIError(f"{', '.join(flag_of(n) for n in wrong)} is not a setting of the {model_name} model; its "
                       f"settings are {', '.join(flag_of(n) for n in sorted(model_fields))}")
    mcfg = {**MODEL_DEFAULTS.get(model_name, {}),
            **{n: parse_value(flag_of(n), v, hints[n]) for n, v in given.items()}}
    thints = typing.get_type_hints(TrainConfig)
    given_train = _explicit(args, _train_fields())
    tcfg = {**RECIPES[model_name], **{n: parse_value(flag_of(n), v, thints[n]) for n, v in given_train.items()}}
    if tcfg["optimizer"] == "sgd" and "weight_decay" not in given_train:
        tcfg["weight_decay"] = 0.0      # the recipe's weight decay is AdamW's; plain SGD has none
    return mcfg, tcfg


def _train_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in TRAIN_HIDDEN]


def _checked(make: Callable[[], Any], flags: dict[str, str]) -> Any:
    """`make()`, with a config's message about a field renamed to the flag that sets it."""
    try:
        return make()
    except (TypeError, ValueError) as e:
        msg = str(e)
        for name, flag in sorted(flags.items(), key=lambda kv: -len(kv[0])):
            renamed = re.sub(rf"(?<![\w-]){re.escape(name)}(?= must)", flag, msg, count=1)
            if renamed != msg:
                msg = renamed
                break
        raise CLIError(msg) from None


def train_config(tcfg: dict[str, Any], **runtime: Any) -> TrainConfig:
    values = {k: tuple(v) if k == "betas" else v for k, v in tcfg.items()}
    return _checked(lambda: TrainConfig(**{**values, **runtime}), {n: flag_of(n) for n in _train_fields()})


def cmd_train(args: argparse.Namespace) -> int:
    run = Path(args.out_dir)
    dist = Distributed.from_env()
    rank0 = dist is None or dist.rank == 0
    say = _printer(rank0)
    if args.resume and args.force:
        raise CLIError("--resume continues the run in the folder and --force replaces it: give one of them")
    n_samples = _checked(lambda: non_negative_int("--samples", _int_arg("--samples", args.samples)), {})
    if args.input is None and not args.resume:
        raise CLIError("-i WORDS.txt is needed: the word file to train on (UTF-8, one word per line)")
    if args.resume:
        meta = read_run(run)
        model_name = meta["model"]
        if args.model is not None and args.model != model_name:
            raise CLIError(f"{run} holds a {model_name} run; --resume continues it, so --model {args.model} "
                           "does not fit (use another -o, or --force to replace it)")
        _refuse_changes(args, meta)
        mcfg, tcfg = meta["model_config"], meta["train_config"]
    else:
        check_out_dir(run, force=args.force)
        model_name = args.model or "transformer"
        mcfg, tcfg = _configs(args, model_name)
    runtime = {k: parse_value(flag_of(k), v, typing.get_type_hints(TrainConfig)[k])
               for k, v in _explicit(args, RUNTIME).items()}
    cfg = train_config(tcfg, **runtime, progress=False if not rank0 or args.no_progress else None)
    if cfg.device != "cpu":
        from mmlib.runtime import pick_device
        pick_device(cfg.device)          # an absent GPU: one line now, before any work

    input_path = args.input if args.input is not None else str(run / "words.txt")
    words = load_words(input_path)
    if args.resume and sha256_of(words) != meta["data"]["sha256"]:
        raise CLIError(f"{input_path} is not the word file {run} was trained on ({meta['data']['words']:,} words, "
                       f"sha256 {meta['data']['sha256'][:12]}...); --resume needs the same file")
    if args.resume:
        vocab = vocab_of(meta)
    else:
        vocab = Vocab.from_words(words)
        cls = MODELS[model_name]
        if cls.per_position and "block_size" not in mcfg:
            mcfg["block_size"] = sequence_length(words)
        mcfg = _checked(lambda: create(model_name, vocab_size=len(vocab), **mcfg).config.to_dict(),
                        {f.name: flag_of(f.name) for f in dataclasses.fields(cls.Config)})
        meta = {"format": RUN_FORMAT, "model": model_name, "model_config": mcfg,
                "train_config": {k: v for k, v in cfg.to_dict().items() if k not in TRAIN_HIDDEN + RUNTIME},
                "vocab": "".join(vocab.itos),
                "data": {"source": str(Path(input_path).resolve()), "words": len(words), "sha256": sha256_of(words)},
                "world_size": 1 if dist is None else dist.world, "step": 0, "best": None, "finished": False}
    world = 1 if dist is None else dist.world
    if args.resume and meta.get("world_size", 1) != world:
        raise CLIError(f"{run} was trained on {meta.get('world_size', 1)} processes; resume it on as many "
                       f"(this is {world}): each process draws its own minibatches")
    splits = splits_of(meta, words, vocab)
    splits.pop("test")   # training watches train and dev only; `makemore eval` reports test

    if dist is not None:
        dist.start(cfg.device)
    try:
        return _train(run, meta, words, vocab, splits, cfg, dist, say, resume=args.resume,
                      n_samples=n_samples, input_path=input_path)
    finally:
        if dist is not None:
            dist.stop()


def _refuse_changes(args: argparse.Namespace, meta: dict[str, Any]) -> None:
    """--resume continues with the run's own settings; a flag that would change them is refused."""
    hints = typing.get_type_hints(TrainConfig)
    for n, v in _explicit(args, [f for f in _train_fields() if f not in RUNTIME]).items():
        want = parse_value(flag_of(n), v, hints[n])
        have = meta["train_config"].get(n)
        if (list(want) if isinstance(want, tuple) else want) != have:
            raise CLIError(f"{flag_of(n)} {v} differs from the run's {have!r}; --resume continues the run with its "
                           "own settings (drop the flag, or start a new run with --force or another -o)")
    cls = MODELS[meta["model"]]
    mhints = typing.get_type_hints(cls.Config)
    for n, v in _explicit(args, sorted(model_flags())).items():
        if n not in mhints or parse_value(flag_of(n), v, mhints[n]) != meta["model_config"].get(n):
            raise CLIError(f"{flag_of(n)} {v} differs from the run's model ({meta['model_config'].get(n)!r}); "
                           "--resume continues the run's own model")


def _printer(rank0: bool) -> Callable[[str], None]:
    from tqdm.auto import tqdm

    def say(line: str) -> None:
        if rank0:
            tqdm.write(line, file=sys.stdout)
            sys.stdout.flush()

    return say


def _train(run: Path, meta: dict[str, Any], words: list[str], vocab: Vocab, splits, cfg: TrainConfig,
           dist: Distributed | None, say: Callable[[str], None], *, resume: bool, n_samples: int,
           input_path: str) -> int:
    rank0 = dist is None or dist.rank == 0
    model = build_model(meta, seed=cfg.seed)
    rank = 0 if dist is None else dist.rank
    if resume:
        last = load_checkpoint(run / "last.pt", meta)
        model.load_state_dict(last["weights"])
        saved = last["state"]
        state = TrainState.from_state_dict({**saved, "generator": last["generators"][rank]})
        torch.set_rng_state(last["rng"])
        best = last["best"]
        if state.step >= cfg.steps:
            say(f"{run} finished at step {state.step:,} already (best dev loss {best['dev']:.4f}); nothing to resume")
            return 0
        say(f"resuming {meta['model']} at step {state.step:,} of {cfg.steps:,}")
    else:
        state = TrainState(torch.Generator().manual_seed(cfg.seed + rank))   # each process its own minibatches
        best = None
        if rank0:
            run.mkdir(parents=True, exist_ok=True)
            for name in RUN_FILES:
                (run / name).unlink(missing_ok=True)
            # words.txt: the file as it is when it is one clean word per line, else the words load_words read
            if _same_text(input_path, words):
                shutil.copyfile(input_path, run / "words.txt")
            else:
                (run / "words.txt").write_text("".join(w + "\n" for w in words), encoding="utf-8")
            meta["n_parameters"] = model.n_parameters()
            write_run(run, meta)
    n = model.n_parameters()
    world = 1 if dist is None else dist.world
    per_step = f"{world} processes x {cfg.batch_size}" if world > 1 else f"{cfg.batch_size}"
    say(f"{meta['model']}: {n:,} parameters, {len(vocab)} characters; {len(words):,} words "
        f"({', '.join(f'{k} {len(X):,}' for k, (X, _) in splits.items())} examples); "
        f"{cfg.steps:,} steps of {per_step} examples, {cfg.optimizer} lr {cfg.lr:g}")

    from mmlib.runtime import pick_device

    device = pick_device(cfg.device)
    model.to(device)
    net: torch.nn.Module = model if dist is None else dist.wrap(model, cfg.device)
    known = set(words)
    g_samples = torch.Generator().manual_seed(cfg.seed + 1)
    box = {"best": best}

    def save_last() -> None:
        generators = [state.generator.get_state()]
        if dist is not None:
            generators = dist.gather(state.generator.get_state())
        if rank0:
            save(run / "last.pt", checkpoint(meta, model, state=state.state_dict(), generators=generators,
                                             rng=torch.get_rng_state(), best=box["best"]))
            meta["step"] = state.step
            meta["best"] = box["best"]
            meta["finished"] = state.step >= cfg.steps
            write_run(run, meta)

    def on_eval(step: int, losses: dict[str, float]) -> None:
        if dist is not None:
            digests = dist.gather(parameters_digest(model))
            if len(set(digests)) != 1:
                raise CLIError(f"the {world} processes hold different parameters at step {step:,}: DDP lost sync")
        improved = box["best"] is None or losses["dev"] < box["best"]["dev"]
        line = f"step {step:,}/{cfg.steps:,} | " + " | ".join(f"{k} {v:.4f}" for k, v in losses.items())
        if improved:
            box["best"] = {"step": step, "dev": losses["dev"]}
            if rank0:
                save(run / "best.pt", checkpoint(meta, model, step=step, losses=losses))
            line += " | best so far, saved"
        save_last()
        say(line)
        if n_samples and rank0:
            drawn = sample_words_of(model, vocab, n_samples, g_samples)
            new = [w for w in drawn if w not in known]
            say(f"  samples ({len(new)}/{len(drawn)} new, marked *): "
                + " | ".join(w + ("*" if w not in known else "") for w in drawn))

    stopper = Stopper()
    try:
        with stopper:
            result = train(net, splits, cfg, state=state, before_step=lambda step: stopper.check(step, dist),
                           on_eval=on_eval)
    except Interrupted:
        save_last()
        say(f"interrupted at step {state.step:,}: saved {run / 'last.pt'}; continue with: "
            f"makemore train -o {run} --resume")
        return 130
    except TrainingDiverged as e:
        kept = f"; the best weights so far are in {run / 'best.pt'}" if box["best"] else ""
        raise CLIError(f"{e}{kept}") from None
    if dist is not None:
        say(f"{world} processes agree on the parameters (sha256 {parameters_digest(model)[:16]})")
    b = box["best"]
    say(f"done in {result.seconds:.1f} s ({result.steps_per_second:.0f} steps/s): best dev loss {b['dev']:.4f} "
        f"at step {b['step']:,}, saved in {run / 'best.pt'}")
    return 0


def _same_text(path: str, words: list[str]) -> bool:
    """Whether the word file is already one clean word per line (then it is copied as it is)."""
    try:
        return Path(path).read_text(encoding="utf-8") == "".join(w + "\n" for w in words)
    except (OSError, UnicodeDecodeError):
        return False


def sample_words_of(model: Model, vocab: Vocab, n: int, g: torch.Generator, **kw: Any) -> list[str]:
    from mmlib.sample import sample_words

    return sample_words(model, vocab, n, g=g, **kw)


# ---- makemore sample / eval ---------------------------------------------------------------------


def cmd_sample(args: argparse.Namespace) -> int:
    run = Path(args.out_dir)
    n = _checked(lambda: positive_int("-n", _int_arg("-n", args.n)), {})
    temperature = _checked(lambda: number("--temperature", _float_arg("--temperature", args.temperature), 0, None,
                                          low_open=True), {})
    top_k = None if args.top_k is None else _checked(lambda: positive_int("--top-k", _int_arg("--top-k", args.top_k)), {})
    seed = int.from_bytes(os.urandom(4), "little") if args.seed is None else _int_arg("--seed", args.seed)
    device = _device(args.device)
    meta, model, vocab = load_model(run, args.checkpoint)
    model.to(device)
    words = _checked(lambda: sample_words_of(model, vocab, n, torch.Generator().manual_seed(seed),
                                             temperature=temperature, top_k=top_k, prefix=args.prefix,
                                             max_len=None if args.max_len is None else _int_arg("--max-len", args.max_len)),
                     {"max_len": "--max-len", "prefix": "--prefix"})
    known = set(run_words(run)) if (run / "words.txt").exists() else None
    for w in words:
        print(w)
    sys.stdout.flush()
    if known is not None:
        new = sum(w not in known for w in words)
        print(f"{n} words from {run} ({meta['model']}, {args.checkpoint}.pt), {new} new (not in the word file); "
              f"seed {seed}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    run = Path(args.out_dir)
    device = _device(args.device)
    meta, model, vocab = load_model(run, args.checkpoint)
    model.to(device)
    block = meta["model_config"]["block_size"]
    if args.input:
        words = load_words(args.input)
        build = build_sequences if MODELS[meta["model"]].per_position else build_dataset
        try:
            X, Y = build(words, vocab, block)
        except VocabError as e:
            raise CLIError(f"{args.input}: {e} (the run's vocabulary is fixed; train a new run on this file)") from None
        print(f"{args.input}: {len(words):,} words, loss {evaluate(model, X, Y):.4f}")
        return 0
    splits = splits_of(meta, run_words(run), vocab)
    for name, (X, Y) in splits.items():
        print(f"{name:5s} {evaluate(model, X, Y):.4f}  ({len(X):,} examples)")
    return 0


def _int_arg(flag: str, text: Any) -> int:
    return parse_value(flag, str(text), int)


def _float_arg(flag: str, text: Any) -> float:
    return parse_value(flag, str(text), float)


def _device(name: str) -> torch.device:
    from mmlib.runtime import DEVICES, pick_device

    _checked(lambda: choice("--device", name, DEVICES), {})
    return pick_device(name)


# ---- the parser ---------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and says where the help is)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser() -> Parser:
    p = Parser(prog="makemore", description="Train character-level models on any word list and sample more "
               "words like it (the makemore course's library, mmlib, from the command line).",
               epilog="Each command has its own --help, e.g. makemore train --help.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="{train,sample,eval}")

    t = sub.add_parser("train", help="train a model on a word file; the best checkpoint lands in the run folder",
                       description="Train a model on a word file (UTF-8, one word per line). Evaluates every "
                       "--eval-every steps, prints samples (new words, not in the file, marked *), keeps the "
                       "weights with the best dev loss in RUN/best.pt and everything to continue in RUN/last.pt. "
                       "Ctrl-C stops at the next step and saves. Under torchrun, trains with "
                       "DistributedDataParallel (each process draws its own minibatches; process 0 writes).",
                       )
    t.add_argument("-i", "--input", default=None, metavar="WORDS.txt",
                   help="the word file: UTF-8 text, one word per line (e.g. data/names.txt, data/cities.txt); "
                   "with --resume it may be left out (the run's copy, RUN/words.txt, is used)")
    t.add_argument("-o", "--out-dir", required=True, metavar="RUN",
                   help="the run folder: created if absent; one holding another run is refused unless --resume or --force")
    t.add_argument("--model", choices=sorted(MODELS), default=None,
                   help="which model to train (default: transformer)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in RUN exactly where it stopped, with its own settings (needs the same word file)")
    t.add_argument("--force", action="store_true", help="replace the run in RUN with a new one (its files are deleted)")
    t.add_argument("--samples", default="10", metavar="N",
                   help="words to sample and print at every evaluation; 0: none (default: 10)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (it is off anyway when CI is set)")

    m = t.add_argument_group("model settings", "Made from the models' config dataclasses; each applies to the "
                             "models its help names (vocab_size always comes from the word file). The MLP's "
                             "--*-scale flags multiply its N(0, 1) initial draws of the tensor named, as in "
                             "lessons 02-03. true/false for yes-or-no settings.")
    for name, per_model in model_flags().items():
        m.add_argument(flag_of(name), dest=name, default=None, metavar="X", help=_model_help(per_model))
    tr = t.add_argument_group("training settings", "Made from mmlib.train.TrainConfig; the defaults are the "
                              "command line's fast recipe for the chosen model.")
    comments = field_comments(TrainConfig)
    for name in _train_fields():
        tr.add_argument(flag_of(name), dest=name, default=None, metavar="X", help=_train_help(name, comments.get(name, "")))

    s = sub.add_parser("sample", help="sample words from a trained run",
                       description="Sample words from a trained run, one per line on stdout (how many are new, "
                       "not in the word file, goes to stderr).")
    s.add_argument("-o", "--out-dir", required=True, metavar="RUN", help="the run folder makemore train wrote")
    s.add_argument("-n", default="20", metavar="N", help="how many words (default: 20)")
    s.add_argument("--temperature", default="1.0", metavar="T",
                   help="divides the logits: below 1 safer, more common words; above 1 wilder ones (default: 1.0)")
    s.add_argument("--top-k", default=None, metavar="K", help="draw each character from the K most likely only (default: all)")
    s.add_argument("--prefix", default="", help="every word starts with these characters (default: none)")
    s.add_argument("--seed", default=None, metavar="S", help="seed of the draws, to repeat them (default: a new one, printed)")
    s.add_argument("--max-len", default=None, metavar="L",
                   help="stop words at L characters (default: 50, or what a sequence model reads)")
    s.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best.pt (lowest dev loss) or last.pt (where training stopped) (default: best)")
    s.add_argument("--device", default="cpu", help="cpu, cuda or mps (default: cpu)")

    e = sub.add_parser("eval", help="the loss of a trained run on train, dev and test (or on another word file)",
                       description="Print the loss of a trained run on each split of its word file (the same "
                       "split training used), or on all words of another file with -i.")
    e.add_argument("-o", "--out-dir", required=True, metavar="RUN", help="the run folder makemore train wrote")
    e.add_argument("-i", "--input", default=None, metavar="WORDS.txt",
                   help="evaluate on every word of this file instead (its characters must be in the run's vocabulary)")
    e.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best.pt (lowest dev loss) or last.pt (where training stopped) (default: best)")
    e.add_argument("--device", default="cpu", help="cpu, cuda or mps (default: cpu)")
    return p


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit status (0 done, 1 refused or failed, 2 bad usage, 130 interrupted)."""
    args = make_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (CLIError, DataError, VocabError, ValueError, RuntimeError, OSError) as e:
        if os.environ.get("MMLIB_TRACEBACK"):
            raise
        print(f"makemore {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"makemore {args.command}: interrupted", file=sys.stderr)
        return 130
