# `make demo` and `make test` each set everything up first (a .venv beside this file).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint

setup: $(VENV)/.installed

# torch/torchvision pinned here (pip takes them from the machine's disk), the project with
# ranges in pyproject.toml so that pip keeps them.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/chromoseg run

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
