"""makemore from the command line: any word list in, more of it out (`python -m mmlib`, or `makemore`).

    makemore train  -i words.txt -o run/ --model transformer    # train; the best weights land in run/
    makemore sample -o run/ -n 20 --temperature 0.8 --prefix ka  # more words like the ones in words.txt
    makemore eval   -o run/                                      # the loss on train, dev and test
    torchrun --nproc_per_node 4 -m mmlib train ...               # the same training on 4 processes (DDP)

Every model of `mmlib.models` trains with the one trainer, `mmlib.train`; every model and training
setting is a flag made from its config dataclass (`mmlib.cli.flags`), with the defaults of
`mmlib.cli.recipes`, and every value is checked by `mmlib.validate`, as in the lessons. What a run
folder holds, and where each file is written, is in `mmlib.cli.runs`; training on several processes
in `mmlib.cli.distributed`. This module holds the commands.

Bad input (a missing, empty, binary or non-UTF-8 word file, characters the saved vocabulary lacks, a
checkpoint of another model, a folder that holds another run or is in use, nonsense numbers, a
device that is not there) gets one line on stderr and a non-zero exit; nothing already saved is
overwritten by mistake. Set MMLIB_TRACEBACK=1 to see the full traceback behind such a line.
Ctrl-C or SIGTERM (`kill`, `timeout`, a batch scheduler) stops at the next step and saves last.pt.

Deliberately left out (makemore.py leaves them out too): tokenizers other than characters, data
loaders (a word list fits in memory many times over), mixed precision, gradient accumulation.
"""

from __future__ import annotations

import sys

try:   # PyTorch is slow to load: Ctrl-C meanwhile ends with one line, as it does later
    import argparse
    import errno
    import math
    import os
    import re
    import signal
    import threading
    import time
    import typing
    from collections.abc import Sequence
    from dataclasses import dataclass
    from pathlib import Path
    from typing import Any

    import torch

    from mmlib.cli.distributed import Distributed, is_rank0, parameters_digest, printer
    from mmlib.cli.flags import MAX_SAMPLES, flag_of, given, make_parser, model_fields, renamed, train_fields
    from mmlib.cli.memory import check_batch_fits
    from mmlib.cli.recipes import RECIPES
    from mmlib.cli.runs import (
        RUN_FILES,
        RUN_FORMAT,
        CLIError,
        RunLock,
        SaveError,
        build_model,
        check_out_dir,
        check_split,
        checkpoint,
        load_checkpoint,
        load_model,
        new_run_id,
        quoted,
        read_run,
        run_words,
        save,
        save_words,
        sha256_of,
        split_sha256,
        splits_of,
        vocab_of,
        write_run,
    )
    from mmlib.data import DataError, build_dataset, build_sequences, load_words, sequence_length
    from mmlib.models import MODELS, Model
    from mmlib.train import Callbacks, TrainConfig, TrainingDiverged, TrainState, evaluate, muon_matrices, train
    from mmlib.validate import choice, non_negative_int, number, positive_int
    from mmlib.validate import seed as check_seed
    from mmlib.vocab import Vocab, VocabError
except KeyboardInterrupt:
    print("makemore: interrupted while loading", file=sys.stderr)
    raise SystemExit(130) from None

RUNTIME = ("device", "threads")
"""Training settings --resume may change: where the run computes, not what it computes."""
SAMPLE_FLAGS = {"n": "-n", "temperature": "--temperature", "top_k": "--top-k", "prefix": "--prefix",
                "max_len": "--max-len"}
"""sample_words' parameters and the flags of `makemore sample` that set them."""
SAMPLE_CHUNK = 1_000
"""`makemore sample` draws at most this many words at once (a transformer's draw of a million would not fit)."""
RANK0_FIRST_S = 30
"""Under torchrun, how long a process other than 0 waits after an input error before ending: long enough for
process 0, which checks the same input, to say what is wrong (torchrun then stops the waiting ones)."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived; raised at the next step boundary so the run stops in a state it can resume from."""


