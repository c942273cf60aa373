"""Sphinx settings for the course website (`make book`, docs/build.py): the committed notebooks as they are.

Nothing is executed and nothing is fetched while building: myst-nb shows each notebook's saved outputs,
and the book theme's styles, scripts and fonts ship inside its wheel.
"""

project = "makemore, the course"
author = "the makemore course"
extensions = ["myst_nb"]
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

html_theme = "sphinx_book_theme"
html_title = "makemore, the course"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
}
html_copy_source = False       # the notebooks are in the repository; the site needs only its pages
html_show_sourcelink = False
