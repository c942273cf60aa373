"""Fast recipes, measured: the command line's recipes against the lectures', on several word lists and seeds.

    python benchmarks/recipes.py --json recipes.json     # 3 lists x 3 seeds: about four hours on 2 CPU cores
    python benchmarks/recipes.py --models wavenet --words data/cities.txt --json cities.json   # one list: 45 min
    flock /tmp/mm-heavy.lock python benchmarks/recipes.py --json recipes.json  # one measured job at a time
    python benchmarks/recipes.py --words data/cities.txt --seeds 1 --scale 0.01   # a quick look: seconds
    python benchmarks/recipes.py --readme write    # README.md's tables from the committed runs' JSON

For each model (`--models`) and word file (`--words`), every seed (`--seeds N`: 42, 43, ...; the seed makes
the split, the initialisation, dropout and the minibatches, as `makemore train --seed` does) trains twice:

- the baseline (`BASELINES`): for the WaveNet lecture 05's recipe (plain SGD, 200,000 steps of batch 32,
  the lecture's model), on one thread as the lessons run it (`--lecture-threads`); for the transformer
  lesson 06's recipe, the command line's default before issue 18, on `--threads` as the command line ran it;
- the recipe: `mmlib.cli.recipes.RECIPES[model]` as `makemore train` runs it, on `--threads` (default:
  PyTorch's own choice, every core).

Printed per model and file: dev loss (the final one, of the weights at the last step) and training time
(evaluations not counted), each as the mean over the seeds with the spread as (min-max); the speed-up at
equal loss: the training time at which the recipe's dev loss, averaged over the seeds at each evaluation
(every `--every` steps), first reaches the baseline's mean dev loss, against the baseline's mean training
time; and a verdict computed from those numbers against issue 18's criteria (`verdict`). The load average
is printed at the start and at the end: measure on a quiet machine. `--json` keeps every number.
`--scale` multiplies every step budget (0.001 for a smoke run of a few seconds); the criteria stay.
Models without a baseline (`--models mlp`) print the recipe's figures only.

`--reuse-baselines` takes the baseline's runs from the committed results (`benchmarks/results/`) of the same
model, word file, seeds and threads instead of training them again: a run's dev loss is a function of its
settings and seed alone, and a baseline is frozen. Its training times are another day's, so no speed-up at
equal loss is printed with them, and the WaveNet, whose verdict is one, is refused.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmlib.cli.recipes import RECIPES  # noqa: E402
from mmlib.data import NAMES, DataError, build_splits, load_words, sequence_length  # noqa: E402
from mmlib.models import MODELS, create  # noqa: E402
from mmlib.train import Callbacks, TrainConfig, TrainState, train  # noqa: E402
from mmlib.vocab import Vocab  # noqa: E402

WORDS = ["data/names.txt", "data/cities.txt", "data/surnames.txt"]
"""The word files measured by default: the course's names, and two real lists no recipe was tuned on."""

RESULTS = ROOT / "benchmarks" / "results"
"""The measured runs README.md quotes: the `--json` file of each run, committed as it was written."""
MARKERS = ("<!-- recipes:begin -->", "<!-- recipes:end -->")


@dataclass(frozen=True)
class Baseline:
    """What a model's recipe is measured against: a named recipe, its model settings, and how it runs."""

    name: str                      # where the recipe comes from; `describe` says what it is
    train: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    lecture: bool = False          # True: runs on --lecture-threads, as the lessons run it


BASELINES = {
    "wavenet": Baseline("lecture 05",
                        {"optimizer": "sgd", "schedule": "step", "max_steps": 200_000, "batch_size": 32, "lr": 0.1,
                         "lr_late": 0.01, "decay_step": 150_000}, lecture=True),
    "transformer": Baseline("lesson 06 and the command line before issue 18",
                            {"optimizer": "adamw", "schedule": "cosine", "max_steps": 4_500, "batch_size": 128,
                             "lr": 5e-3, "warmup": 200, "lr_min": 0.0, "weight_decay": 0.3, "grad_clip": None},
                            {"dropout": 0.1}),
}
"""The baselines, frozen here so that a change to mmlib.cli.recipes is measured against them, not against itself."""

SPEEDUP = 8.0                  # the WaveNet's recipe reaches the lecture's mean dev loss at least this much sooner
WORST_SEED = 0.005             # ... and its worst seed ends at most this far above the lecture's mean
TRANSFORMER_DEV = 1.93         # the transformer's recipe: mean dev loss on data/names.txt at most this
TRANSFORMER_SECONDS = 300.0    # ... in at most 5 minutes of training (its longest seed)


