"""Does an unattended lesson run always finish? Runs the widget-heavy lessons with papermill, under CPU load, and
counts the runs that hang (issue 15).

    python benchmarks/notebook_hangs.py [--lessons 03 05 06] [--rounds 3] [--load 2] [--timeout 900] [--idle 45]

Each run is the command a user types, `papermill notebooks/NN_name.ipynb OUT -p k v ...`, with the small
parameters the notebook's metadata gives CI (`metadata.mmlib.ci_parameters`), and no per-cell timeout: this
script measures whether runs hang, so it must not turn a hang into an error. Meanwhile `--load` processes
spin on the CPU, as on a busy 2-core machine. The lessons run in turn, `--rounds` times.

A run counts as hung when, for `--idle` seconds, no thread of papermill or its kernel was ever seen runnable
(sampled every 2 s) and together they used under 0.25 CPU-seconds: both sit waiting, which no lesson cell
does. A run that is only slow - on a crowded machine a busy process may get a few percent of a core - keeps
a thread runnable, and gets up to `--timeout` seconds. A hung run is then stopped, after every thread's
Python stack of papermill and its kernel went into the run's log (with `py-spy dump` where py-spy is on
PATH, else papermill's alone through SIGABRT and PYTHONFAULTHANDLER, which changes nothing else); the report
names the cell papermill was executing (papermill saves the output notebook when each cell starts), or says
that every cell had finished.

Writes, under `--out` (default: a new temporary folder), each run's output notebook and log, and
`summary.json`; prints one line per run and the totals. A figure, not a test: whether and how often a race
shows depends on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
LESSONS = ("03", "05", "06")
IDLE_CPU = 0.25           # CPU-seconds: less than this in an `--idle` window, no thread ever runnable: a hang
SAMPLE_EVERY = 2.0        # seconds between CPU samples
TICKS = os.sysconf("SC_CLK_TCK")


def lesson_path(number: str) -> Path:
    paths = sorted(NOTEBOOKS.glob(f"{number}_*.ipynb"))
    if len(paths) != 1:
        raise SystemExit(f"no single learner notebook notebooks/{number}_*.ipynb (found {len(paths)}); "
                         f"give lesson numbers like 03")
    return paths[0]


def ci_parameters(path: Path) -> dict:
    meta = json.loads(path.read_text())["metadata"]
    params = meta.get("mmlib", {}).get("ci_parameters")
    if not params:
        raise SystemExit(f"{path.name} has no metadata.mmlib.ci_parameters to run it small with")
    return params


def papermill_command(path: Path, out: Path, params: dict) -> list[str]:
    papermill = Path(sys.executable).with_name("papermill")
    cmd = [str(papermill), str(path.relative_to(ROOT)), str(out)]
    for k, v in params.items():
        cmd += ["-p", k, str(v)]
    return cmd


def children(pid: int) -> list[int]:
    """Every process below `pid` (the kernel runs in a session of its own, but is papermill's child)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(k) for t in Path(f"/proc/{p}/task").iterdir()
                    for k in (t / "children").read_text().split()]
        except OSError:
            kids = []
        found += kids
        todo += kids
    return found


def cpu_seconds(pids: list[int]) -> tuple[float, bool]:
    """CPU-seconds the processes used so far, and whether any of their threads is runnable now."""
    total, runnable = 0, False
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            states = [t.read_text().rsplit(")", 1)[1].split()[0] for t in Path(f"/proc/{p}/task").glob("*/stat")]
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])     # utime, stime
        runnable = runnable or "R" in states
    return total / TICKS, runnable


