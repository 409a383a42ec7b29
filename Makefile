# Quick start: `make demo` (set up + run the default pipeline on the built-in demo data, CPU)
#              `make test` (set up + run the test suite)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export KEDRO_LOGGING_CONFIG := $(CURDIR)/conf/logging.yml
export TORCH_EXTENSIONS_DIR := $(CURDIR)/.torch_extensions
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test lint lock bench clean-data

setup: $(VENV)/.installed

# torch/torchvision first and pinned: a loose requirement would pull a multi-GB build.
$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $@

demo: setup
	$(BIN)/kedro run

test: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

lock: setup
	@{ head -n 2 constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^granvit'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

bench: setup
	$(BIN)/python benchmarks/data_pipeline.py

clean-data:
	find data -mindepth 2 ! -name .gitkeep -delete 2>/dev/null || true
