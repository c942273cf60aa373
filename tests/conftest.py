"""Shared fixtures: running lessons with papermill at the small parameters CI uses, and the one JupyterLab
server and the one Chromium the browser tests share.

Every lesson notebook stores its CI parameters in its own metadata (`metadata.mmlib.ci_parameters`),
so a lesson and the budget it is tested at live in one file; the learner versions run at a smaller smoke
budget derived from them (`smoke_parameters`). `run_lesson` executes a notebook once per test session with
those parameters plus `metrics_path`, and returns the metrics it wrote and the executed notebook; tests for
the same notebook share that one run.

Marks (registered in pyproject.toml): `slow` tests are left out of a plain `pytest` and of CI, each with a
smaller twin that CI runs (`pytest -m "slow or not slow"` runs everything); `browser` tests drive
JupyterLab or the website in Chromium (`pytest -m "not browser"` leaves them out).
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import torch

from mmlib.notebooks import CELL_TIMEOUT, run_notebook

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
LEARNER = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((NOTEBOOKS / "solutions").glob("[0-9][0-9]_*_solutions.ipynb"))
ALL = LEARNER + SOLUTIONS


def nb_id(path: Path) -> str:
    return path.stem


def ci_parameters(path: Path) -> dict:
    nb = nbformat.read(path, as_version=4)
    return dict(nb.metadata.get("mmlib", {}).get("ci_parameters", {}))


# The learner versions run at a smoke budget, on a short word list, under papermill: their code is the solutions'
# but for the answer cells (checked when they are generated, mmlib.learner_notebooks), and their outputs marked
# `# NBVAL_CHECK_OUTPUT` are the solutions' (tests/test_notebooks.py), which nbval checks in the solutions' run;
# so their run needs to show only that every cell executes and that the checks wait for answers. The budget-heavy
# sanity assertions are the solutions' run's, at the CI parameters.
SMOKE_SHARE = 20


SMOKE_WORDS = 3000
"""The words a learner version's run reads: the first of data/names.txt. Most of a run's cost at a few steps is
what grows with the word list (datasets, evaluations over whole splits), not the training budget."""


@functools.cache
def smoke_words() -> Path:
    """A file of the first SMOKE_WORDS names of data/names.txt, in the temporary folder (written once; replaced
    atomically, so two test workers can ask for it at once)."""
    from mmlib.data import NAMES
    text = "".join(NAMES.read_text(encoding="utf-8").splitlines(keepends=True)[:SMOKE_WORDS])
    path = Path(tempfile.gettempdir()) / f"mmlib-smoke-names-{SMOKE_WORDS}.txt"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        part = path.with_name(f"{path.name}.{os.getpid()}")
        part.write_text(text, encoding="utf-8")
        os.replace(part, path)
    return path


def reads_words(path: Path) -> bool:
    """Whether a lesson takes a word file (`data_path`): every one but lesson 00, which builds its own points."""
    return not path.name.startswith("00_")


def smoke_parameters(path: Path) -> dict:
    """The CI parameters with every training budget among them (a name ending in `steps`) cut to a
    SMOKE_SHARE-th, and at least 1 step, and the SMOKE_WORDS first names as the word list: the same cells, the
    same models, a few steps each on a small list. tests/test_notebooks.py checks that the lesson's own
    parameter checks accept it."""
    smoke = {k: max(1, v // SMOKE_SHARE) if k.endswith("steps") else v for k, v in ci_parameters(path).items()}
    return {**smoke, "data_path": str(smoke_words())} if reads_words(path) else smoke


def run_parameters(path: Path) -> dict:
    """What `run_lesson(path)` runs a lesson at: the solutions at their CI parameters, the learner versions
    at the smoke budget."""
    return ci_parameters(path) if path.parent.name == "solutions" else smoke_parameters(path)


# The tests, and the notebooks' kernels they start (which inherit this), run without progress bars or live
# plots: mmlib.train reads MMLIB_QUIET, the library's one switch for that (README, "Tests").
os.environ["MMLIB_QUIET"] = "1"

# The unit tests train toy models: one thread is faster than several there, and far faster on a busy
# machine where extra threads wait for each other; so do the kernels and commands the tests start (through
# OMP_NUM_THREADS, which PyTorch reads at start), since two test workers already keep two cores busy. Lessons
# 02-06 ask for their threads themselves; lessons 00 and 01 take PyTorch's default, this one.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.hookimpl(tryfirst=True)   # the groups must be there when xdist's own hook reads them
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, every test that runs a lesson joins that lesson's group, so the lesson's
    CI-sized run (cached per worker by `run_lesson`) happens once rather than once per worker; and every
    `browser` test joins one group, so one JupyterLab server and one Chromium serve them all."""
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.xdist_group("browser"))
            continue
        if "run_lesson" not in getattr(item, "fixturenames", ()):
            continue
        m = re.search(r"test_lesson(\d\d)|\[(\d\d)_", item.nodeid)
        if m:
            item.add_marker(pytest.mark.xdist_group(f"lesson{m.group(1) or m.group(2)}"))


