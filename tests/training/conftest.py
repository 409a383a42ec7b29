"""Shared fixtures for the training tests: a cached DeepSpeed op build and toy configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from safetensors.torch import load_file

from granvit_pipeline.training.config import TrainConfig
from granvit_pipeline.training.run_dir import RunDir
from granvit_pipeline.training.run_dir import read_metrics as read_metrics_file
from granvit_pipeline.training.toy import ToyRecipe

REPO = Path(__file__).resolve().parents[2]
DEEPSPEED_CONF = REPO / "conf" / "base" / "deepspeed"


@pytest.fixture(scope="session", autouse=True)
def torch_extensions_dir():
    """DeepSpeed JIT-builds a small op on its first initialize (30-45 s); build it once.

    Child processes started by `launch` inherit the variable.
    """
    path = REPO / ".torch_extensions"
    previous = os.environ.get("TORCH_EXTENSIONS_DIR")
    os.environ["TORCH_EXTENSIONS_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("TORCH_EXTENSIONS_DIR", None)
    else:
        os.environ["TORCH_EXTENSIONS_DIR"] = previous


def _toy_config(output_dir: Path, **overrides) -> TrainConfig:
    """A small fp32 CPU run of the toy recipe (ZeRO-2 template)."""
    values = {
        "recipe": ToyRecipe,
        "steps": 4,
        "micro_batch_size": 8,
        "lr": 1e-2,
        "warmup_steps": 0,
        "seed": 3,
        "precision": "fp32",
        "deepspeed_config": DEEPSPEED_CONF / "zero2_cpu.json",
        "output_dir": output_dir,
        "log_every": 1,
    }
    values.update(overrides)
    return TrainConfig(**values)


def _read_metrics(output_dir: Path) -> list[dict]:
    return read_metrics_file(RunDir(Path(output_dir)).metrics)


def _exported(output_dir: Path) -> dict:
    return load_file(str(Path(output_dir) / "export" / "model.safetensors"))


@pytest.fixture(scope="session")
def toy_config():
    """Factory: toy_config(output_dir, **overrides) -> TrainConfig."""
    return _toy_config


@pytest.fixture(scope="session")
def read_metrics():
    """Factory: read_metrics(output_dir) -> list of per-step metric dicts."""
    return _read_metrics


@pytest.fixture(scope="session")
def exported():
    """Factory: exported(output_dir) -> tensors of export/model.safetensors."""
    return _exported


@pytest.fixture(scope="session")
def deepspeed_conf() -> Path:
    return DEEPSPEED_CONF
