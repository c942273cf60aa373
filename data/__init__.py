"""The word lists that ship with the course, installed as the package `mmlib.words`.

This folder is where the data lives (see README.md here; the scripts that made it are in
scripts/, which is not installed); pyproject.toml maps it to `mmlib.words` so that a plain
`pip install .` carries the word lists too, and `mmlib.data.NAMES` finds them the same way in
either kind of install.
"""