class Stopper:
    """Turns the first Ctrl-C or SIGTERM into a request to stop at the next step boundary.

    A second Ctrl-C stops at once; a second SIGTERM is ignored (torchrun sends one to every process
    after the terminal's Ctrl-C reached them all, and they are busy saving)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "Stopper":
        if threading.current_thread() is threading.main_thread():   # Python delivers signals there only
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.request(signum)

    def request(self, signum: int = signal.SIGINT) -> None:
        """Stop at the next step boundary, as `signum` asks (the first signal is the one reported)."""
        self.requested = True
        self.signal = self.signal or signum

    def check(self, step: int, dist: Distributed | None) -> None:
        """Called before each step (the trainer's before_step): stop here when asked, on every process alike.

        Not on_step: that runs after the forward pass, which has already moved BatchNorm's running
        statistics, so a run stopped there and resumed would move them twice."""
        signum = self.signal or (signal.SIGINT if self.requested else 0)
        if dist is not None:       # the signal one process got, on every process (SIGTERM outranks SIGINT)
            signum = dist.max(signum)
        if signum:
            self.signal = signum
            raise Interrupted


@dataclass
class Job:
    """One `makemore train`: what to train, on what, where, and how to report."""

    run: Path
    meta: dict[str, Any]
    words: list[str]
    vocab: Vocab
    cfg: TrainConfig
    dist: Distributed | None
    resume: bool
    n_samples: int
    input_path: str

    @property
    def rank(self) -> int:
        return 0 if self.dist is None else self.dist.rank

    @property
    def world(self) -> int:
        return 1 if self.dist is None else self.dist.world

    def say(self, line: str) -> None:
        printer(self.rank == 0)(line)

    def resume_command(self) -> str:
        start = f"torchrun --standalone --nproc_per_node {self.world} -m mmlib" if self.dist is not None else "makemore"
        return f"{start} train -o {quoted(self.run)} --resume"


# ---- makemore train -----------------------------------------------------------------------------


class TrainHooks(Callbacks):
    """What the command line does inside `train()`: the trainer calls `before_step` and `on_eval`.

    Before each step: stop there if Ctrl-C or SIGTERM asked to. At each evaluation: check the
    processes agree, keep the best weights (a finite dev loss that improves),
    save everything to resume, print the losses and a few samples. A dev loss twice a uniform guess's or
    more is a diverged run's (DivergenceGuard's rule), never the best."""

    def __init__(self, job: Job, model: Model, state: TrainState, best: dict[str, Any] | None,
                 g_samples: torch.Generator) -> None:
        self.job, self.model, self.state, self.best, self.g_samples = job, model, state, best, g_samples
        self.saved_step: int | None = state.step if job.resume else None   # the step last.pt holds
        self.stopper = Stopper()
        self.known = set(job.words)
        self.ceiling = 2 * math.log(len(job.vocab))

    def before_step(self, step: int) -> None:
        self.stopper.check(step, self.job.dist)

    def on_eval(self, step: int, losses: dict[str, float]) -> None:
        job = self.job
        if job.dist is not None:
            job.dist.check_agreement(self.model, step)
        line = f"step {step:,}/{job.cfg.max_steps:,} | " + " | ".join(f"{k} {v:.4f}" for k, v in losses.items())
        dev = losses["dev"]
        if math.isfinite(dev) and dev < self.ceiling and (self.best is None or dev < self.best["dev"]):
            if job.rank == 0:
                save(job.run / "best.pt", checkpoint(job.meta, self.model, step=step, losses=losses))
            self.best = {"step": step, "dev": dev}
            line += " | best so far, saved"
        self.save_last()
        job.say(line)
        if job.n_samples and job.rank == 0:
            drawn = sample_words_of(self.model, job.vocab, job.n_samples, self.g_samples)
            new = [w for w in drawn if w not in self.known]
            job.say(f"  samples ({len(new)}/{len(drawn)} new, marked *): "
                    + " | ".join(w + ("*" if w not in self.known else "") for w in drawn))

    def save_last(self) -> None:
        """last.pt and run.json: every process's generators, so that --resume continues exactly."""
        job, state = self.job, self.state
        generators, rngs = [state.generator.get_state()], [torch.get_rng_state()]
        if job.dist is not None:
            generators, rngs = job.dist.gather(generators[0]), job.dist.gather(rngs[0])
        if job.rank == 0:
            save(job.run / "last.pt", checkpoint(job.meta, self.model, state=state.state_dict(), generators=generators,
                                                 rngs=rngs, samples=self.g_samples.get_state(), best=self.best))
            self.saved_step = state.step
            job.meta.update(step=state.step, best=self.best, finished=state.step >= job.cfg.max_steps)
            write_run(job.run, job.meta)


