# Two commands for everything a newcomer needs (README.md):
#   make lab    make the virtual environment if absent, install the pinned versions, open the course
#   make test   the same install, Chromium for the browser test, then the whole test suite
# Both are safe to repeat: the install runs again only when pyproject.toml changed.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The course's JupyterLab settings: Markdown opens rendered (the index), no news pop-up.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json

.PHONY: lab test install browser

lab: install
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) --ServerApp.root_dir=. \
		--LabApp.default_url=/lab/tree/notebooks/README.md

test: install browser
	$(BIN)/pytest

install: $(INSTALLED)

$(INSTALLED): pyproject.toml .jupyter/overrides.json
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[test,data]"
	@mkdir -p $(dir $(LAB_SETTINGS)) && cp .jupyter/overrides.json $(LAB_SETTINGS)
	@touch $@

# Debian's Chromium for the JupyterLab browser test (never Playwright's own download). Without root
# or sudo it is skipped with a note, and so is that one test (outside CI).
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo apt-get update && sudo apt-get install -y chromium; \
	else echo "note: /usr/bin/chromium is missing and this account cannot install it (apt-get install chromium as root);" \
	          "the one browser test will be skipped"; fi
