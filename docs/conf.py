"""Sphinx settings for the course website (`make book`, docs/build.py): the committed notebooks as they are.

Nothing is executed and nothing is fetched, neither while building nor while reading: myst-nb shows each
notebook's saved outputs, the book theme's styles, scripts and fonts ship inside its wheel, and so does
MathJax (the `sphinx-mathjax-offline` wheel), which the build copies into the site.
"""

import importlib.util
import shutil
from pathlib import Path

project = "makemore, the course"
author = "the makemore course"
extensions = ["myst_nb", "sphinx.ext.mathjax", "sphinx_copybutton"]
master_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# The committed outputs are the course's real runs: show them, never run anything.
nb_execution_mode = "off"
# A page has no kernel to drive a widget: each explorer is shown by the PNG its display bundle carries
# (mmlib.widgets), and no widget script is loaded from the web.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None),
                              ("html", "application/json", None)]   # the metrics: their text line reads better
nb_ipywidgets_js = {}
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
# A notebook's link to the course's repository files (README, mmlib/) has no page here; the metrics'
# application/json output is shown by its text line (above), which myst-nb still reports as skipped.
suppress_warnings = ["myst.xref_missing", "myst.header", "mystnb.unknown_mime_type"]

# MathJax from the site itself, so that the formulas read the same offline as online. Sphinx's default is
# MathJax 4 from a CDN; the wheel carries MathJax 3.2.2, whose one-file build for TeX input and HTML
# output is all the pages load (fonts, TeX extensions and the accessibility menu come on demand).
_mathjax = importlib.util.find_spec("sphinx-mathjax-offline")
if _mathjax is None:
    raise RuntimeError("sphinx-mathjax-offline is not installed: `make book` installs the website's tools")
MATHJAX = Path(_mathjax.submodule_search_locations[0]) / "static" / "mathjax"
MATHJAX_PARTS = ["tex-chtml.js", "input/tex/extensions", "output/chtml", "ui", "a11y", "sre"]
mathjax_path = "mathjax/tex-chtml.js"

# Copy buttons on the code a learner runs, not on its printed output.
copybutton_selector = "div.highlight pre:not(.cell_output pre)"

html_theme = "sphinx_book_theme"
html_title = "makemore, the course"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,   # each lesson page links its own notebook instead (docs/build.py)
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
    # No top bar: its hidden ☰ button is the one both themes' scripts bind, which left the visible one
    # dead, and its search box was a second one beside the sidebar's.
    "navbar_start": [],
    "navbar_center": [],
    "navbar_end": [],
    "navbar_persistent": [],
}
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_js_files = [("course.js", {"defer": "defer"})]
html_copy_source = False       # the notebooks are in the repository; the site needs only its pages
html_show_sourcelink = False


def copy_mathjax(app, exc) -> None:
    if exc is None:
        dest = Path(app.outdir) / "_static" / "mathjax"
        for part in MATHJAX_PARTS:
            src = MATHJAX / part
            if src.is_dir():
                shutil.copytree(src, dest / part, dirs_exist_ok=True)
            else:
                (dest / part).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dest / part)


def solutions_out_of_search(app, doctree) -> None:
    """The worked answers repeat their lesson's text: a search lists the lesson alone (the solutions have a
    section of their own in the navigation)."""
    docname = app.env.docname
    if docname.startswith("solutions/") and docname != "solutions/index":
        app.env.metadata[docname]["nosearch"] = True


def setup(app):
    app.connect("doctree-read", solutions_out_of_search)
    app.connect("build-finished", copy_mathjax)
