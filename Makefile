# Two entry points for people: `make simulate` (the main job on its bundled scenario) and
# `make test` (everything CI runs). Every other target is a step they call.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
export KANTALOUPE_CACHE ?= $(HOME)/.cache/kantaloupe

.PHONY: simulate test venv core controlplane lint unit integration ctest

simulate: $(STAMP)
	$(VENV)/bin/kantaloupe simulate

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

core:
	$(MAKE) -C core

controlplane:
	bash tools/controlplane/build.sh
	bash tools/testkubelet/build.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

ctest: core
	$(MAKE) -C core test

test: $(STAMP) core controlplane lint ctest
	$(PY) -m pytest -q $(PYTEST_ARGS)