@pytest.fixture(autouse=True, scope="session")
def _quiet_home(tmp_path_factory):
    """Jupyter and matplotlib write into $HOME; keep the tests out of the learner's."""
    home = tmp_path_factory.mktemp("home")
    old = {k: os.environ.get(k) for k in ("MPLCONFIGDIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR")}
    os.environ["MPLCONFIGDIR"] = str(home / "mpl")
    os.environ["IPYTHONDIR"] = str(home / "ipython")
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# How many exercise checks each lesson runs (its `tally(...)` in the results cell), for the lessons whose checks
# are all counted alike: tests/test_notebooks.py's table runs each lesson's two versions against it.
EXERCISE_CHECKS = {
    "00": 14,          # 3 sigmoid rows, 3 numerical-gradient functions, 4 cross-entropy cases of 2 rows each
    "03": 6,
    "05": 9 + 8 + 5 + 1,
    "06": 18,          # 5 attention cases, 6 head rows, 6 grouped-query cases, 1 dev loss
}


def assert_checks(metrics: dict, total: int, status: str) -> None:
    """The lesson ran all `total` of its exercise checks and each one ended as `status`: "correct" in the
    solutions version, "todo" (not attempted) in the learner's."""
    c = metrics["checks"]
    assert c["total"] == total, c
    assert c[status] == total, c


def stdout(cell) -> str:
    """What a committed code cell printed (its stream outputs), to read the numbers of a default run."""
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def parameter_error(path: Path, tmp_path: Path, **parameters):
    """Run a lesson in a real kernel with `parameters` that must be refused; return papermill's error (its
    `ename` and `evalue` are the exception the lesson raised), failing the test if the lesson ran. For what
    only a kernel shows (IPython's one-line traceback of a diverging run); a refusal itself: `refusal`."""
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as err:
        run_notebook(path, tmp_path / path.name, parameters=parameters)
    return err.value


def _no_setup(seed, device, threads=None):
    """Stands in for mmlib.runtime.setup, which would seed this test process and set its threads."""
    return device, None


def run_parameter_checks(path: Path, **overrides) -> None:
    """A lesson's imports, its parameters cell with `overrides` applied, and the cell that checks them,
    executed in this process (no kernel to start): a bad value must raise before anything trains.

    `setup` is replaced by a stand-in (give `setup=` to replace it otherwise). That papermill's injected
    parameters reach that cell: `refusal`, on the notebook papermill writes."""
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    p = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    scope: dict = {}
    for c in code[:p + 1]:
        exec(c.source, scope)       # noqa: S102 - the course's own notebook
    scope.update({"setup": _no_setup, **overrides})
    exec(code[p + 1].source, scope)  # noqa: S102


def refusal(path: Path, tmp_path: Path, **parameters) -> tuple[Exception, str]:
    """Where `path` stops with `parameters` injected as papermill injects them: papermill writes the notebook
    with its injected-parameters cell after the `parameters` cell (`prepare_only`, no kernel), and the code
    cells of that notebook run in this process, in order, until one raises. Returns the exception and the
    source of the cell that raised it; fails the test if every cell up to the data cell (the first that
    loads the words) ran. `setup` is replaced as in `run_parameter_checks`."""
    nb = nbformat.read(run_notebook(path, tmp_path / path.name, parameters=parameters, prepare_only=True),
                       as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in code]
    p = next(i for i, t in enumerate(tags) if "parameters" in t)
    assert "injected-parameters" in tags[p + 1], "papermill put its injected parameters elsewhere"
    scope: dict = {}
    for c in code:
        try:
            exec(c.source, scope)       # noqa: S102 - the course's own notebook
        except Exception as err:        # noqa: BLE001 - the refusal under test, whatever its type
            return err, c.source
        scope["setup"] = _no_setup
        if "load_words(" in c.source:
            break
    pytest.fail(f"{path.name} ran to its data cell with {parameters} without refusing them")


