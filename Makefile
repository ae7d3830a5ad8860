# Two entry points: `make run` (the main job) and `make test` (everything CI checks).
# Each installs what it needs: Debian packages when missing, Python packages into .venv.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest check bench system-packages clean

run: $(STAMP)
	$(BIN)/autoscaler demo

test: lint typecheck check pytest

lint: $(STAMP)
	$(BIN)/ruff check autoscaler tests bench
	$(BIN)/ruff format --check autoscaler tests bench
	$(BIN)/lint-imports --no-logo

typecheck: $(STAMP)
	$(BIN)/mypy --strict

check: $(STAMP)
	$(BIN)/autoscaler check policies/

pytest: $(STAMP)
	AUTOSCALER_REQUIRE_INTEGRATION=1 $(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/decide.py

system-packages:
	scripts/install-system-packages.sh

$(STAMP): pyproject.toml scripts/install-system-packages.sh
	scripts/install-system-packages.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
