"""The recipes: `makemore train --help` prints exactly mmlib.cli.recipes' defaults, the command line trains with them,
and benchmarks/recipes.py measures them on several word files and seeds with a verdict that follows its numbers."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mmlib import cli
from mmlib.cli import flags
from mmlib.cli.recipes import RECIPES
from mmlib.data import NAMES
from mmlib.models import MODELS
from mmlib.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "recipes.py"
MODEL_NAMES = "|".join(sorted(MODELS, key=len, reverse=True))


# ---- the defaults --help prints --------------------------------------------------------------------


def train_help(capsys, monkeypatch) -> dict[str, str]:
    """`makemore train --help` as printed, one entry per flag: {"--lr": its help text, ...}."""
    monkeypatch.setenv("COLUMNS", "100000")     # argparse wraps at the terminal's width: one line per help text
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    assert e.value.code == 0
    entries: dict[str, str] = {}
    flag = None
    for line in capsys.readouterr().out.splitlines():
        m = re.match(r"  (--[a-z0-9-]+)(?: X)?\s*(.*)$", line)
        if m:
            flag = m.group(1)
            entries[flag] = m.group(2)
        elif flag and line.startswith("      "):      # a help text too long for the flag's column starts below it
            entries[flag] = (entries[flag] + " " + line.strip()).strip()
        else:
            flag = None
    return entries


def per_model(text: str, models: list[str]) -> dict[str, str]:
    """What a "(default: ...)" says for each of `models`: one value for all, or "bigram 0.1, mlp 0.02, ..."."""
    pairs = re.findall(rf"(?:^|, )({MODEL_NAMES}) (.+?)(?=, (?:{MODEL_NAMES}) |$)", text)
    if pairs and text.startswith(pairs[0][0] + " "):
        return dict(pairs)
    return {m: text for m in models}


def help_mismatches(entries: dict[str, str]) -> list[str]:
    """Every training and model setting whose printed default, for some model, is not the recipe's value."""
    wrong = []
    prose = [n for n in flags.train_fields() if "default:" in flags.TRAIN_HELP.get(n, "")]
    assert prose == ["threads"], "only --threads states its default in words (PyTorch's count here)"
    for name in flags.train_fields():
        if name in prose:
            continue
        m = re.search(r"\(default: (.*)\)$", entries[flags.flag_of(name)])
        printed = per_model(m.group(1), list(RECIPES)) if m else {}
        for model, recipe in RECIPES.items():
            want = str(getattr(TrainConfig(**recipe.train), name))
            if printed.get(model) != want:
                wrong.append(f"{flags.flag_of(name)} for {model}: printed {printed.get(model)!r}, recipe {want!r}")
    for name, models in flags.model_fields().items():
        segments = re.findall(rf"(?:^|; )((?:{MODEL_NAMES})(?:, (?:{MODEL_NAMES}))*): .*? \(default: (.*?)\)(?=; |$)",
                              entries[flags.flag_of(name)])
        printed = {}
        for names, default in segments:
            printed.update(per_model(default, names.split(", ")))
        for model in models:
            config = next(f for f in dataclasses.fields(MODELS[model].Config) if f.name == name)
            want = str(RECIPES[model].model.get(name, config.default))
            if name == "block_size" and MODELS[model].per_position:
                want = "longest word + 1"
            if printed.get(model) != want:
                wrong.append(f"{flags.flag_of(name)} for {model}: printed {printed.get(model)!r}, recipe {want!r}")
    return wrong


def test_help_prints_every_recipes_defaults_for_every_model(capsys, monkeypatch):
    entries = train_help(capsys, monkeypatch)
    assert help_mismatches(entries) == []
    assert set(entries) >= {flags.flag_of(n) for n in [*flags.train_fields(), *flags.model_fields()]}


def test_the_help_check_catches_a_default_that_drifted_from_the_recipe(capsys, monkeypatch):
    """The bug the check above guards against: help that prints TrainConfig's defaults, not the recipes'."""
    def drifted(name: str, comment: str) -> str:
        return f"{comment} (default: {next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)})"

    monkeypatch.setattr(flags, "_train_help", drifted)
    wrong = help_mismatches(train_help(capsys, monkeypatch))
    assert any(w.startswith("--lr for transformer: printed '0.1', recipe '0.005'") for w in wrong), wrong


@pytest.mark.parametrize("model", sorted(RECIPES))
def test_the_command_line_trains_with_the_recipe_it_prints(model):
    """No flags but --model: the settings `makemore train` builds are the recipe's, field by field."""
    args = flags.make_parser().parse_args(["train", "-o", "run", "--model", model])
    name, model_config, train_config = cli._model_and_configs(args)
    assert name == model and model_config == RECIPES[model].model
    assert TrainConfig(**train_config) == TrainConfig(**RECIPES[model].train)