def describe(train: dict[str, Any], model: dict[str, Any]) -> str:
    """A recipe in a few words, made from its settings (so a label never disagrees with what ran)."""
    if train["optimizer"] == "sgd":
        text = f"SGD, lr {train['lr']:g}"
        if train.get("schedule") == "step":
            text += f" then {train['lr_late']:g} from step {train.get('decay_step') or train['max_steps'] // 2:,}"
    else:
        text = f"{'Muon for hidden matrices, AdamW for the rest,' if train['optimizer'] == 'muon' else 'AdamW'} lr "
        text += f"{train['lr']:g}"
        if train.get("schedule") == "cosine":
            text += f", warm-up {train.get('warmup', 0):,}, cosine to {train.get('lr_min', 0.0):g}"
        text += f", weight decay {train.get('weight_decay', 0.0):g}"
    if train.get("grad_clip") is not None:
        text += f", clip {train['grad_clip']:g}"
    if train.get("sampling", "random") == "epochs":
        text += ", minibatches from shuffled passes"
    if train.get("sampling", "random") == "lengths":
        text += ", minibatches of words of like length from shuffled passes"
    if train.get("dropout_from"):
        text += f", no dropout in the first {train['dropout_from']:.0%} of the steps"
    return text + "".join(f", {k} {v}" for k, v in model.items())


def scaled(recipe: dict[str, Any], scale: float) -> dict[str, Any]:
    """`recipe` with every step budget multiplied by `scale` (at least 1 step each)."""
    r = dict(recipe)
    for k in ("max_steps", "decay_step", "warmup"):
        if r.get(k):
            r[k] = max(1, int(r[k] * scale))
    return r


class _DevCurve(Callbacks):
    """Appends (step, training seconds so far, dev loss) to `curve` at every evaluation, the final one included."""

    def __init__(self, state: TrainState, curve: list[tuple[int, float, float]]):
        self.state, self.curve = state, curve

    def on_eval(self, step: int, losses: dict[str, float]) -> None:
        self.curve.append((step, self.state.seconds, losses["dev"]))


def run(name: str, recipe: dict[str, Any], model_config: dict[str, Any], words: list[str], vocab: Vocab, *,
        every: int, threads: int, seed: int) -> dict[str, Any]:
    """Train `name` once, as `makemore train --seed seed` would: its final dev loss, training time and dev curve."""
    cls = MODELS[name]
    config = dict(model_config)
    if cls.per_position:
        config["block_size"] = sequence_length(words)
    torch.manual_seed(seed)     # dropout draws from the global generator
    model = create(name, generator=torch.Generator().manual_seed(seed), vocab_size=len(vocab), **config)
    splits = build_splits(words, vocab, model.block_size, seed, per_position=cls.per_position)
    splits.pop("test")
    state = TrainState(torch.Generator().manual_seed(seed))
    curve: list[tuple[int, float, float]] = []
    settings = {k: v for k, v in recipe.items() if k not in ("eval_every", "eval_rows")}
    cfg = TrainConfig(**settings, eval_every=every, eval_rows=None, seed=seed, threads=threads, progress=False)
    result = train(model, splits, cfg, state=state, callbacks=_DevCurve(state, curve))
    return {"seed": seed, "dev": result.final["dev"], "seconds": result.seconds, "curve": curve}


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def reach(runs: list[dict[str, Any]], target: float) -> dict[str, float] | None:
    """The first evaluation at which the dev loss averaged over the seeds is at or below `target`:
    {"step", "seconds" (mean training time so far)}, or None if it never is."""
    for points in zip(*(r["curve"] for r in runs)):
        if statistics.fmean(p[2] for p in points) <= target:
            return {"step": points[0][0], "seconds": statistics.fmean(p[1] for p in points)}
    return None


def summary(label: str, recipe: dict[str, Any], threads: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"label": label, "steps": recipe["max_steps"], "batch_size": recipe["batch_size"], "threads": threads,
            "dev": spread([r["dev"] for r in runs]), "seconds": spread([r["seconds"] for r in runs]),
            "runs": runs}


def speedup(baseline: dict[str, Any], at: dict[str, float]) -> float:
    """The baseline's mean training time over the recipe's time to reach its mean dev loss (`reach`)."""
    return baseline["seconds"]["mean"] / at["seconds"] if at["seconds"] > 0 else float("inf")


