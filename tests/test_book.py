"""The course website (`make book`, docs/build.py) built from the committed notebooks and read in Chromium.

Builds the site into a temporary folder (under a minute), serves it on localhost and opens it in headless
Debian Chromium (as tests/test_browser.py does) with every request that leaves localhost blocked, so the
site is read as it is offline. The front page lists every lesson, lesson 03's page shows its explorer as
a picture, and a search for "BatchNorm" finds lessons 03, 04 and 05, once each, quoting their text. At
1,400 and 400 px wide, every page: does not scroll sideways and cuts nothing off (code wraps; a figure,
table or formula wider than the column scrolls in its own box), shows one search box, typesets every
formula (no TeX left), puts a copy button on every code cell and links its own notebook, which
downloads; figures keep a readable width, and one drawn smaller than its own size opens full size on a
click; the ☰ menu opens the lesson list. Without a browser: every lesson's title has one form, its
notebook is published unchanged, and its plumbing cells are hidden. Screenshots go to
tests/artifacts/book_*.png (lessons 03 and 04 at both widths: book_03_400.png, ...).

It needs the `book` extra, which `make test` does not install (CI's time goes to the lessons): the test
is skipped without it. To run it: `make book` (installs the extra), then
`.venv/bin/pytest -n 0 tests/test_book.py`.
MMLIB_READER_NOTEBOOKS names another folder of learner notebooks to publish (as in test_browser.py).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import NOTEBOOKS, ROOT, SOLUTIONS, artifacts

BOOK_TOOLS = ("sphinx", "myst_nb", "sphinx_book_theme", "sphinx_copybutton", "sphinx-mathjax-offline")
pytestmark = [
    pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in BOOK_TOOLS),
                       reason="the website's tools are not installed: run `make book` once (the `book` extra), "
                              "then this test"),
    pytest.mark.browser,   # with the other browser tests in one worker: the site is built once, Chromium started once
]
BUILD_LIMIT = 600      # seconds: a bound for a hung build, far above what a build needs
PAGE = 30              # seconds for a page or the search results to appear
WIDTHS = (1400, 400)   # a laptop's window, a phone's
READABLE = 600         # px: a figure is never drawn narrower than this (or than its own width)
PUBLISHED = Path(os.environ.get("MMLIB_READER_NOTEBOOKS") or NOTEBOOKS)
LESSONS = sorted(PUBLISHED.glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    start = time.perf_counter()
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "build.py"), "--out", str(out),
                        "--notebooks", str(PUBLISHED)], capture_output=True, text=True, timeout=BUILD_LIMIT)
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


def test_the_build_fetches_nothing_and_runs_nothing(site):
    """No page loads a script or style from elsewhere, MathJax included, and the outputs are the saved ones."""
    outside = set()
    for page in site.rglob("*.html"):
        outside |= set(re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text()))
    assert not outside, f"pages load from the web: {sorted(outside)[:5]}"
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is not in the site"
    assert not (site.parent / "src" / "jupyter_execute").exists()


def pages(site: Path) -> list[tuple[str, Path | None]]:
    """Every page a reader meets, with the notebook it is made from (None for the two indexes)."""
    return ([("index.html", None)] + [(f"{p.stem}.html", p) for p in LESSONS] + [("solutions/index.html", None)]
            + [(f"solutions/{p.stem}.html", p) for p in SOLUTIONS])


def test_pages_link_their_notebooks_and_hide_plumbing(site):
    """Each lesson and solutions page: one title form ("Lesson 02 — ..."), a link to its own notebook,
    published unchanged, and no metrics or parameter-check code in sight."""
    for name, nb in pages(site):
        if nb is None:
            continue
        html = (site / name).read_text()
        h1 = re.search(r"<h1>(.*?)<", html).group(1)
        assert re.fullmatch(r"Lesson \d\d — \S.*", h1), f"{name}: title {h1!r} is not 'Lesson NN — name'"
        assert f'href="{nb.name}"' in html, f"{name} does not link its notebook {nb.name}"
        assert (site / name).with_name(nb.name).read_bytes() == nb.read_bytes(), f"{name}: its notebook differs"
        calls = {f: re.compile(f'{f}</span><span class="p">\\(') for f in ("save_metrics", "check_metrics_path")}
        inputs = re.findall(r'<div class="cell_input.*?</pre>', html, flags=re.S)
        assert not [i for i in inputs if calls["save_metrics"].search(i)], f"{name} shows the metrics cell's code"
        assert not [i for i in inputs if "NBVAL_" in i], f"{name} shows nbval's marks in its code"
        folded = re.findall(r'<div class="cell tag_hide-input.*?</pre>', html, flags=re.S)
        assert any(calls["check_metrics_path"].search(f) for f in folded), \
            f"{name}: the parameter checks are not folded away"


def offline_browser(pw, chromium):
    """The run's Chromium, whose every request that leaves this machine is refused (and noted in `.outside`)."""
    browser = chromium.connect(pw)
    browser.outside = []
    opened = []

    def local_only(route):
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            browser.outside.append(route.request.url)
            route.abort()

    def new_page(width: int):
        context = browser.new_context(viewport={"width": width, "height": 900})
        opened.append(context)
        context.route("**/*", local_only)   # the context's: its pop-ups too
        page = context.new_page()
        page.set_default_timeout(PAGE * 1000)
        return page

    browser.open = new_page
    browser.done = lambda: [c.close() for c in opened]   # its pages, not the run's one Chromium
    return browser