_runs: dict[str, tuple[dict, nbformat.NotebookNode | None]] = {}


# nbval's pytest, started without rfc3987_syntax: jsonschema (which nbformat validates notebooks with) imports it
# where it is installed, only to check the `iri` formats of a schema, and that import builds a grammar, over a
# second of CPU in every process. The notebook schema uses no `format` at all, so nbval checks the same without it.
NBVAL_PYTEST = "import sys; sys.modules['rfc3987_syntax'] = None; import pytest; sys.exit(pytest.main(sys.argv[1:]))"


def nbval(notebook: Path, cwd: Path) -> None:
    """Execute `notebook` under nbval (`--nbval-lax`): any cell error fails, and every cell marked
    `# NBVAL_CHECK_OUTPUT` must reproduce its committed output."""
    proc = subprocess.run(   # -n 0: the course's addopts would start pytest-xdist workers for one notebook
        [sys.executable, "-c", NBVAL_PYTEST, "-n", "0", "--nbval-lax", "-q", "-p", "no:cacheprovider",
         "--nbval-cell-timeout", str(CELL_TIMEOUT), "--rootdir", str(notebook.parent), str(notebook)],
        cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"nbval failed on {notebook.name}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"


@pytest.fixture(scope="session")
def run_lesson(tmp_path_factory):
    """`run_lesson(path, **overrides) -> (metrics, executed_notebook)`, cached per session.

    Without overrides a solution runs once at its CI parameters *under nbval*, so the same run proves that
    every cell executes, that the budget-independent outputs match the committed ones, and yields the metrics
    (the executed notebook is then None: nbval does not keep it). A learner version runs at the smoke budget
    (`smoke_parameters`), and any lesson with overrides (another data file, more steps, applied over those
    parameters), under papermill, which returns the executed notebook too.
    """
    def run(path: Path, **overrides) -> tuple[dict, nbformat.NotebookNode | None]:
        key = f"{path}:{sorted(overrides.items())}"
        if key not in _runs:
            out = tmp_path_factory.mktemp(nb_id(path))
            params = {**run_parameters(path), **overrides, "metrics_path": str(out / "metrics.json")}
            target = out / path.name
            if overrides or path.parent.name != "solutions":
                executed = nbformat.read(run_notebook(path, target, parameters=params), as_version=4)
            else:
                nbval(run_notebook(path, target, parameters=params, prepare_only=True), cwd=path.parent)
                executed = None
            metrics = json.loads((out / "metrics.json").read_text())
            _runs[key] = (metrics, executed)
        return _runs[key]

    return run


# ---- the browser tests' JupyterLab and Chromium: one of each per test run --------------------------------
# Chromium is Debian's package (`apt-get install -y chromium`), never Playwright's download. Without
# /usr/bin/chromium the browser tests are skipped on a learner's machine and fail in CI (the environment
# variable CI is set), so CI can never pass by silently skipping them.

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = "install Debian's Chromium with `apt-get update && apt-get install -y chromium` (as root)"
# Without the networking flags Chromium keeps trying (and failing) to reach Google's servers.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
# What Playwright's own launch passes a headless Chromium, so that pages lay out and behave as under it: no
# scrollbars taking width, hover and a fine pointer, pop-ups allowed, timers of a page not in front not slowed.
HEADLESS_AS_PLAYWRIGHT = [
    "--headless", "--hide-scrollbars", "--mute-audio",
    "--blink-settings=primaryHoverType=2,availableHoverTypes=2,primaryPointerType=4,availablePointerTypes=4",
    "--disable-popup-blocking", "--disable-background-timer-throttling", "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding", "--disable-hang-monitor", "--disable-ipc-flooding-protection",
    "--disable-extensions", "--disable-default-apps", "--force-color-profile=srgb", "--password-store=basic",
    "--no-default-browser-check", "--enable-automation",
]
ARTIFACTS = Path(__file__).parent / "artifacts"     # screenshots: outputs, never committed
LAB_OVERRIDES = Path(__file__).parent / "browser" / "overrides.json"
SERVER_START = 60      # seconds for JupyterLab or Chromium to answer, generous against a loaded 2-core machine
SERVER_STOP = 15


def in_ci() -> bool:
    """CI services set CI (GitHub Actions, GitLab, ...); any non-empty value counts."""
    return bool(os.environ.get("CI", "").strip())


def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    if not (ARTIFACTS / ".gitignore").exists():
        (ARTIFACTS / ".gitignore").write_text("*\n")
    return ARTIFACTS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Process ids below `pid` (Linux /proc): kernels run in their own session, so killing the
    server's process group does not reach them; this finds them if the server dies uncleanly."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def _stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group of `proc`, SIGKILL if it lingers, then to whatever it started."""
    leftovers = _descendants(proc.pid)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(SERVER_STOP)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(SERVER_STOP)
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class Chromium:
    """The run's one headless Chromium, reached over its DevTools endpoint: each test connects with its own
    Playwright (`connect`) and opens its own browser context (cookies, viewport, routes), closed after."""
    endpoint: str

    def connect(self, pw):
        return pw.chromium.connect_over_cdp(self.endpoint)


@pytest.fixture(scope="session")
def chromium(tmp_path_factory) -> Chromium:
    if not CHROMIUM.exists():
        if in_ci():
            pytest.fail(f"{CHROMIUM} not found, and CI is set so this test must run: {INSTALL_HINT}")
        pytest.skip(f"{CHROMIUM} not found; to run the browser tests, {INSTALL_HINT}")
    profile = tmp_path_factory.mktemp("chromium")
    log = profile / "chromium.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(CHROMIUM), "--remote-debugging-port=0", f"--user-data-dir={profile / 'profile'}",
                                 *HEADLESS_AS_PLAYWRIGHT, *CHROMIUM_FLAGS, "about:blank"],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START
        while not (m := re.search(r"DevTools listening on (ws://\S+)", log.read_text(errors="replace"))):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium gave no DevTools endpoint (exit code {proc.poll()}):\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield Chromium(m.group(1))
    finally:
        _stop_process_group(proc)