def verdict(model: str, baseline: dict[str, Any], recipe: dict[str, Any], *, on_names: bool) -> list[tuple[str, bool]]:
    """Issue 18's criteria for `recipe` against `baseline` (summaries, `recipe` with its "reach" of the
    baseline's mean dev loss): each as (what was compared, with the numbers; whether it holds)."""
    b, r = baseline["dev"]["mean"], recipe["dev"]
    if model == "wavenet":
        at = recipe["reach"]
        if at is None:
            fast = ("never reaches the lecture's mean dev loss, so no speed-up at equal loss", False)
        else:
            x = speedup(baseline, at)
            fast = (f"{x:.1f}x less training time to the lecture's mean dev loss ({at['seconds']:.1f} s at step "
                    f"{at['step']:,} against {baseline['seconds']['mean']:.1f} s), at least {SPEEDUP:g}x", x >= SPEEDUP)
        return [(f"mean dev {r['mean']:.4f} at or below the lecture's mean {b:.4f}", r["mean"] <= b),
                (f"worst seed {r['max']:.4f} within {WORST_SEED:g} of the lecture's mean "
                 f"(at most {b + WORST_SEED:.4f})", r["max"] <= b + WORST_SEED),
                fast]
    if model == "transformer" and on_names:
        longest = recipe["seconds"]["max"]
        return [(f"mean dev {r['mean']:.4f} at most {TRANSFORMER_DEV:g} on the course's names",
                 r["mean"] <= TRANSFORMER_DEV),
                (f"longest seed's training {longest:.1f} s at most {TRANSFORMER_SECONDS:g} s",
                 longest <= TRANSFORMER_SECONDS)]
    if model == "transformer":
        return [(f"mean dev {r['mean']:.4f} not worse than the previous recipe's {b:.4f}", r["mean"] <= b)]
    return []


def verdict_line(model: str, path: str, checks: list[tuple[str, bool]]) -> str:
    if not checks:
        return f"verdict {model} on {path}: none (issue 18 sets criteria for the wavenet and the transformer only)"
    failed = [text for text, ok in checks if not ok]
    head = f"verdict {model} on {path}: " + ("PASS" if not failed else "FAIL")
    return head + "; " + "; ".join(f"{text}: {'yes' if ok else 'NO'}" for text, ok in checks)