def typeset(page) -> bool:
    """Wait until MathJax has typeset the page's formulas (pages without any load no MathJax); False if it
    never started."""
    from playwright.sync_api import TimeoutError

    if page.locator(".math").count():
        try:
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                   timeout=PAGE * 1000 / 3)
        except TimeoutError:
            return False
        page.evaluate("() => MathJax.startup.promise")
    return True


# For each search result (its link, its preview): is the preview a passage of the lesson's text (its
# notebook's download link left out, as the previews leave it)?
QUOTES = """async (results) => {
  const quoted = [];
  for (const [href, preview] of results) {
    const doc = new DOMParser().parseFromString(await (await fetch(href)).text(), 'text/html');
    doc.querySelectorAll('.headerlink, script, style, .notebook-download').forEach(e => e.remove());
    const text = doc.querySelector('article.bd-article').textContent.replace(/\\s+/g, ' ');
    quoted.push(text.includes(preview.replace(/^\\.\\.\\.|\\.\\.\\.$/g, '').replace(/\\s+/g, ' ').trim()));
  }
  return quoted;
}"""


def test_site_in_chromium(chromium, served):
    from playwright.sync_api import sync_playwright

    lessons = [p.stem for p in LESSONS]
    with sync_playwright() as pw:
        browser = offline_browser(pw, chromium)
        page = browser.open(1280)
        try:
            # the front page: the lesson index, every lesson linked, and the solutions apart
            page.goto(f"{served}/index.html")
            assert "The lessons" in page.locator("main h1").first.inner_text()
            nav = page.locator("nav.bd-links")
            for stem in lessons:
                assert page.locator(f'main a[href^="{stem}.html"]').count() >= 1, f"the index does not link {stem}"
                assert nav.locator(f'a[href^="{stem}.html"]').count() == 1, f"the navigation lacks {stem}"
            assert nav.locator('a[href^="solutions/index.html"]').count() == 1
            page.screenshot(path=str(artifacts() / "book_index.png"))

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
            page.screenshot(path=str(artifacts() / "book_lesson03.png"))

            # search: each lesson once (the solutions repeat it, and stay out), each quoted where it matches
            page.goto(f"{served}/search.html?q=BatchNorm")
            results = page.locator("#search-results ul.search li")
            page.wait_for_function("() => document.querySelectorAll('#search-results ul.search li').length > 0 && "
                                   "!document.querySelector('#search-progress')?.textContent.includes('Preparing')",
                                   timeout=PAGE * 1000, polling=200)
            page.wait_for_function("() => [...document.querySelectorAll('#search-results ul.search li')]"
                                   ".every(li => li.querySelector('p.context'))", timeout=PAGE * 1000, polling=200)
            hrefs = results.locator("a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
            previews = results.locator("p.context").all_inner_texts()
            quoted = page.evaluate(QUOTES, [[h, p] for h, p in zip(hrefs, previews)])
            page.screenshot(path=str(artifacts() / "book_search.png"))
        finally:
            browser.done()
    pages_found = [h.split("#")[0].split("?")[0] for h in hrefs]
    for stem in ("03_activations_batchnorm", "04_backprop_ninja", "05_wavenet"):
        assert pages_found.count(f"{stem}.html") == 1, f"searching BatchNorm lists {stem} not once: {pages_found}"
    assert not [h for h in pages_found if h.startswith("solutions/")], f"search lists solutions: {pages_found}"
    for text, is_quote in zip(previews, quoted):
        assert "batchnorm" in text.lower(), f"a search preview does not show the match: {text[:200]!r}"
        assert is_quote, f"a search preview is not a passage of its lesson (a table of contents?): {text[:200]!r}"
    assert not browser.outside, f"the pages asked the web for {browser.outside[:5]}"


# Facts about one page, read in the browser after its formulas are typeset.
PAGE_FACTS = """() => {
  const visible = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0
                         && getComputedStyle(e).visibility !== 'hidden'; };
  const article = document.querySelector('article.bd-article');
  const prose = article.cloneNode(true);
  prose.querySelectorAll('pre, code, mjx-container').forEach(e => e.remove());
  const tex = (prose.textContent.match(/\\\\\\(|\\\\\\)|\\\\\\[|\\\\\\]|\\$\\$/g) || []);
  // what runs past the column's edge outside a box of its own that scrolls is cut off (or widens the page)
  const edge = article.getBoundingClientRect().right + 1;
  const inScrollBox = e => { for (let a = e.parentElement; a && a !== article; a = a.parentElement) {
                               if (['auto', 'scroll'].includes(getComputedStyle(a).overflowX)) return true; }
                             return false; };
  const cut = [...article.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > edge && !inScrollBox(e));
  const cells = [...article.querySelectorAll('div.cell_input')];
  const figures = [...article.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth);
  return {
    scrollWidth: document.scrollingElement.scrollWidth, innerWidth: innerWidth,
    searchBoxes: [...document.querySelectorAll('.search-button__button, form.bd-search input')].filter(visible).length,
    math: article.querySelectorAll('.math').length,
    typeset: [...article.querySelectorAll('.math')].filter(e => e.querySelector('mjx-container')).length,
    tex: tex.length,
    scrollingCode: [...article.querySelectorAll('pre')].filter(p => p.scrollWidth > p.clientWidth + 1).length,
    cut: cut.map(e => e.tagName + ' ' + e.textContent.replace(/\\s+/g, ' ').slice(0, 60)),
    cells: cells.length,
    copyable: cells.filter(c => c.querySelector('button.copybtn')).length,
    download: [...article.querySelectorAll('a[download]')].map(a => a.href),
    narrowFigures: figures.filter(i => i.getBoundingClientRect().width < Math.min(i.naturalWidth, %d) - 1)
                          .map(i => i.getAttribute('src')),
  };
}""" % READABLE


@pytest.mark.parametrize("width", WIDTHS)
def test_pages_at_width(chromium, served, site, width):
    from playwright.sync_api import expect, sync_playwright

    problems = []
    with sync_playwright() as pw:
        browser = offline_browser(pw, chromium)
        page = browser.open(width)
        try:
            for name, nb in pages(site):
                page.goto(f"{served}/{name}")
                if not typeset(page):
                    problems.append(f"{name}: MathJax did not start")
                f = page.evaluate(PAGE_FACTS)
                if f["scrollWidth"] > f["innerWidth"]:
                    problems.append(f"{name} scrolls sideways: {f['scrollWidth']} px in a {f['innerWidth']} px window")
                if f["scrollingCode"]:
                    problems.append(f"{name}: {f['scrollingCode']} code blocks scroll sideways instead of wrapping")
                if f["cut"]:
                    problems.append(f"{name}: {len(f['cut'])} elements run past the column's edge: {f['cut'][:3]}")
                if f["searchBoxes"] != 1:
                    problems.append(f"{name} shows {f['searchBoxes']} search boxes")
                if f["typeset"] < f["math"] or f["tex"]:
                    problems.append(f"{name}: {f['math'] - f['typeset']} of {f['math']} formulas not typeset, "
                                    f"{f['tex']} TeX delimiters in the text")
                if f["narrowFigures"]:
                    problems.append(f"{name} draws figures narrower than {READABLE} px: {f['narrowFigures'][:3]}")
                if nb is None:
                    continue
                if f["copyable"] < f["cells"] or not f["cells"]:
                    problems.append(f"{name}: {f['cells'] - f['copyable']} of {f['cells']} code cells have no copy "
                                    "button")
                links = [u for u in f["download"] if u.endswith("/" + nb.name)]
                if not links:
                    problems.append(f"{name} does not link its notebook {nb.name}")
                else:
                    r = page.request.get(links[0])
                    if not r.ok or json.loads(r.body()).get("nbformat") != 4:
                        problems.append(f"{name}: its notebook link {links[0]} does not download a notebook")
                if name in ("03_activations_batchnorm.html", "04_backprop_ninja.html"):
                    # lesson 03: its longest code; lesson 04: its formulas
                    at = "div.math" if name.startswith("04") else "div.cell_input"
                    target = page.locator(at).nth(2 if name.startswith("04") else 12)
                    target.evaluate("e => e.scrollIntoView({block: 'start'})")
                    page.screenshot(path=str(artifacts() / f"book_{name[:2]}_{width}.png"))
            assert not problems, "\n".join(problems)

            # a figure drawn smaller than its own size opens full size on a click
            page.goto(f"{served}/03_activations_batchnorm.html")
            small = [i for i in page.locator("div.cell_output img").all()
                     if i.evaluate("e => e.getBoundingClientRect().width < e.naturalWidth - 1")]
            if width < 992:
                assert small, "no figure of lesson 03 is drawn below its own size in a narrow window"
            if small:
                with page.expect_popup() as popup:
                    small[0].click()
                assert popup.value.url == small[0].evaluate("e => e.src"), "a click on a figure does not open it"
                popup.value.close()

            # the ☰ menu: opens the lesson list at any width, and a lesson in it opens
            page.goto(f"{served}/04_backprop_ninja.html")
            lesson02 = page.get_by_role("link", name=re.compile(r"Lesson 02 — ")).locator("visible=true")
            toggle = page.locator(".primary-toggle").locator("visible=true")
            expect(toggle).to_have_count(1)
            if width >= 992:   # a wide window shows the list beside the page; ☰ hides it and shows it again
                expect(lesson02).to_have_count(1)
                toggle.click()
                expect(lesson02).to_have_count(0)
                toggle.click()
            else:              # a narrow one hides it until ☰ is pressed
                expect(lesson02).to_have_count(0)
                toggle.click()
            expect(lesson02).to_have_count(1)
            page.screenshot(path=str(artifacts() / f"book_menu_{width}.png"))
            lesson02.click()
            page.wait_for_url(re.compile(r"/02_mlp\.html"))
        finally:
            browser.done()
    assert not browser.outside, f"the pages asked the web for {browser.outside[:5]}"
