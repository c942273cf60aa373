"""The command line's parser: `makemore train`'s flags made from the config dataclasses (one per typed field,
its comment as the help), and the flags of `sample` and `eval`.

Plain argparse: each field's type hint (`typing.get_type_hints`) picks the converter of its flag, and the
comment after the field (read with `tokenize`, as makemore's `ModelConfig` is documented) is its help.
The libraries that do this (tyro, simple-parsing, jsonargparse) bring three to five dependencies,
print their own multi-line error boxes and make one flag per field of one dataclass, while a model
flag here serves every model that has the field, with each model's default in its help.

A value of the wrong type is refused as the flag is read ("--max-steps must be a whole number, got
'lots'"); the configs check the range and name their field, which `renamed` turns into the flag.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import typing
from collections.abc import Callable, Iterable
from types import NoneType, UnionType
from typing import Any

from mmlib.cli.recipes import RECIPES
from mmlib.cli.runs import CLIError
from mmlib.models import MODELS
from mmlib.train import TrainConfig

TRAIN_HIDDEN = ("progress", "live_plot")
"""TrainConfig fields the command line sets itself (the bar is on in a terminal; no notebook plots)."""
TRAIN_HELP = {"seed": "seeds the whole run: the train/dev/test split, the model's initialisation, dropout and the "
                      "minibatches (process r of a torchrun draws its minibatches with seed + r)",
              "batch_size": "rows of the training split per step (examples for window models, words for sequence "
                            "models; per process under torchrun)",
              "threads": "PyTorch's CPU threads (default: as many as PyTorch takes here); run.json keeps the number, "
                         "so --resume computes on as many"}
"""Where the command line does more with a training setting than TrainConfig's comment says."""
MAX_SAMPLES = 100
"""--samples prints its words on one line at every evaluation; `makemore sample -n` draws any number."""


def flag_of(name: str) -> str:
    """The flag that sets the config field `name`: --n-embd for n_embd."""
    return "--" + name.replace("_", "-")


def field_comments(cls: type) -> dict[str, str]:
    """The comment after each field of a config dataclass (with its continuation lines), by field name."""
    return dict(_field_comments(cls))


@functools.cache   # reading a class's source parses its whole module: once per process, not once per parser
def _field_comments(cls: type) -> dict[str, str]:
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        source = textwrap.dedent(inspect.getsource(klass))
        lines = source.splitlines()
        notes = {tok.start[0]: (tok.start[1], tok.string.lstrip("#").strip())
                 for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
        for node in ast.parse(source).body[0].body:
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)) or node.lineno not in notes:
                continue
            column, text = notes[node.lineno]
            row = node.lineno + 1          # a comment-only line under it, in the same column, continues it
            while row in notes and notes[row][0] == column and lines[row - 1].lstrip().startswith("#"):
                text += " " + notes[row][1]
                row += 1
            comments[node.target.id] = text
    return comments


def converter(flag: str, hint: Any) -> Callable[[str], Any]:
    """text -> the type `hint` names, for argparse's `type=`; a wrong value is one CLIError line naming `flag`."""
    kinds = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, UnionType) else (hint,)

    def convert(text: str) -> Any:
        if NoneType in kinds and text.lower() == "none":
            return None
        if typing.get_origin(hint) is tuple:
            try:
                return tuple(float(p) for p in text.split(","))
            except ValueError:
                raise CLIError(f"{flag} must be numbers separated by commas, such as 0.9,0.99, got {text!r}") from None
        if bool in kinds:
            words = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False,
                     "0": False}
            if text.lower() not in words:
                raise CLIError(f"{flag} must be true or false, got {text!r}")
            return words[text.lower()]
        for kind, what in ((int, "a whole number"), (float, "a number")):
            if kind in kinds:
                try:
                    return kind(text)
                except ValueError:
                    if str not in kinds:
                        raise CLIError(f"{flag} must be {what}, got {text!r}") from None
        return text

    convert.__name__ = flag        # argparse names the type in its own messages
    return convert