def _cell(s: dict[str, float], digits: int) -> str:
    return f"{s['mean']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def table(model: str, path: str, n_words: int, seeds: list[int], rows: list[dict[str, Any]],
          base_dev: float | None) -> str:
    reach_head = f"reaches the baseline's mean dev {base_dev:.4f}" if base_dev is not None else "reaches the baseline"
    lines = [f"## {model} on {path} ({n_words:,} words), seeds {', '.join(map(str, seeds))}", "",
             "| recipe | steps x batch | threads | dev loss: mean (min-max) | training s: mean (min-max) | "
             f"{reach_head} |",
             "|---|---|---|---|---|---|"]
    for s in rows:
        at = s.get("reach", "-")
        if isinstance(at, dict):
            sooner = f": {s['speedup']:.1f}x sooner" if "speedup" in s else ""
            at = f"step {at['step']:,}, {at['seconds']:.1f} s{sooner}"
        elif at is None:
            at = "never"
        lines.append(f"| {s['label']} | {s['steps']:,} x {s['batch_size']} | {s['threads']} | {_cell(s['dev'], 4)} | "
                     f"{_cell(s['seconds'], 1)} | {at} |")
    for s in rows:
        lines.append(f"\n{s['label']}, by seed: " + "; ".join(f"{r['seed']}: dev {r['dev']:.4f} in {r['seconds']:.1f} s"
                                                            for r in s["runs"])
                     + (f" (reused from an earlier run's benchmarks/results/{s['from']}: the times are that run's)"
                        if "from" in s else ""))
    return "\n".join(lines)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure(model: str, path: str, seeds: list[int], args: argparse.Namespace, threads: int) -> dict[str, Any]:
    words = load_words(path)
    vocab = Vocab.from_words(words)
    every = lambda steps: max(1, min(args.every, steps // 5))  # noqa: E731
    recipe = RECIPES[model]
    new = scaled(recipe.train, args.scale)
    base = BASELINES.get(model)
    rows, base_sum = [], None
    if base is not None:
        b = scaled(base.train, args.scale)
        b_threads = args.lecture_threads if base.lecture else threads
        b_label = f"{base.name}: {describe(b, base.model)}"
        if args.reuse_baselines:
            runs, source = committed_baseline(model, path, b_label, b, seeds, b_threads)
        else:   # only the baseline's final dev loss is compared: 20 evaluations are plenty for its curve
            runs = [_progress(model, path, "baseline", run(model, b, base.model, words, vocab, threads=b_threads,
                                                           seed=s, every=max(1, b["max_steps"] // 20))) for s in seeds]
            source = None
        base_sum = summary(b_label, b, b_threads, runs)
        if source is not None:
            base_sum["from"] = source
        rows.append(base_sum)
    label = f"makemore: {describe(new, recipe.model)}"
    runs = [_progress(model, path, "recipe", run(model, new, recipe.model, words, vocab, threads=threads, seed=s,
                                                 every=every(new["max_steps"]))) for s in seeds]
    new_sum = summary(label, new, threads, runs)
    checks: list[tuple[str, bool]] = []
    if base_sum is not None:
        new_sum["reach"] = reach(runs, base_sum["dev"]["mean"])
        if new_sum["reach"] is not None and "from" not in base_sum:   # times of one day only
            new_sum["speedup"] = speedup(base_sum, new_sum["reach"])
        checks = verdict(model, base_sum, new_sum, on_names=_is_names(path))
    rows.append(new_sum)
    print(table(model, path, len(words), seeds, rows, base_sum["dev"]["mean"] if base_sum else None), flush=True)
    line = verdict_line(model, path, checks)
    print(f"\n{line}\n", flush=True)
    return {"model": model, "words": path, "n_words": len(words), "on_names": _is_names(path), "baseline": base_sum,
            "recipe": new_sum, "checks": [[t, ok] for t, ok in checks], "verdict": line}


def committed_baseline(model: str, path: str, label: str, recipe: dict[str, Any], seeds: list[int],
                       threads: int) -> tuple[list[dict[str, Any]], str]:
    """The runs of `model`'s baseline (`label`, `threads`) on the word file `path`, one per seed, from a committed
    result, and that result's file name; a one-line DataError where no committed result holds them all."""
    words = Path(path).read_bytes()
    for f in committed():
        r, b = f["result"], f["result"]["baseline"]
        if (r["model"] != model or b is None or b["label"] != label or b["threads"] != threads
                or (b["steps"], b["batch_size"]) != (recipe["max_steps"], recipe["batch_size"])
                or _resolve(r["words"]).read_bytes() != words):
            continue
        by_seed = {x["seed"]: x for x in b["runs"]}
        if all(s in by_seed for s in seeds):
            return [by_seed[s] for s in seeds], f["file"]
    raise DataError(f"--reuse-baselines: no committed result in benchmarks/results/ holds the {model} baseline's "
                    f"runs on {path} for seeds {', '.join(map(str, seeds))} on {threads} threads: run without it")


def _resolve(words: str) -> Path:
    return Path(words) if Path(words).is_absolute() else ROOT / words


def committed(folder: Path = RESULTS) -> list[dict[str, Any]]:
    """Every run's `--json` file in `folder`: a list of {"run": the file's contents, "result": one model on one
    file}, in the order the benchmark measures them (models, then word files, as by default)."""
    found = []
    for path in sorted(folder.glob("*.json")):
        run_ = json.loads(path.read_text(encoding="utf-8"))
        found += [{"run": run_, "result": r, "file": path.name} for r in run_["results"]]
    order = {m: i for i, m in enumerate(RECIPES)}
    return sorted(found, key=lambda f: (order[f["result"]["model"]], _word_order(f["result"]["words"])))


def _word_order(path: str) -> tuple[int, str]:
    return (WORDS.index(path), path) if path in WORDS else (len(WORDS), path)


def readme_section(found: list[dict[str, Any]]) -> str:
    """The README's benchmark section from `committed` runs: each table and verdict as the run printed it, with
    the machine's load around the run and the file it came from."""
    parts = []
    for f in found:
        run_, r = f["run"], f["result"]
        rows = [s for s in (r["baseline"], r["recipe"]) if s is not None]
        base_dev = r["baseline"]["dev"]["mean"] if r["baseline"] else None
        text = table(r["model"], r["words"], r["n_words"], run_["seeds"], rows, base_dev)
        parts.append(text.replace("## ", "#### ", 1))        # under the README's own headings
        load = f"{_load(run_['load_start'])} at the start of the run and {_load(run_['load_end'])} at its end"
        parts.append(f"{r['verdict']}. Measured on {run_['cpus']} CPUs with torch {run_['torch']}, load average "
                     f"(1, 5, 15 min) {load} (`benchmarks/results/{f['file']}`).")
    return "\n\n".join(parts)


def _load(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def readme(check: bool) -> int:
    """Write README.md's benchmark section from the committed runs, or (`check`) say whether it is up to date."""
    from mmlib.results import update_readme
    found = committed()
    stale = ("README.md's benchmark section differs from benchmarks/results/: run "
             "`python benchmarks/recipes.py --readme write`")
    status = update_readme(readme_section(found), check=check, markers=MARKERS, stale=stale)
    if not check:
        print(f"wrote {len(found)} benchmark tables into README.md")
    return status


def _progress(model: str, path: str, which: str, r: dict[str, Any]) -> dict[str, Any]:
    print(f"  {model} {which} on {path}, seed {r['seed']}: dev {r['dev']:.4f} in {r['seconds']:.1f} s", file=sys.stderr,
          flush=True)
    return r


def _is_names(path: str) -> bool:
    """Whether `path` holds the course's names (data/names.txt or a copy of it): the transformer's 1.93 is set there."""
    return Path(path).read_bytes() == NAMES.read_bytes()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", nargs="+", default=[str(ROOT / w) for w in WORDS], metavar="WORDS.txt",
                    help="the word files (default: data/names.txt data/cities.txt data/surnames.txt)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per recipe and file: 42, 43, ... (default: 3)")
    ap.add_argument("--models", default="wavenet,transformer",
                    help=f"models, separated by commas (default: wavenet,transformer; any of {', '.join(RECIPES)})")
    ap.add_argument("--threads", type=int, default=None,
                    help="PyTorch CPU threads for the command line's recipes (default: PyTorch's, every core)")
    ap.add_argument("--lecture-threads", type=int, default=1,
                    help="PyTorch CPU threads for the lecture's recipe (default: 1, as the lessons run it)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every step budget by this (default: 1)")
    ap.add_argument("--every", type=int, default=200, help="evaluate dev every this many steps (default: 200)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write every number to this JSON file")
    ap.add_argument("--reuse-baselines", action="store_true",
                    help="take the baselines' runs from benchmarks/results/ (same model, words, seeds, threads) "
                    "instead of training them again; no speed-up is printed against them")
    ap.add_argument("--readme", choices=("write", "check"), default=None,
                    help="measure nothing: write README.md's benchmark section from benchmarks/results/*.json "
                    "(check: exit 1 if it differs)")
    args = ap.parse_args(argv)
    if args.readme:
        sys.exit(readme(args.readme == "check"))

    def refuse(message: str) -> None:
        ap.exit(2, f"{ap.prog}: error: {message}\n")     # one line, without argparse's usage above it

    models = args.models.split(",")
    unknown = [m for m in models if m not in RECIPES]
    if unknown:
        refuse(f"--models: no recipe for {', '.join(unknown)}; the models are {', '.join(RECIPES)}")
    if args.seeds < 1 or args.scale <= 0 or args.every < 1:
        refuse("--seeds and --every must be at least 1, --scale above 0")
    if args.reuse_baselines and "wavenet" in models:
        refuse("--reuse-baselines: the wavenet's verdict is a speed-up against its baseline, which only runs measured "
               "side by side may give; run it without --reuse-baselines")
    for path in args.words:          # every file read before the first of hours of training
        try:
            load_words(path)
        except DataError as e:
            refuse(f"--words: {str(e).replace('data_path', '--words')}")
    threads = torch.get_num_threads() if args.threads is None else args.threads
    seeds = [42 + i for i in range(args.seeds)]
    if args.reuse_baselines:         # every baseline found before the first of hours of training
        for m in (m for m in models if m in BASELINES):
            b = scaled(BASELINES[m].train, args.scale)
            for path in args.words:
                try:
                    committed_baseline(m, path, f"{BASELINES[m].name}: {describe(b, BASELINES[m].model)}", b, seeds,
                                       args.lecture_threads if BASELINES[m].lecture else threads)
                except DataError as e:
                    refuse(str(e))
    start = load()
    print(f"load average at the start (1, 5, 15 min): {start}; {os.cpu_count()} CPUs; torch {torch.__version__}; "
          f"threads: lecture {args.lecture_threads}, command line {threads}; step budgets x{args.scale:g}\n"
          "dev loss: the final one; mean (min-max) over the seeds\n", flush=True)
    t0 = time.perf_counter()
    results = [measure(m, w, seeds, args, threads) for m in models for w in args.words]
    end = load()
    print(f"load average at the end (1, 5, 15 min): {end}; {time.perf_counter() - t0:.0f} s in all")
    for r in results:
        print(r["verdict"])
    if args.json:
        Path(args.json).write_text(json.dumps({"load_start": start, "load_end": end, "torch": torch.__version__,
                                               "cpus": os.cpu_count(), "threads": threads,
                                               "lecture_threads": args.lecture_threads, "scale": args.scale,
                                               "every": args.every, "seeds": seeds, "results": results}, indent=1),
                                   encoding="utf-8")


if __name__ == "__main__":
    main()