@dataclass
class Lab:
    url: str
    token: str
    root_dir: Path
    log: Path

    def api(self, method: str, path: str) -> object:
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def close_sessions(self) -> None:
        """Shut down every notebook session and kernel a test's page opened (the server goes on)."""
        for s in self.api("GET", "/api/sessions") or []:
            self.api("DELETE", f"/api/sessions/{s['id']}")
        for k in self.api("GET", "/api/kernels") or []:
            self.api("DELETE", f"/api/kernels/{k['id']}")


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Lab:
    """The run's one JupyterLab server on a free localhost port, isolated in a temporary folder (home,
    Jupyter config/data/runtime, lab settings, matplotlib cache), stopped with its kernels afterwards.
    Each test puts its notebooks into `root_dir` under names of its own."""
    base = tmp_path_factory.mktemp("lab")
    root, home = base / "root", base / "home"
    config = home / "jupyter-config"
    for d in (root, home, config / "labconfig"):
        d.mkdir(parents=True)
    # Lab settings defaults for this server only (no write into the environment's share/):
    # no "get Jupyter news?" toast over the page, and every cell attached to the page.
    shutil.copy(LAB_OVERRIDES, config / "labconfig" / "default_setting_overrides.json")
    env = {
        **os.environ,
        "HOME": str(home),
        "MPLCONFIGDIR": str(home / "mpl"),
        "IPYTHONDIR": str(home / "ipython"),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(home / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(home / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "lab-user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "lab-workspaces"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = base / "jupyterlab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root,
                                start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}", token, root, log)
    try:
        deadline = time.monotonic() + SERVER_START
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with code {proc.returncode}:\n{server.log_tail()}")
            try:
                server.api("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within {SERVER_START} s:\n{server.log_tail()}")
                time.sleep(0.25)
        yield server
    finally:
        _stop_lab(server, proc)


def _stop_lab(server: Lab, proc: subprocess.Popen) -> None:
    """Shut the kernels down through the REST API, then the server; kill whatever is left."""
    if proc.poll() is None:
        try:
            server.close_sessions()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass  # the server is going anyway; the kill below covers its kernels
    _stop_process_group(proc)