def renamed(error: Exception, flags: dict[str, str]) -> CLIError:
    """A config's "n_embd must be ..." as "--n-embd must be ...": the user typed the flag, not the field.

    `flags` maps each field (or parameter) to the flag that sets it."""
    message = str(error)
    for name in sorted(flags, key=len, reverse=True):
        if message.startswith(name + " must "):
            return CLIError(flags[name] + message[len(name):])
    return CLIError(message)


def model_fields() -> dict[str, dict[str, tuple[str, Any, Any]]]:
    """field -> {model name: (comment, type hint, command-line default)} for every model setting but vocab_size."""
    table: dict[str, dict[str, tuple[str, Any, Any]]] = {}
    for name, cls in sorted(MODELS.items()):
        comments, hints = field_comments(cls.Config), typing.get_type_hints(cls.Config)
        for f in dataclasses.fields(cls.Config):
            if f.name == "vocab_size":
                continue
            default = RECIPES[name].model.get(f.name, f.default)
            if f.name == "block_size" and cls.per_position:
                default = "longest word + 1"
            table.setdefault(f.name, {})[name] = (comments.get(f.name, ""), hints[f.name], default)
    return table


def train_fields() -> list[str]:
    """The TrainConfig fields that have a flag."""
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name not in TRAIN_HIDDEN]


def _model_help(per_model: dict[str, tuple[str, Any, Any]]) -> str:
    """One sentence per distinct comment: the models it applies to, the comment, their defaults."""
    by_comment: dict[str, list[tuple[str, Any]]] = {}
    for model, (comment, _, default) in per_model.items():
        by_comment.setdefault(comment, []).append((model, default))
    parts = []
    for comment, models in by_comment.items():
        defaults = {str(d) for _, d in models}
        default = next(iter(defaults)) if len(defaults) == 1 else ", ".join(f"{m} {d}" for m, d in models)
        parts.append(f"{', '.join(m for m, _ in models)}: {comment} (default: {default})")
    return "; ".join(parts)


def _train_help(name: str, comment: str) -> str:
    comment = TRAIN_HELP.get(name, comment)
    default = next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)
    set_by_some = any(name in recipe.train for recipe in RECIPES.values())
    defaults = {model: recipe.train.get(name, default) for model, recipe in RECIPES.items()} if set_by_some else {}
    if defaults and len(set(map(str, defaults.values()))) == 1:
        return f"{comment} (default: {next(iter(defaults.values()))})"
    if defaults:
        return f"{comment} (default: " + ", ".join(f"{m} {v}" for m, v in defaults.items()) + ")"
    if name in TRAIN_HELP and "default:" in comment:
        return comment
    return f"{comment} (default: {default})"


def add_model_flags(group: argparse._ArgumentGroup) -> None:
    for name, per_model in model_fields().items():
        hint = next(iter(per_model.values()))[1]     # tests/test_cli.py checks that every model agrees
        group.add_argument(flag_of(name), dest=name, default=None, metavar="X", type=converter(flag_of(name), hint),
                           help=_model_help(per_model))


def add_train_flags(group: argparse._ArgumentGroup) -> None:
    comments, hints = field_comments(TrainConfig), typing.get_type_hints(TrainConfig)
    for name in train_fields():
        flag = flag_of(name)
        group.add_argument(flag, dest=name, default=None, metavar="X", type=converter(flag, hints[name]),
                           help=_train_help(name, comments.get(name, "")))