# ---- benchmarks/recipes.py -------------------------------------------------------------------------


@pytest.fixture(scope="module", name="bench")
def benchmark_module():
    spec = importlib.util.spec_from_file_location("recipes_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module        # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def summary(mean: float, worst: float, seconds: float, longest: float | None = None,
            reach: tuple[int, float] | None = None) -> dict:
    """A benchmark summary with only the numbers the verdict reads."""
    out = {"dev": {"mean": mean, "min": mean - (worst - mean), "max": worst},
           "seconds": {"mean": seconds, "min": seconds, "max": seconds if longest is None else longest}}
    if reach is not None:
        out["reach"] = {"step": reach[0], "seconds": reach[1]}
    return out


LECTURE = summary(2.0200, 2.0300, 200.0)


@pytest.mark.parametrize("recipe, passes, failing", [
    (summary(2.0150, 2.0240, 20.0, reach=(2_000, 20.0)), True, None),      # 10x sooner, every seed close
    (summary(2.0200, 2.0249, 20.0, reach=(2_000, 25.0)), True, None),      # at the limits: the mean, 8x
    (summary(2.0210, 2.0220, 20.0, reach=(2_000, 20.0)), False, "mean dev"),
    (summary(2.0150, 2.0260, 20.0, reach=(2_000, 20.0)), False, "worst seed"),
    (summary(2.0150, 2.0240, 40.0, reach=(2_000, 26.0)), False, "less training time"),
    (summary(2.0150, 2.0240, 40.0, reach=None), False, "never reaches"),
])
def test_the_wavenet_verdict_follows_the_numbers(bench, recipe, passes, failing):
    recipe.setdefault("reach", None)
    checks = bench.verdict("wavenet", LECTURE, recipe, on_names=False)
    assert len(checks) == 3 and all(ok for _, ok in checks) == passes
    assert [text for text, ok in checks if not ok and failing in text] == [t for t, ok in checks if not ok]
    line = bench.verdict_line("wavenet", "w.txt", checks)
    assert line.startswith("verdict wavenet on w.txt: " + ("PASS" if passes else "FAIL"))


@pytest.mark.parametrize("recipe, on_names, passes", [
    (summary(1.9290, 1.9350, 250.0, longest=290.0), True, True),
    (summary(1.9310, 1.9320, 250.0, longest=290.0), True, False),     # mean above 1.93
    (summary(1.9000, 1.9100, 250.0, longest=301.0), True, False),     # one seed over 5 minutes
    (summary(2.3000, 2.3100, 400.0, longest=500.0), False, True),      # elsewhere: not worse than before, any time
    (summary(2.3300, 2.3400, 100.0), False, False),
])
def test_the_transformer_verdict_follows_the_numbers(bench, recipe, on_names, passes):
    previous = summary(1.9521 if on_names else 2.3200, 1.96, 200.0)
    checks = bench.verdict("transformer", previous, recipe, on_names=on_names)
    assert len(checks) == (2 if on_names else 1) and all(ok for _, ok in checks) == passes
    assert ("PASS" in bench.verdict_line("transformer", "w.txt", checks).split(";")[0]) == passes


def test_no_criteria_for_other_models(bench):
    assert bench.verdict("mlp", LECTURE, summary(2.0, 2.1, 1.0), on_names=False) == []
    assert "none" in bench.verdict_line("mlp", "w.txt", [])


