"""Lesson 03's initialisation explorer in a real browser (issue 3, "In a real browser").

The widget unit tests drive the explorer from Python; this one checks what a learner actually
sees. It starts JupyterLab on localhost, opens a copy of lesson 03's learner version (parameterised with
its smoke budget, conftest.run_parameters) in headless Debian Chromium driven by Playwright, runs every cell, moves the
"gain" slider with the keyboard and checks that the explorer prints the new value, redraws its
plot and reports different statistics. A screenshot goes to `tests/artifacts/browser_lesson03.png`.

Chromium is Debian's package (`apt-get install -y chromium`), never Playwright's download. The run's one
JupyterLab server (`lab`) and one Chromium (`chromium`) are tests/conftest.py's, shared by every browser
test; without /usr/bin/chromium the tests are skipped on a learner's machine and fail in CI.

Everything the server and kernel write (home, Jupyter config/data/runtime, lab settings,
matplotlib cache) goes to a temporary folder; the server and its kernels are stopped at the end.
A second test (issue 16) opens the committed learner notebooks that hold explorers as a reader first
meets them, untrusted and not run, and checks that each explorer shows a picture, not widget text.

The hooks into JupyterLab's page (class names, menu labels) were checked on JupyterLab 4.6 and
ipywidgets 8.1 (see ../shared/notes/jupyterlab-in-a-browser.md).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from conftest import NOTEBOOKS, artifacts, run_parameters

pytestmark = pytest.mark.browser

LESSON = NOTEBOOKS / "03_activations_batchnorm.ipynb"

# Bounded waits, in seconds. Generous against a loaded 2-core CI machine; a normal run needs a
# fraction of each.
PAGE_READY = 60
RUN_ALL = 180          # every cell of lesson 03 at its smoke budget
REDRAW = 30            # one slider move to a redrawn plot
# The kernel item of JupyterLab's status bar reads "Python 3 (ipykernel) | Idle" once a kernel is
# connected and not running anything.
KERNEL_IDLE = """() => {
    const t = document.querySelector('#jp-main-statusbar')?.innerText ?? '';
    return /\\| Idle\\b/.test(t) && !t.includes('No Kernel');
}"""
# Keys pressed on the gain slider's handle: End jumps to the maximum (gain 5, where tanh saturates:
# a change nobody can miss in the screenshot), then one step down and up again. Each key is its own
# kernel round trip, so the test must wait for the final value, not for the first change.
GAIN_KEYS = ("End", "ArrowLeft", "ArrowRight")


def _prepare_lesson(path: Path, root: Path) -> str:
    """Copy `path` into the server's folder `explorer/` with the parameters `run_lesson` runs it at injected
    and no outputs, so the page shows only what this run computes. Returns the copy's path below the server's root."""
    from mmlib.notebooks import run_notebook

    assert path.exists(), f"{path} is missing"
    dest = root / "explorer" / path.name
    dest.parent.mkdir(exist_ok=True)
    run_notebook(path, dest, parameters=run_parameters(path), prepare_only=True)
    nb = nbformat.read(dest, as_version=4)
    assert any(c.cell_type == "code" and "init_explorer(" in c.source for c in nb.cells), \
        f"{path.name} has no cell that displays the explorer (`init_explorer(`)"
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nb.metadata.pop("widgets", None)  # saved widget state from the committed run
    nbformat.write(nb, dest)
    return f"explorer/{dest.name}"


def _gain_in(text: str) -> float | None:
    """The gain value the explorer's text names (`gain=1.70`, `gain: 1.7`, `gain 1.70`)."""
    m = re.search(r"\bgain\b\s*[=:]?\s*(-?\d+(?:\.\d*)?)", text)
    return float(m.group(1)) if m else None


def _without_gain(text: str) -> str:
    return re.sub(r"\bgain\b\s*[=:]?\s*-?\d+(?:\.\d*)?", "gain=?", text)


def _names(printed: float | None, value: float) -> bool:
    """Whether `printed` is `value` shown with some rounding (the slider's own steps are coarser)."""
    return printed is not None and abs(printed - value) < 5e-3 + 1e-9