def given(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The settings among `names` that a flag set (the others stay at the recipe's defaults)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


# ---- the parser ---------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and says where the help is)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _train_parser(sub: Any) -> None:
    t = sub.add_parser("train", help="train a model on a word file; the best checkpoint lands in the run folder",
                       description="Train a model on a word file (UTF-8, one word per line). Evaluates every "
                       "--eval-every steps, prints samples (new words, not in the file, marked *), keeps the "
                       "weights with the best dev loss in RUN/best.pt and everything to continue in RUN/last.pt. "
                       "Ctrl-C or SIGTERM stops at the next step and saves. Under torchrun, trains with "
                       "DistributedDataParallel (each process draws its own minibatches; process 0 writes).")
    t.add_argument("-i", "--input", default=None, metavar="WORDS.txt",
                   help="the word file: UTF-8 text, one word per line (e.g. data/names.txt, data/cities.txt); "
                   "with --resume it may be left out (the run's copy, RUN/words.txt, is used)")
    t.add_argument("-o", "--out-dir", required=True, metavar="RUN", help="the run folder: created if absent; one "
                   "holding another run is refused unless --resume or --force, one in use by another train always")
    t.add_argument("--model", choices=sorted(MODELS), default=None,
                   help="which model to train (default: transformer)")
    t.add_argument("--resume", action="store_true", help="continue the run in RUN exactly where it stopped, with "
                   "its own settings, threads and samples (needs the same word file)")
    t.add_argument("--force", action="store_true", help="replace the run in RUN with a new one (its files are deleted)")
    t.add_argument("--samples", default=None, metavar="N", type=converter("--samples", int),
                   help=f"words to sample and print at every evaluation, at most {MAX_SAMPLES}; 0: none "
                   "(default: 10, or the resumed run's)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (it is off anyway when CI is set)")
    add_model_flags(t.add_argument_group(
        "model settings", "Made from the models' config dataclasses; each applies to the models its help names "
        "(vocab_size always comes from the word file). The MLP's --*-scale flags multiply its N(0, 1) initial "
        "draws of the tensor named, as in lessons 02-03. true/false for yes-or-no settings."))
    add_train_flags(t.add_argument_group(
        "training settings", "Made from mmlib.train.TrainConfig; the defaults are the command line's fast recipe "
        "for the chosen model (mmlib.cli.recipes)."))


def _sample_parser(sub: Any) -> None:
    s = sub.add_parser("sample", help="sample words from a trained run",
                       description="Sample words from a trained run, one per line on stdout (how many are new, "
                       "not in the word file, goes to stderr).")
    s.add_argument("-o", "--out-dir", required=True, metavar="RUN", help="the run folder makemore train wrote")
    s.add_argument("-n", default=20, metavar="N", type=converter("-n", int),
                   help="how many words; drawn and printed a thousand at a time (default: 20)")
    s.add_argument("--temperature", default=1.0, metavar="T", type=converter("--temperature", float),
                   help="divides the logits: below 1 safer, more common words; above 1 wilder ones (default: 1.0)")
    s.add_argument("--top-k", default=None, metavar="K", type=converter("--top-k", int),
                   help="draw each character from the K most likely only (default: all)")
    s.add_argument("--prefix", default="", help="every word starts with these characters (default: none)")
    s.add_argument("--seed", default=None, metavar="S", type=converter("--seed", int),
                   help="seed of the draws, to repeat them (default: a new one, printed)")
    s.add_argument("--max-len", default=None, metavar="L", type=converter("--max-len", int),
                   help="stop words at L characters (default: 50, or what a sequence model reads)")
    _checkpoint_and_device(s)


def _checkpoint_and_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best.pt (lowest dev loss) or last.pt (where training stopped) (default: best)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps (default: cpu)")


def make_parser() -> Parser:
    p = Parser(prog="makemore", description="Train character-level models on any word list and sample more "
               "words like it (the makemore course's library, mmlib, from the command line).",
               epilog="Each command has its own --help, e.g. makemore train --help.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="{train,sample,eval}")
    _train_parser(sub)
    _sample_parser(sub)
    e = sub.add_parser("eval", help="the loss of a trained run on train, dev and test (or on another word file)",
                       description="Print the loss of a trained run on each split of its word file (the same "
                       "split training used), or on all words of another file with -i.")
    e.add_argument("-o", "--out-dir", required=True, metavar="RUN", help="the run folder makemore train wrote")
    e.add_argument("-i", "--input", default=None, metavar="WORDS.txt",
                   help="evaluate on every word of this file instead (its characters must be in the run's vocabulary)")
    _checkpoint_and_device(e)
    return p
