"""The README's command-line block works as written after the README's set-up.

The commands are read from README.md, between `<!-- cli:begin -->` and `<!-- cli:end -->` (as `.ci/run` reads
the test block), and each is run by bash in a folder laid out like the repository: the word lists of
`data/` (their first few hundred lines, so it is quick) and a `.venv` that is the environment running these
tests. Every `train` that starts a run gets small-size flags appended (later flags win), nothing else is
changed: `source .venv/bin/activate`, `makemore ...` and `torchrun ...` are the README's own lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)
# The smallest run of each model the README names that still trains, evaluates, samples and saves.
SMALL = ["--max-steps", "4", "--eval-every", "2", "--warmup", "2", "--batch-size", "8", "--samples", "2",
         "--threads", "1"]
SMALL_MODEL = {"wavenet": ["--n-embd", "4", "--n-hidden", "8"],
               "transformer": ["--n-embd", "8", "--n-head", "2", "--n-layer", "1"]}


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- cli:begin -->\s*```bash\n(.*?)```\s*<!-- cli:end -->", readme, flags=re.S)
    assert len(blocks) == 1, "README.md must hold its command block between <!-- cli:begin --> and <!-- cli:end -->"
    return [line.split(" #")[0].strip() for line in blocks[0].splitlines() if line.split(" #")[0].strip()]


def small(command: str) -> str:
    """`command` with small sizes appended when it starts a training run (a resumed run keeps its own)."""
    words = command.split()
    if "train" not in words or "--resume" in words:
        return command
    model = words[words.index("--model") + 1] if "--model" in words else "transformer"   # makemore's default
    return " ".join([command, *SMALL, *SMALL_MODEL[model]])


def test_the_block_activates_the_environment_then_runs_makemore_and_torchrun():
    commands = readme_commands()
    assert commands[0] == "source .venv/bin/activate", "the block must say how makemore gets onto the PATH"
    tools = {c.split()[0] for c in commands[1:]}
    assert tools == {"makemore", "torchrun"}, tools
    assert all(small(c) != c for c in commands if " train " in c and "--resume" not in c)


@pytest.mark.skipif(not (VENV / "bin" / "activate").exists() or not (VENV / "bin" / "makemore").exists(),
                    reason="not run from a virtual environment with makemore installed (the README's .venv)")
def test_every_command_of_the_readme_runs_as_written(tmp_path):
    (tmp_path / "data").mkdir()
    for name in ("cities.txt", "names.txt"):
        lines = (ROOT / "data" / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (tmp_path / "data" / name).write_text("".join(lines[:300]), encoding="utf-8")
    (tmp_path / ".venv").symlink_to(VENV)
    activate, *commands = readme_commands()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("VIRTUAL_ENV", None)
    # Off the PATH: the commands must find makemore and torchrun through the activation alone.
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != VENV / "bin")
    outputs = []
    for command in commands:
        r = subprocess.run(["bash", "-c", f"set -euo pipefail; {activate}; {small(command)}"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=180, env=env)
        outputs.append(r.stdout)
        assert r.returncode == 0, f"{command}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    train, sample, evaluate, resume, ddp = outputs
    assert "wavenet:" in train and "best so far, saved" in train, train
    assert len(sample.splitlines()) == 12, sample    # -n 12
    assert re.search(r"^test +\d\.\d{4}", evaluate, flags=re.M), evaluate
    assert "nothing to resume" in resume, resume    # the run above finished; a stopped one would go on
    assert "2 processes agree on the parameters" in ddp, ddp
    assert (tmp_path / "names" / "best.pt").exists() and (tmp_path / "cities" / "last.pt").exists()


def test_a_train_command_gets_small_sizes_and_a_resume_keeps_its_own():
    assert small("makemore train -i data/cities.txt -o cities --model wavenet").endswith("--n-embd 4 --n-hidden 8")
    assert "--n-layer 1" in small("torchrun --standalone --nproc_per_node 2 -m mmlib train -i data/names.txt -o n")
    assert small("makemore train -o cities --resume") == "makemore train -o cities --resume"
    assert small("makemore sample -o cities -n 12 --seed 7") == "makemore sample -o cities -n 12 --seed 7"
