# OpenDeep: `make run` starts the system, `make test` runs the whole suite.
# Both create the virtual environment and install the project first when needed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint bench doctor clean

run: $(STAMP) doctor
	$(BIN)/opendeep up

test: $(STAMP) doctor
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/claim.py
	$(BIN)/python bench/audio_pacing.py
	$(BIN)/python bench/api_list.py
	$(BIN)/python bench/ui.py

# Install (again) whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "OpenDeep needs Python 3.11 or newer (set PYTHON=...)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# Say clearly which optional system tools are missing and what they are for.
doctor:
	@sh tools/doctor.sh

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache *.egg-info