def test_init_explorer_in_jupyterlab(chromium, lab):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect, sync_playwright

    name = _prepare_lesson(LESSON, lab.root_dir)
    screenshot, failure_shot = artifacts() / "browser_lesson03.png", artifacts() / "browser_lesson03_failure.png"
    for old in (screenshot, failure_shot):
        old.unlink(missing_ok=True)
    page_errors: list[str] = []
    t0 = time.monotonic()
    timings: dict[str, float] = {}  # seconds since the browser started, printed at the end

    def mark(step: str) -> None:
        timings[step] = round(time.monotonic() - t0, 1)

    with sync_playwright() as pw:
        context = chromium.connect(pw).new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(PAGE_READY * 1000)
        page.on("pageerror", lambda e: page_errors.append(str(e)))

        def fail(why: str) -> None:
            try:
                page.screenshot(path=str(failure_shot))
                why += f"\nscreenshot: {failure_shot}"
            except PlaywrightError:
                pass
            pytest.fail(f"{why}\ntimings: {timings}\npage errors: {page_errors[-5:]}\nserver log:\n{lab.log_tail()}")

        try:
            # A workspace of its own: the server is shared, and a workspace remembers the notebooks opened in it.
            page.goto(f"{lab.url}/lab/workspaces/explorer/tree/{name}?token={lab.token}")
            # The execution indicator says "idle" before a kernel exists ("No Kernel |
            # Initializing"), so readiness is read from the status bar's kernel item instead.
            page.wait_for_function(KERNEL_IDLE, timeout=PAGE_READY * 1000, polling=100)
            mark("kernel ready")

            # Run > Run All Cells, then wait until no cell is queued or running ("[*]") and the
            # prompts show execution counts (JupyterLab clears the queue when a cell raises).
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
            page.wait_for_function(
                """() => {
                    const p = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
                        .map(e => e.textContent);
                    return p.length > 0 && !p.some(t => t.includes('*')) && p.some(t => /\\d/.test(t));
                }""",
                timeout=RUN_ALL * 1000, polling=250,
            )
            prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputPrompt").all_inner_texts()
            if not re.search(r"\d", prompts[-1]):
                errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
                fail("Run All stopped before the last cell:\n" + "\n".join(errors.all_inner_texts())[-3000:])
            page.wait_for_function(KERNEL_IDLE, timeout=REDRAW * 1000, polling=100)
            mark("run all done")

            # The explorer: the code cell that calls init_explorer( and shows a "gain" slider.
            gain = page.locator(".widget-slider").filter(
                has=page.locator(".widget-label", has_text=re.compile(r"^\s*gain\s*$")))
            cell = page.locator(".jp-CodeCell").filter(
                has=page.locator(".jp-InputArea-editor", has_text="init_explorer(")).filter(has=gain).first
            if cell.count() == 0:
                fail("no cell calling init_explorer( shows a slider labelled 'gain'")
            slider = cell.locator(".widget-slider").filter(
                has=page.locator(".widget-label", has_text=re.compile(r"^\s*gain\s*$")))
            expect(slider).to_have_count(1)
            for other in ("depth", "width"):  # the contract's other sliders are there too
                expect(cell.locator(".widget-label", has_text=re.compile(rf"^\s*{other}\s*$"))).to_have_count(1)
            handle = slider.locator(".noUi-handle")
            readout = slider.locator(".widget-readout")  # what the learner reads (aria-valuenow is rounded)
            texts = cell.locator(".widget-output .jp-OutputArea-output pre")
            images = cell.locator('.widget-output img[src^="data:image/png"]')
            expect(images.first).to_be_visible(timeout=REDRAW * 1000)

            value_before = float(readout.inner_text())
            text_before = "\n".join(texts.all_inner_texts())
            srcs_before = [images.nth(i).get_attribute("src") for i in range(images.count())]
            assert _names(_gain_in(text_before), value_before), \
                f"the explorer's text does not name gain {value_before}:\n{text_before}"

            cell.scroll_into_view_if_needed()
            handle.focus()
            for key in GAIN_KEYS:
                handle.press(key)
            mark("keys pressed")
            value_after = float(readout.inner_text())
            assert value_after != value_before, f"pressing {GAIN_KEYS} on the gain slider did not move it"

            # Each step is its own kernel round trip: wait for the text naming the final value
            # and an idle kernel, not for the first change (an intermediate value).
            deadline = time.monotonic() + REDRAW
            while True:
                text_after = "\n".join(texts.all_inner_texts())
                if (_names(_gain_in(text_after), value_after) and page.evaluate(KERNEL_IDLE)
                        and images.count() > 0):
                    break
                if time.monotonic() > deadline:
                    fail(f"after moving gain to {value_after} the explorer still says:\n{text_after}")
                time.sleep(0.1)
            srcs_after = [images.nth(i).get_attribute("src") for i in range(images.count())]
            mark("redrawn")
            cell.evaluate("e => e.scrollIntoView({block: 'start'})")  # the explorer at the top
            page.screenshot(path=str(screenshot))
        except (PlaywrightError, AssertionError) as e:  # a timeout, or an expect()/assert above
            fail(f"browser step failed: {e}")
        finally:
            context.close()
            lab.close_sessions()
    print(f"browser test timings (s): {timings}; screenshot: {screenshot}")

    assert srcs_after != srcs_before, "the explorer's plot did not change when gain moved"
    assert _without_gain(text_after) != _without_gain(text_before), \
        f"the statistics did not change with gain:\nbefore: {text_before}\nafter: {text_after}"