def _restore(job: Job, model: Model) -> TrainHooks:
    """The hooks of a run continued from last.pt: weights, step, generators and best as they were saved."""
    last = load_checkpoint(job.run / "last.pt", job.meta)
    model.load_state_dict(last["weights"])
    state = TrainState.from_state_dict({**last["state"], "generator": last["generators"][job.rank]})
    torch.set_rng_state(last["rngs"][job.rank] if "rngs" in last else last["rng"])
    g_samples = torch.Generator().manual_seed(job.cfg.seed + 1)
    if "samples" in last:
        g_samples.set_state(last["samples"])
    return TrainHooks(job, model, state, last["best"], g_samples)


def _start(job: Job, model: Model) -> TrainHooks:
    """The hooks of a new run, after process 0 has emptied the folder and written words.txt and run.json."""
    if job.rank == 0:
        for name in RUN_FILES:
            (job.run / name).unlink(missing_ok=True)
        save_words(job.run, job.input_path, job.words)
        job.meta["n_parameters"] = model.n_parameters()
        write_run(job.run, job.meta)
    state = TrainState(torch.Generator().manual_seed(job.cfg.seed + job.rank))   # each process its own minibatches
    return TrainHooks(job, model, state, None, torch.Generator().manual_seed(job.cfg.seed + 1))


