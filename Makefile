# watui — every target sets up what it needs on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: run demo serve test lint bench snapshots-update clean docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamps record what was installed; they are redone when pyproject.toml changes.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/watui

demo: $(VENV)/.runtime
	$(BIN)/watui --demo

# make serve [PORT=8080] [DATA_DIR=dir] [ENGINE=simulated|neonize]
PORT     ?= 8080
DATA_DIR ?=
ENGINE   ?= simulated
serve: $(VENV)/.runtime
	$(BIN)/watui serve --engine $(ENGINE) --port $(PORT) $(if $(DATA_DIR),--data-dir "$(DATA_DIR)")

lint: $(VENV)/.test
	$(BIN)/ruff check watui tests bench lint
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# Two workers, a test file each at a time (its module fixtures set up once): CI has two cores.
TEST_WORKERS ?= 2
test: $(VENV)/.test lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: $(VENV)/.test
	$(BIN)/python -m bench

snapshots-update: $(VENV)/.test
	$(BIN)/python -m pytest -q tests/console --snapshot-update

docs: $(VENV)/.runtime
	$(BIN)/python -m watui.docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
