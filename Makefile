# The commands a newcomer needs (README.md):
#   make lab    make the virtual environment if absent, install what the lessons need, open the course
#   make test   the same, plus the test and data extras and Chromium, then the whole test suite
#   make book   the course as a static website in build/book/html, from the committed notebooks
# All are safe to repeat: an install runs again only when pyproject.toml changed or did not finish.
# make lab TORCH_INDEX=https://download.pytorch.org/whl/cpu   the first install takes PyTorch's CPU-only build

# Python 3.11 only: every pin in pyproject.toml (torch 2.13.0 above all) and every committed output was
# made and tested on it, and pyproject.toml's requires-python refuses any other version.
SUPPORTED := 3.11
PYTHON ?= $(shell command -v python$(SUPPORTED))
PORT ?= 8888
WRONG_VERSION = "%d.%d" % sys.version_info[:2] != "$(SUPPORTED)"
VENV := .venv
BIN := $(VENV)/bin
# One stamp per install, written only when it finished: a broken or interrupted install runs again.
LAB_STAMP := $(VENV)/.installed-lab
TEST_STAMP := $(VENV)/.installed-test
BOOK_STAMP := $(VENV)/.installed-book
# The course's JupyterLab settings: Markdown opens rendered (the index), no news pop-up.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
# pip writes the bytecode of every file it installs, and it stays: without it each new Python process compiles
# every module it imports (PYTHONDONTWRITEBYTECODE, set on some machines, keeps Python from saving what it compiled).
PIP_FLAGS := --quiet --disable-pip-version-check
# Where pip may also look for the pinned torch. Unset (the default): only pip's own configuration, where on
# Linux PyPI's torch is the CUDA build, gigabytes with NVIDIA's libraries. Set to PyTorch's CPU-only index,
# https://download.pytorch.org/whl/cpu, it is added (--extra-index-url): pip then takes its torch, 2.13.0+cpu,
# since a local version (+cpu) ranks above the plain 2.13.0 that also satisfies the pin.
TORCH_INDEX ?=
PIP_INDEX = $(if $(TORCH_INDEX), --extra-index-url $(TORCH_INDEX))

.PHONY: lab test book install install-test install-book venv browser

lab: install
	@echo "JupyterLab starts on port $(PORT): open the http://localhost:$(PORT)/lab/...?token=... address it prints below"
	@echo "(a browser opens by itself where there is one). Stop it with Ctrl-C, then y (or Ctrl-C twice)."
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) --ServerApp.root_dir=. --port=$(PORT) \
		--LabApp.default_url=/lab/tree/notebooks/README.md

# compileall first: the tests start many Python processes (kernels, the command line, torchrun) that import
# mmlib, and where PYTHONDONTWRITEBYTECODE is set none of them saves what it compiled. Files that change later are
# compiled again as usual: Python checks each cached file against its source.
test: install install-test browser
	$(BIN)/ruff check .
	$(BIN)/python -m compileall -q mmlib
	$(BIN)/pytest

book: install-book
	$(BIN)/python docs/build.py

# Each install target first checks the environment (recipe `venv`), then lets a fresh make decide
# from the stamps: the check may have removed .venv, and make's view of the files must follow.
install: venv
	@$(MAKE) --no-print-directory --silent $(LAB_STAMP)

install-test: venv
	@$(MAKE) --no-print-directory --silent $(TEST_STAMP)

install-book: venv
	@$(MAKE) --no-print-directory --silent $(BOOK_STAMP)

# A .venv made by another Python (pip then says "requires a different Python" on every try) or left
# without a working pip by an interrupted `python -m venv` cannot be repaired in place: make it again.
venv:
	@if [ -e $(VENV) ] && ! $(BIN)/python -c 'import sys, pip; sys.exit($(WRONG_VERSION))' \
			>/dev/null 2>&1; then \
		made=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
		if [ "$$made" = "$(SUPPORTED)" ]; then why="is unfinished (no working pip: an interrupted set-up)"; \
		else why="was made by $${made:+Python }$${made:-a Python that no longer runs}, not $(SUPPORTED)"; fi; \
		echo "$(VENV) $$why: removing it and making it again"; \
		rm -rf $(VENV); \
	fi
	@if [ ! -x $(BIN)/python ]; then \
		if [ -z "$(PYTHON)" ] || ! "$(PYTHON)" -c 'import sys; sys.exit($(WRONG_VERSION))' \
				>/dev/null 2>&1; then \
			echo "error: the course needs Python $(SUPPORTED), and" \
				"$(if $(PYTHON),$(PYTHON) is another version,no python$(SUPPORTED) is on the PATH)." \
				"Install Python $(SUPPORTED) (python.org, your package manager or pyenv), then run" \
				"make $(or $(MAKECMDGOALS),lab) PYTHON=/path/to/python$(SUPPORTED)" >&2; \
			exit 1; \
		fi; \
		echo "making the virtual environment $(VENV) with $(PYTHON)"; \
		"$(PYTHON)" -m venv $(VENV); \
	fi

$(LAB_STAMP): pyproject.toml .jupyter/overrides.json
	@echo "installing the course's pinned packages into $(VENV) (a few minutes the first time, then never again)"
	$(BIN)/python -m pip install -e . $(PIP_FLAGS)$(PIP_INDEX)
	@mkdir -p $(dir $(LAB_SETTINGS)) && cp .jupyter/overrides.json $(LAB_SETTINGS)
	@touch $@

$(TEST_STAMP): pyproject.toml
	@echo "installing the test and data extras into $(VENV)"
	$(BIN)/python -m pip install -e ".[test,data]" $(PIP_FLAGS)$(PIP_INDEX)
	@touch $@

$(BOOK_STAMP): pyproject.toml
	@echo "installing the website builder (the book extra) into $(VENV)"
	$(BIN)/python -m pip install -e ".[book]" $(PIP_FLAGS)$(PIP_INDEX)
	@touch $@

# Debian's Chromium for the JupyterLab browser tests (never Playwright's own download). Without root
# or sudo it is skipped with a note, and so are those tests (outside CI).
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo apt-get update && sudo apt-get install -y chromium; \
	else echo "note: /usr/bin/chromium is missing and this account cannot install it (apt-get install chromium as root);" \
	          "the browser tests will be skipped"; fi