def _announce(job: Job, model: Model, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    cfg = job.cfg
    per_step = f"{job.world} processes x {cfg.batch_size}" if job.world > 1 else f"{cfg.batch_size}"
    job.say(f"{job.meta['model']}: {model.n_parameters():,} parameters, {len(job.vocab)} characters; "
            f"{len(job.words):,} words ({', '.join(f'{k} {len(X):,}' for k, (X, _) in splits.items())} examples); "
            f"{cfg.max_steps:,} steps of {per_step} examples, {cfg.optimizer} lr {cfg.lr:g}; seed {cfg.seed}, "
            f"{cfg.threads} thread{'s' if cfg.threads > 1 else ''}")
    if cfg.schedule == "cosine" and cfg.warmup > cfg.max_steps:
        job.say(f"note: the recipe's warm-up ({cfg.warmup:,} steps) is longer than this run ({cfg.max_steps:,} steps), "
                f"so the learning rate never reaches lr {cfg.lr:g}; --warmup sets a shorter one")


def _train(job: Job) -> int:
    """Build or restore the model, train it with the hooks, and say how it ended (the exit status)."""
    torch.manual_seed(job.cfg.seed + job.rank)     # dropout draws from the global generator
    model = build_model(job.meta, seed=job.cfg.seed).to(torch.device(job.cfg.device))
    try:
        check_batch_fits(model, job.cfg.batch_size)   # before any file is written: --batch-size 1e8 is one line
    except ValueError as e:
        raise CLIError(str(e).replace("batch_size", "--batch-size")) from None
    hooks = _restore(job, model) if job.resume else _start(job, model)
    if hooks.state.step >= job.cfg.max_steps:
        job.say(f"{job.run} finished at step {hooks.state.step:,} already ({_best_line(hooks)}); nothing to resume")
        return 0
    if job.resume:
        job.say(f"resuming {job.meta['model']} at step {hooks.state.step:,} of {job.cfg.max_steps:,}")
    splits = splits_of(job.run, job.meta, job.words, job.vocab)
    splits.pop("test")   # training watches train and dev only; `makemore eval` reports test
    _announce(job, model, splits)
    net = model if job.dist is None else job.dist.wrap(model, job.cfg.device)
    with hooks.stopper:         # still catching signals while it saves, so a second SIGTERM cannot cut that short
        try:
            try:
                result = train(net, splits, job.cfg, state=hooks.state, callbacks=hooks)
            except Interrupted:
                hooks.save_last()
                stop = signal.Signals(hooks.stopper.signal or signal.SIGINT)
                job.say(f"interrupted at step {hooks.state.step:,}: saved {job.run / 'last.pt'} on {stop.name}; "
                        f"continue with: {job.resume_command()}")
                return 128 + stop.value
        except TrainingDiverged as e:
            kept = f"; the best weights so far are in {job.run / 'best.pt'}" if hooks.best else ""
            raise CLIError(f"{e}{kept}") from None
        except SaveError as e:
            raise CLIError(_save_failed(job, hooks, e)) from None
    if job.dist is not None:
        job.say(f"{job.world} processes agree on the parameters (sha256 {parameters_digest(model)[:16]})")
    if hooks.best is None:
        raise CLIError(f"the run diverged: no evaluation got a finite dev loss below twice a uniform guess's, "
                       f"{hooks.ceiling:.2f} (the last: {result.final['dev']:.4g}), so no best.pt was kept; lower --lr "
                       f"(now {job.cfg.lr:g}) and train again with --force")
    job.say(f"done in {result.seconds:.1f} s ({result.steps_per_second:.0f} steps/s): {_best_line(hooks)}, "
            f"saved in {job.run / 'best.pt'}")
    return 0


def _save_failed(job: Job, hooks: TrainHooks, e: SaveError) -> str:
    """What could not be written, what the folder still holds, and how to go on: one line."""
    if hooks.saved_step is None:
        kept = "nothing of this run is saved yet; once that is fixed, start it again with --force"
    else:
        kept = f"{job.run / 'last.pt'} still holds step {hooks.saved_step:,}"
        if hooks.best is not None and (job.run / "best.pt").exists():
            kept += f" and best.pt the best dev loss so far ({hooks.best['dev']:.4f}, step {hooks.best['step']:,})"
        kept += f"; once that is fixed, continue with: {job.resume_command()}"
    code = e.error.errno
    fix = ("free some disk space" if code in (errno.ENOSPC, errno.EDQUOT) else
           "make the folder writable" if code in (errno.EROFS, errno.EACCES, errno.EPERM) else "fix that")
    return f"{e} at step {hooks.state.step:,}, so training stopped ({fix}); {kept}"


def _best_line(hooks: TrainHooks) -> str:
    b = hooks.best
    return "no best dev loss" if b is None else f"best dev loss {b['dev']:.4f} at step {b['step']:,}"


def sample_words_of(model: Model, vocab: Vocab, n: int, g: torch.Generator, **kw: Any) -> list[str]:
    from mmlib.sample import sample_words

    return sample_words(model, vocab, n, g=g, **kw)


def _model_and_configs(args: argparse.Namespace) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The model asked for, and its settings: the recipe's defaults, then the flags given."""
    name = args.model or "transformer"
    fields = set(typing.get_type_hints(MODELS[name].Config)) - {"vocab_size"}
    asked = given(args, model_fields())
    wrong = sorted(set(asked) - fields)
    if wrong:
        raise CLIError(f"{', '.join(flag_of(n) for n in wrong)} is not a setting of the {name} model; its "
                       f"settings are {', '.join(flag_of(n) for n in sorted(fields))}")
    asked_train = given(args, train_fields())
    tcfg = {**RECIPES[name].train, **asked_train}
    if tcfg["optimizer"] == "sgd" and "weight_decay" not in asked_train:
        tcfg["weight_decay"] = 0.0      # the recipe's weight decay is AdamW's; plain SGD has none
    if tcfg["schedule"] == "cosine" and tcfg["warmup"] > tcfg["max_steps"] and "warmup" in asked_train:
        raise CLIError(f"--warmup {tcfg['warmup']:,} is longer than the run (--max-steps {tcfg['max_steps']:,}): "
                       "the learning rate would never reach --lr; give a shorter --warmup")
    return name, {**RECIPES[name].model, **asked}, tcfg


def _refuse_changes(args: argparse.Namespace, meta: dict[str, Any]) -> None:
    """--resume continues with the run's own settings; a flag that would change them is refused."""
    if args.model is not None and args.model != meta["model"]:
        raise CLIError(f"{args.out_dir} holds a {meta['model']} run; --resume continues it, so --model {args.model} "
                       "does not fit (use another -o, or --force to replace it)")
    for n, want in given(args, [f for f in train_fields() if f not in RUNTIME]).items():
        have = meta["train_config"].get(n)
        if (list(want) if isinstance(want, tuple) else want) != have:
            raise CLIError(f"{flag_of(n)} {getattr(args, n)} differs from the run's {have!r}; --resume continues the "
                           "run with its own settings (drop the flag, or start a new run with --force or another -o)")
    for n, want in given(args, model_fields()).items():
        if want != meta["model_config"].get(n):
            raise CLIError(f"{flag_of(n)} {want} differs from the run's model ({meta['model_config'].get(n)!r}); "
                           "--resume continues the run's own model")


def _train_config(tcfg: dict[str, Any], args: argparse.Namespace, rank0: bool) -> TrainConfig:
    values = {k: tuple(v) if k == "betas" else v for k, v in tcfg.items()}
    values.update(given(args, RUNTIME), progress=False if not rank0 or args.no_progress else None)
    if values.get("threads") is None:
        values["threads"] = torch.get_num_threads()     # kept in run.json, so a resumed run uses as many
    cores = available_cores()
    if isinstance(values["threads"], int) and values["threads"] > cores:
        whose = "--threads" if "threads" in given(args, RUNTIME) else "the run's threads (run.json)"
        raise CLIError(f"{whose} {values['threads']} is more than the {cores} CPU core{'s' * (cores > 1)} this "
                       f"process may use: more threads than cores only wait for each other; give --threads {cores} "
                       "or fewer")
    try:
        cfg = TrainConfig(**values)
    except (TypeError, ValueError) as e:
        raise renamed(e, {n: flag_of(n) for n in train_fields()}) from None
    if cfg.device != "cpu":
        from mmlib.runtime import pick_device
        pick_device(cfg.device)          # an absent GPU: one line now, before any work
    return cfg


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity, which a container or taskset narrows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _new_meta(model_name: str, mcfg: dict[str, Any], cfg: TrainConfig, words: list[str], vocab: Vocab,
              input_path: str, world: int, n_samples: int) -> dict[str, Any]:
    cls = MODELS[model_name]
    if cls.per_position and "block_size" not in mcfg:
        mcfg = {**mcfg, "block_size": sequence_length(words)}
    try:
        mcfg = cls.Config(vocab_size=len(vocab), **mcfg).to_dict()
    except (TypeError, ValueError) as e:
        raise renamed(e, {n: flag_of(n) for n in mcfg}) from None
    return {"format": RUN_FORMAT, "id": new_run_id(), "model": model_name, "model_config": mcfg,
            "train_config": {k: v for k, v in cfg.to_dict().items() if k not in ("progress", "live_plot", "device")},
            "vocab": "".join(vocab.itos), "samples": n_samples,
            "data": {"source": str(Path(input_path).resolve()), "words": len(words), "sha256": sha256_of(words),
                     "splits_sha256": split_sha256(words, cfg.seed)},
            "world_size": world, "step": 0, "best": None, "finished": False}


def _samples(args: argparse.Namespace, meta: dict[str, Any] | None) -> int:
    if args.samples is None:
        return 10 if meta is None else meta.get("samples", 10)
    n = non_negative_int("--samples", args.samples)
    if n > MAX_SAMPLES:
        raise CLIError(f"--samples must be at most {MAX_SAMPLES} (they print on one line at every evaluation; "
                       f"makemore sample -n draws any number), got {n}")
    return n


def _job(args: argparse.Namespace, dist: Distributed | None) -> Job:
    """Everything `makemore train` was asked for, checked before any file is touched."""
    run = Path(args.out_dir)
    if args.resume and args.force:
        raise CLIError("--resume continues the run in the folder and --force replaces it: give one of them")
    if args.input is None and not args.resume:
        raise CLIError("-i WORDS.txt is needed: the word file to train on (UTF-8, one word per line)")
    meta = read_run(run) if args.resume else None
    n_samples = _samples(args, meta)
    if meta is not None:
        _refuse_changes(args, meta)
        model_name, tcfg = meta["model"], meta["train_config"]
    else:
        check_out_dir(run, force=args.force)
        model_name, mcfg, tcfg = _model_and_configs(args)
    cfg = _train_config(tcfg, args, is_rank0(dist))
    input_path = args.input if args.input is not None else str(run / "words.txt")
    words = load_words(input_path)
    world = 1 if dist is None else dist.world
    if meta is None:
        vocab = Vocab.from_words(words)
        meta = _new_meta(model_name, mcfg, cfg, words, vocab, input_path, world, n_samples)
        if cfg.optimizer == "muon":
            with torch.device("meta"):             # the model's shapes, without its memory
                model = build_model(meta)
            try:
                muon_matrices(model)               # a model without hidden matrices: one line, nothing written
            except ValueError as e:
                raise CLIError(f"--{e}") from None
    else:
        if sha256_of(words) != meta["data"]["sha256"]:
            raise CLIError(f"{input_path} is not the word file {run} was trained on ({meta['data']['words']:,} words, "
                           f"sha256 {meta['data']['sha256'][:12]}...); --resume needs the same file")
        if meta.get("world_size", 1) != world:
            raise CLIError(f"{run} was trained on {meta.get('world_size', 1)} processes; resume it on as many "
                           f"(this is {world}): each process draws its own minibatches")
        check_split(run, meta, words)
        vocab = vocab_of(meta)
        meta.update(samples=n_samples)
        meta["train_config"].update(threads=cfg.threads)
    return Job(run, meta, words, vocab, cfg, dist, args.resume, n_samples, input_path)


def cmd_train(args: argparse.Namespace) -> int:
    dist = Distributed.from_env()
    job = _job(args, dist)
    lock = RunLock(job.run)
    if job.rank == 0:
        job.run.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    try:
        if dist is not None:
            dist.start(job.cfg.device)
        return _train(job)
    finally:
        if dist is not None:
            dist.stop()
        lock.release()


# ---- makemore sample / eval ---------------------------------------------------------------------


def cmd_sample(args: argparse.Namespace) -> int:
    run = Path(args.out_dir)
    n = positive_int("-n", args.n)
    temperature = number("--temperature", args.temperature, 0, None, low_open=True)
    top_k = None if args.top_k is None else positive_int("--top-k", args.top_k)
    seed = int.from_bytes(os.urandom(4), "little") if args.seed is None else check_seed("--seed", args.seed)
    device = _device(args.device)
    meta, model, vocab = load_model(run, args.checkpoint)
    model.to(device)
    known = set(run_words(run)) if (run / "words.txt").exists() else set()
    g, new, empty = torch.Generator().manual_seed(seed), 0, 0
    for start in range(0, n, SAMPLE_CHUNK):      # any -n in bounded memory, printed as it is drawn
        try:
            words = sample_words_of(model, vocab, min(SAMPLE_CHUNK, n - start), g, temperature=temperature,
                                    top_k=top_k, prefix=args.prefix, max_len=args.max_len)
        except ValueError as e:
            raise renamed(e, SAMPLE_FLAGS) from None
        print("\n".join(words), flush=True)
        new += sum(w not in known for w in words if w)
        empty += words.count("")
    if known:
        ended = (f", {empty} empty (the model ended the word at once: printed as empty lines)" if empty else "")
        print(f"{n} words from {run} ({meta['model']}, {args.checkpoint}.pt), {new} new (not in the word file)"
              f"{ended}; seed {seed}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    run = Path(args.out_dir)
    device = _device(args.device)
    meta, model, vocab = load_model(run, args.checkpoint)
    model.to(device)
    if args.input:
        build = build_sequences if MODELS[meta["model"]].per_position else build_dataset
        try:
            words = vocab.check_words(load_words(args.input))   # '.' inside a word, or characters the run lacks
            X, Y = build(words, vocab, meta["model_config"]["block_size"])
        except VocabError as e:
            raise CLIError(f"{args.input}: {e} (the run's vocabulary is fixed; train a new run on this file)") from None
        print(f"{args.input}: {len(words):,} words, loss {evaluate(model, X, Y):.4f}")
        return 0
    splits = splits_of(run, meta, run_words(run, meta), vocab)
    for name, (X, Y) in splits.items():
        print(f"{name:5s} {evaluate(model, X, Y):.4f}  ({len(X):,} examples)")
    return 0


def _device(name: str) -> torch.device:
    from mmlib.runtime import DEVICES, pick_device

    return pick_device(choice("--device", name, DEVICES))


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval}

NOTEBOOK_WORDS = ((re.compile(r"\bdevice='(\w+)'"), r"--device \1"), (re.compile(r"\bdata_path\b"), "-i"))
"""The lessons' parameter names in messages mmlib shares with them, and the flags a command-line user typed."""


def in_flags(message: str) -> str:
    """A message of the library in the command line's words: `--device cpu`, not `device='cpu'`."""
    for pattern, flag in NOTEBOOK_WORDS:
        message = pattern.sub(flag, message)
    return message


def _closed_pipe() -> int:
    """The reader of stdout went away (`makemore sample | head`): stop quietly, as other command-line tools do.

    stdout is pointed at /dev/null so that Python's final flush does not report the same broken pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit status (0 done, 1 refused or failed, 2 bad usage, 130 interrupted,
    143 stopped by SIGTERM)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if a in COMMANDS), "")
    prog = f"makemore {command}".strip()
    try:
        args = make_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except BrokenPipeError:
        return _closed_pipe()
    except (CLIError, DataError, VocabError, ValueError, RuntimeError, OSError) as e:
        if os.environ.get("MMLIB_TRACEBACK"):
            raise
        # Under torchrun every process checks the same input: process 0 says what is wrong, once.
        if os.environ.get("RANK", "0") == "0" or isinstance(e, (RuntimeError, OSError)):
            print(f"{prog}: error: {in_flags(' '.join(str(e).split()))}", file=sys.stderr)
        elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # torchrun stops every process as soon as one ends with an error: the others wait (torchrun stops them
            # when process 0 ends), so that process 0 is not stopped before it has said what is wrong
            time.sleep(RANK0_FIRST_S)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
