# `make quickstart` runs the main job on the built-in dataset; `make test` runs the tests
# (`make quick`: all but those marked slow, for a fast loop while developing).
# Each creates the virtual environment in .venv when it is missing or out of date.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: quickstart test quick clean-venv

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,data]'
	touch $@

quickstart: $(VENV)/.installed
	$(BIN)/prakit train experiments/quickstart.toml --run-dir runs/quickstart
	$(BIN)/prakit eval runs/quickstart

test: $(VENV)/.installed
	$(BIN)/python -m pytest

quick: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not slow"

clean-venv:
	rm -rf $(VENV)