# ---- the committed notebooks as a reader first meets them (issue 16) --------------------------------
# Opened from a fresh clone, a notebook is untrusted and its kernel has never run its cells: JupyterLab
# then shows, for each output, the richest type that is safe without a kernel. An explorer's display
# bundle carries a PNG of what it showed for that: the reader must see that picture, never the widget's
# text fallback ("VBox(children=(HBox(children=(Text(value='isabella', ...").
# MMLIB_READER_NOTEBOOKS names another folder of learner notebooks to check the same way (for example
# freshly executed ones, before they are committed); by default the committed ones.
READER_NOTEBOOKS = Path(os.environ.get("MMLIB_READER_NOTEBOOKS") or NOTEBOOKS)
EXPLORER_CALL = re.compile(r"\b\w+_explorer\(")
RENDER = 60            # seconds for a saved notebook's cells and outputs to appear


def _explorer_cells(nb: nbformat.NotebookNode) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and EXPLORER_CALL.search(c.source)]


def _lessons_with_explorers() -> list[Path]:
    return [p for p in sorted(READER_NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
            if _explorer_cells(nbformat.read(p, as_version=4))]


@pytest.mark.parametrize("path", _lessons_with_explorers(), ids=lambda p: p.stem)
def test_saved_notebook_shows_each_explorer_as_a_picture(chromium, lab, path):
    """The committed learner notebook, opened as it is (untrusted, nothing run): no widget repr
    text anywhere, and every cell that makes an explorer shows an image of it."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    nb = nbformat.read(path, as_version=4)
    explorers = _explorer_cells(nb)
    (lab.root_dir / "reader").mkdir(exist_ok=True)
    shutil.copy(path, lab.root_dir / "reader" / path.name)
    shot = artifacts() / f"reader_{path.stem}.png"
    with sync_playwright() as pw:
        context = chromium.connect(pw).new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(RENDER * 1000)
        try:
            # A workspace of its own: the server is shared, and a workspace remembers the notebooks opened in it.
            page.goto(f"{lab.url}/lab/workspaces/reader-{path.stem}/tree/reader/{path.name}?token={lab.token}")
            cells = page.locator(".jp-Notebook .jp-Cell")
            page.wait_for_function(f"() => document.querySelectorAll('.jp-Notebook .jp-Cell').length === "
                                   f"{len(nb.cells)}", timeout=RENDER * 1000, polling=250)
            missing = []
            for i in explorers:
                img = cells.nth(i).locator(".jp-OutputArea-output img")
                try:
                    img.first.wait_for(state="attached", timeout=RENDER * 1000)
                except PlaywrightError:
                    missing.append(i)
                    continue
                loaded = img.first.evaluate("e => e.complete && e.naturalWidth > 0")
                if not loaded:
                    missing.append(i)
            text = page.locator(".jp-Notebook").inner_text()
            cells.nth(explorers[0]).evaluate("e => e.scrollIntoView({block: 'start'})")
            page.screenshot(path=str(shot))
        finally:
            context.close()
            lab.close_sessions()
    reprs = sorted({m.group(0) for m in re.finditer(r"[VH]Box\(children=.{0,40}", text)})
    assert not reprs, f"{path.name} shows widget text instead of a picture: {reprs[:3]} (screenshot: {shot})"
    assert not missing, (f"{path.name}: the explorer cells {missing} (of {explorers}) show no image "
                         f"(screenshot: {shot})")
