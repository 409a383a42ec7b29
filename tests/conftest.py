"""Shared fixtures: repository paths and the real data in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO_ROOT / ".torch_extensions"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def coco128() -> Path:
    """The 128 real COCO 2017 images with their original instance boxes."""
    path = SHARED / "data" / "coco128"
    if not (path / "annotations" / "instances_train2017.json").is_file():
        pytest.skip(f"shared COCO128 data not found at {path}")
    return path