def _row(text: str, label: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_a_tiny_run_prints_its_tables_and_a_verdict_computed_from_them(bench, tmp_path):
    words = tmp_path / "tiny.txt"
    words.write_text("".join(NAMES.read_text(encoding="utf-8").splitlines(keepends=True)[:200]), encoding="utf-8")
    out = tmp_path / "recipes.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--words", str(words), "--seeds", "2", "--scale", "0.001",
                           "--every", "1", "--threads", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert re.search(r"load average at the start \(1, 5, 15 min\): \[[\d., ]+\]", text)
    assert re.search(r"load average at the end \(1, 5, 15 min\): \[[\d., ]+\]", text)
    assert "mean (min-max) over the seeds" in text
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["seeds"] == [42, 43] and [r["model"] for r in data["results"]] == ["wavenet", "transformer"]
    for r in data["results"]:
        assert f"## {r['model']} on {words} (200 words), seeds 42, 43" in text
        for s in (r["baseline"], r["recipe"]):
            devs = [run["dev"] for run in s["runs"]]
            assert s["dev"] == {"mean": pytest.approx(sum(devs) / 2), "min": min(devs), "max": max(devs)}
            assert [run["curve"][-1][2] for run in s["runs"]] == devs, "the curve ends at the final dev loss"
            row = _row(text, s["label"])
            assert row[3] == f"{s['dev']['mean']:.4f} ({s['dev']['min']:.4f}-{s['dev']['max']:.4f})"
            assert row[4] == f"{s['seconds']['mean']:.1f} ({s['seconds']['min']:.1f}-{s['seconds']['max']:.1f})"
        assert r["baseline"]["label"].startswith("lecture 05: SGD" if r["model"] == "wavenet" else "lesson 06")
        optimizer = {"adamw": "AdamW", "muon": "Muon for hidden matrices, AdamW for the rest,"}
        train = RECIPES[r["model"]].train
        assert r["recipe"]["label"].startswith(f"makemore: {optimizer[train['optimizer']]} lr {train['lr']:g}")
        assert r["recipe"]["reach"] == bench.reach(r["recipe"]["runs"], r["baseline"]["dev"]["mean"])
        checks = bench.verdict(r["model"], r["baseline"], r["recipe"], on_names=False)
        assert r["verdict"] == bench.verdict_line(r["model"], str(words), checks)
        assert f"\n{r['verdict']}\n" in text and text.rstrip().endswith(data["results"][-1]["verdict"])


def test_reused_baselines_are_the_committed_runs_and_no_speed_up_is_printed_against_them(bench):
    base = bench.BASELINES["transformer"]
    label = f"{base.name}: {bench.describe(base.train, base.model)}"
    found = [f for f in bench.committed() if f["result"]["model"] == "transformer"
             and f["result"]["words"] == "data/names.txt"]
    assert len(found) == 1
    runs, source = bench.committed_baseline("transformer", "data/names.txt", label, base.train, [42, 43, 44], 2)
    assert source == found[0]["file"] and runs == found[0]["result"]["baseline"]["runs"]
    with pytest.raises(bench.DataError, match="no committed result .* on 1 threads: run without it"):
        bench.committed_baseline("transformer", "data/names.txt", label, base.train, [42, 43, 44], 1)
    reused = {**bench.summary(label, base.train, 2, runs), "from": source}
    recipe = {**bench.summary("makemore: x", base.train, 2, runs), "reach": {"step": 200, "seconds": 9.0}}
    text = bench.table("transformer", "data/names.txt", 3, [42, 43, 44], [reused, recipe], 1.95)
    assert "| step 200, 9.0 s |" in text and "sooner" not in text
    assert f"(reused from an earlier run's benchmarks/results/{source}: the times are that run's)" in text


def test_reuse_baselines_is_refused_before_any_training_where_it_cannot_apply(bench, capsys, tmp_path):
    words = tmp_path / "w.txt"
    words.write_text("anna\nbob\ncarla\n", encoding="utf-8")
    for argv, message in [(["--models", "wavenet"], "--reuse-baselines: the wavenet's verdict is a speed-up"),
                          (["--models", "transformer", "--words", str(words)],
                           f"no committed result in benchmarks/results/ holds the transformer baseline's runs on "
                           f"{words}")]:
        with pytest.raises(SystemExit) as e:
            bench.main([*argv, "--reuse-baselines", "--threads", "2"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("argv, message", [
    (["--models", "wavenet,lstm"], "--models: no recipe for lstm"),
    (["--words", "no-such.txt"], "--words: no word file at no-such.txt"),
    (["--seeds", "0"], "--seeds and --every must be at least 1"),
])
def test_bad_arguments_get_one_line(bench, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


# ---- the committed runs README.md quotes -----------------------------------------------------------


def test_the_readme_quotes_the_committed_runs_of_todays_recipes_and_their_verdicts_follow_the_numbers(bench):
    found = bench.committed()
    assert found, "benchmarks/results/ holds no run"
    for f in found:
        run, r = f["run"], f["result"]
        where = f"benchmarks/results/{f['file']}, {r['model']} on {r['words']}"
        assert run["scale"] == 1 and len(run["seeds"]) >= 3, f"{where}: not a full run of 3 seeds or more"
        recipe = RECIPES[r["model"]]
        assert r["recipe"]["label"] == f"makemore: {bench.describe(recipe.train, recipe.model)}", \
            f"{where}: measured another recipe than mmlib.cli.recipes' (rerun the benchmark for it)"
        assert (r["recipe"]["steps"], r["recipe"]["batch_size"]) == (recipe.train["max_steps"],
                                                                     recipe.train["batch_size"]), where
        if r["baseline"] is not None:
            checks = bench.verdict(r["model"], r["baseline"], r["recipe"], on_names=r["on_names"])
            assert bench.verdict_line(r["model"], r["words"], checks) == r["verdict"], where
    from mmlib.results import README, readme_with_table
    text = README.read_text(encoding="utf-8")
    assert readme_with_table(text, bench.readme_section(found), bench.MARKERS) == text, \
        "README.md's benchmark section is out of date: python benchmarks/recipes.py --readme write"
