"""The course website (`make book`, docs/build.py) built from the committed notebooks and read in Chromium.

Builds the site into a temporary folder (about a minute), serves it on localhost and opens it in headless
Debian Chromium (as tests/test_browser.py does): the front page lists every lesson, lesson 03's page shows
its explorer as a picture, and a search for "BatchNorm" finds lessons 03, 04 and 05. Screenshots go to
tests/artifacts/book_*.png.

It needs the `book` extra, which `make test` does not install (CI's time goes to the lessons): the test
is skipped without it. To run it: `make book` (installs the extra), then
`.venv/bin/pytest -n 0 tests/test_book.py`.
MMLIB_READER_NOTEBOOKS names another folder of learner notebooks to publish (as in test_browser.py).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import NOTEBOOKS, ROOT
from test_browser import ARTIFACTS, CHROMIUM_FLAGS, chromium  # noqa: F401  (the fixture)

BOOK_TOOLS = ("sphinx", "myst_nb", "sphinx_book_theme")
pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in BOOK_TOOLS),
    reason="the website's tools are not installed: run `make book` once (the `book` extra), then this test")
BUILD_LIMIT = 600      # seconds; about one on a quiet machine
PAGE = 30              # seconds for a page or the search results to appear


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    notebooks = os.environ.get("MMLIB_READER_NOTEBOOKS") or str(NOTEBOOKS)
    start = time.perf_counter()
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "build.py"), "--out", str(out), "--notebooks", notebooks],
                       capture_output=True, text=True, timeout=BUILD_LIMIT)
    assert r.returncode == 0, f"docs/build.py failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    html = out / "html"
    size = sum(p.stat().st_size for p in html.rglob("*") if p.is_file())
    print(f"site built in {time.perf_counter() - start:.0f} s, {size / 1e6:.1f} MB")
    return html


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# The one thing a page may load from the web, when the reader is online: MathJax, which typesets the
# lessons' formulas (offline they read as their TeX source). Sphinx ships no copy of it.
MATHJAX = re.compile(r"https://cdn\.jsdelivr\.net/npm/mathjax@\d+/tex-mml-chtml\.js")


def test_the_build_fetches_nothing_and_runs_nothing(site):
    """No page loads a script or style from elsewhere (but MathJax), and the outputs are the saved ones."""
    outside = set()
    for page in site.rglob("*.html"):
        outside |= set(re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text()))
    outside = {url for url in outside if not MATHJAX.fullmatch(url)}
    assert not outside, f"pages load from the web: {sorted(outside)[:5]}"
    assert not (site.parent / "src" / "jupyter_execute").exists()


def test_site_in_chromium(chromium, served):  # noqa: F811
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    lessons = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(PAGE * 1000)
        try:
            # the front page: the lesson index, every lesson linked, and the solutions apart
            page.goto(f"{served}/index.html")
            assert "The lessons" in page.locator("main h1").first.inner_text()
            nav = page.locator("nav.bd-links")
            for stem in lessons:
                assert page.locator(f'main a[href^="{stem}.html"]').count() >= 1, f"the index does not link {stem}"
                assert nav.locator(f'a[href^="{stem}.html"]').count() == 1, f"the navigation lacks {stem}"
            assert nav.locator('a[href^="solutions/index.html"]').count() == 1
            page.screenshot(path=str(ARTIFACTS / "book_index.png"))

            # lesson 03: its explorers are pictures, its exercises say "not attempted"
            page.goto(f"{served}/03_activations_batchnorm.html")
            cell = page.locator("div.cell").filter(has=page.locator("div.cell_input", has_text="init_explorer(")).first
            img = cell.locator("div.cell_output img")
            assert img.count() >= 1, "lesson 03's page shows no picture of its explorer"
            img.first.scroll_into_view_if_needed()
            assert img.first.evaluate("e => e.complete && e.naturalWidth > 0"), "the explorer's picture did not load"
            assert "not attempted" in page.locator("main").inner_text()
            assert "VBox(" not in page.locator("main").inner_text()
            cell.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.screenshot(path=str(ARTIFACTS / "book_lesson03.png"))

            # search
            page.goto(f"{served}/search.html?q=BatchNorm")
            results = page.locator("#search-results ul.search li")
            page.wait_for_function("() => document.querySelectorAll('#search-results ul.search li').length > 0 && "
                                   "!document.querySelector('#search-progress')?.textContent.includes('Preparing')",
                                   timeout=PAGE * 1000, polling=200)
            time.sleep(0.5)    # the list fills in one go; a last look after it settled
            found = " ".join(results.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))"))
            page.screenshot(path=str(ARTIFACTS / "book_search.png"))
        finally:
            browser.close()
    for stem in ("03_activations_batchnorm", "04_backprop_ninja", "05_wavenet"):
        assert f"{stem}.html" in found, f"searching BatchNorm does not list {stem}: {found}"
