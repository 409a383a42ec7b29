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

.PHONY: setup demo test lint lock bench gpu-bundle clean-data

setup: $(VENV)/.installed

# torch/torchvision first and pinned: a loose requirement would pull a multi-GB build.
$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $@

demo: setup browser
	$(BIN)/kedro run

test: setup browser
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

lock: setup
	@{ head -n 2 constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^granvit'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

bench: setup
	$(BIN)/python benchmarks/data_pipeline.py

# What benchmarks/gpu_train_step.sh needs on a GPU machine, in git-ignored folders to carry there
# (../shared/GPU.md): .whl/ holds DeepSpeed (built without its JIT ops) and the pins that the
# GPU image lacks or has in other versions, for its Python 3.12; .gpu/ the shared baseline.
GPU_WHEELS := pydantic pydantic_core annotated-types typing-inspection typing_extensions hjson \
	transformers huggingface_hub httpx2 httpcore2 truststore tokenizers typer

gpu-bundle: setup
	rm -rf .whl .gpu && mkdir -p .whl .gpu
	cp ../shared/benchmarks/baseline_vlm_step.py .gpu/
	DS_BUILD_OPS=0 $(BIN)/pip wheel -q --no-deps --no-build-isolation -c constraints.txt \
		deepspeed -w .whl
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -c constraints.txt -d .whl $(GPU_WHEELS)

clean-data:
	find data -mindepth 2 ! -name .gitkeep -delete 2>/dev/null || true

# --- Versioned data and retraining (DVC; README section of the same name) ----------------------
# `make dvc-repro` re-runs the stages of dvc.yaml whose inputs, code or parameters changed;
# `make dvc-push` / `make dvc-pull` move the data (DVC_REMOTE=local: ../dvc-storage, the
# default; DVC_REMOTE=s3: the S3 remote, its bucket created first). `make s3-server` runs a local
# S3 server (rclone) for the s3 remote in the foreground and points the remote at it.
DVC_REMOTE ?= local
S3_PORT ?= 9900
S3_DATA ?= ../s3-data

.PHONY: dvc-repro dvc-status dvc-push dvc-pull s3-server s3-bucket

dvc-repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

dvc-status: setup
	$(BIN)/dvc status
	$(BIN)/dvc status --cloud --remote $(DVC_REMOTE)

dvc-push: s3-bucket
	$(BIN)/dvc push --remote $(DVC_REMOTE)

dvc-pull: setup
	$(BIN)/dvc pull --remote $(DVC_REMOTE)

# Creates the remote's bucket when missing and checks the credentials (no-op for a folder remote).
s3-bucket: setup
	$(BIN)/python -m granvit_pipeline.storage ensure-bucket --remote $(DVC_REMOTE)

s3-server: setup
	$(BIN)/python -m granvit_pipeline.storage serve --remote s3 --port $(S3_PORT) --data-dir $(S3_DATA)

# --- Reports and dashboards (README section of the same name) ---------------------------------
# `make browser` installs Debian's chromium when missing (the run report's screenshot and its
# browser test need it); `make dashboards` runs the MLflow UI, kedro-viz and the Optuna dashboard
# on 127.0.0.1 in the foreground (Ctrl-C, or `make dashboards-stop` elsewhere, stops them all).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
DASHBOARD_ARGS ?=

.PHONY: browser dashboards dashboards-stop

browser:
	@command -v chromium >/dev/null 2>&1 || { \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }
	@chromium --version

dashboards: setup
	$(BIN)/python -m granvit_pipeline.reporting.dashboards start $(DASHBOARD_ARGS)

dashboards-stop:
	$(BIN)/python -m granvit_pipeline.reporting.dashboards stop