def running_cell(out: Path) -> str:
    """Where the run is, from the output notebook papermill saved last: 'cell N: its first line'."""
    try:
        cells = json.loads(out.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return "before the first cell (no output notebook yet)"
    status = [c.get("metadata", {}).get("papermill", {}).get("status") for c in cells]
    if "running" in status:
        i = status.index("running")
        first = next((line.strip() for line in "".join(cells[i]["source"]).splitlines() if line.strip()), "")
        return f"cell {i}: {first[:80]}"
    if "pending" in status:
        return "between cells"
    return "after the last cell (papermill closing down)"


def dump_stacks(proc: subprocess.Popen, log: Path) -> None:
    """Every thread's Python stack of papermill and its kernel, into the run's log: with py-spy where it is
    on PATH (it reads a live process), else by SIGABRT and PYTHONFAULTHANDLER (papermill's stacks only: the
    kernel's stderr is captured by the kernel itself, and dies with it)."""
    pids = [proc.pid] + children(proc.pid)
    spy = shutil.which("py-spy")
    with open(log, "a") as f:
        for p in pids:
            f.write(f"\n==== stacks of pid {p} ({'papermill' if p == proc.pid else 'kernel'})\n")
            f.flush()
            if spy:
                subprocess.run([spy, "dump", "--pid", str(p)], stdout=f, stderr=subprocess.STDOUT, timeout=60)
    if not spy:
        os.kill(proc.pid, signal.SIGABRT)
        time.sleep(1.0)


def stop(proc: subprocess.Popen) -> None:
    """Stop papermill and its kernel (which runs in a session of its own)."""
    for p in children(proc.pid) + [proc.pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def run_once(path: Path, out: Path, log: Path, timeout: float, idle: float) -> dict:
    cmd = papermill_command(path, out, ci_parameters(path))
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    t0 = time.monotonic()
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            status = watch(proc, t0, timeout, idle)
        except KeyboardInterrupt:
            stop(proc)
            raise
    cell = None
    if status in ("hang", "timeout (still busy)"):
        cell = running_cell(out)
        dump_stacks(proc, log)
        stop(proc)
    return {"lesson": path.name, "status": status, "seconds": round(time.monotonic() - t0, 1), "cell": cell,
            "log": str(log)}


def watch(proc: subprocess.Popen, t0: float, timeout: float, idle: float) -> str:
    """Wait for the run to end: 'ok', 'failed (rc N)', 'hang' or 'timeout (still busy)'."""
    samples: list[tuple[float, float, bool]] = []   # (time, CPU-seconds of papermill + kernel, runnable)
    while True:
        try:
            rc = proc.wait(SAMPLE_EVERY)
            return "ok" if rc == 0 else f"failed (rc {rc})"
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        samples.append((now, *cpu_seconds([proc.pid] + children(proc.pid))))
        window = [s for s in samples if s[0] >= now - idle]
        if now - window[0][0] >= idle - SAMPLE_EVERY and window[-1][1] - window[0][1] < IDLE_CPU \
                and not any(s[2] for s in window):
            return "hang"
        if now - t0 > timeout:
            return "timeout (still busy)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lessons", nargs="+", default=list(LESSONS), help="lesson numbers (default: 03 05 06)")
    ap.add_argument("--rounds", type=int, default=3, help="how many times each lesson runs (default 3)")
    ap.add_argument("--load", type=int, default=2, help="busy processes beside the runs (default 2)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds a busy run may take (default 900)")
    ap.add_argument("--idle", type=float, default=45,
                    help="seconds without CPU use after which a run counts as hung (default 45)")
    ap.add_argument("--out", type=Path, default=None, help="folder for the notebooks, logs and summary.json")
    args = ap.parse_args(argv)
    for name in ("rounds", "timeout", "idle"):
        if getattr(args, name) <= 0:
            ap.error(f"--{name} must be positive, got {getattr(args, name)}")
    if args.load < 0:
        ap.error(f"--load must be 0 or more, got {args.load}")
    paths = [lesson_path(n) for n in args.lessons]
    out = args.out or Path(tempfile.mkdtemp(prefix="notebook_hangs_"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(paths)} lesson(s) x {args.rounds} round(s) under {args.load} busy process(es); "
          f"files in {out}", flush=True)

    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    runs = []
    try:
        for r in range(args.rounds):
            for path in paths:
                tag = f"{path.stem[:2]}_{r + 1}"
                res = run_once(path, out / f"{tag}.ipynb", out / f"{tag}.log", args.timeout, args.idle)
                runs.append(res)
                where = f" at {res['cell']}" if res["cell"] else ""
                print(f"round {r + 1} {path.name}: {res['status']} in {res['seconds']:.0f} s{where}", flush=True)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    hangs = [r for r in runs if r["status"] == "hang"]
    other = [r for r in runs if r["status"] != "ok" and r["status"] != "hang"]
    summary = {"runs": len(runs), "hangs": len(hangs), "not_ok_otherwise": len(other), "load": args.load,
               "idle_seconds": args.idle, "by_run": runs}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{len(runs)} runs, {len(hangs)} hung, {len(other)} failed or timed out otherwise "
          f"(details: {out / 'summary.json'})")
    return 1 if hangs or other else 0


if __name__ == "__main__":
    sys.exit(main())
