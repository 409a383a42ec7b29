"""Registry fixtures: a clean MLflow environment, one SQLite store per session (models get unique
names per test), runs in it, and a tiny exported encoder."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``sqlite:///<tmp>/mlflow.db`` with experiment ``granvit`` (artifacts in the same tmp)."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).create_experiment("granvit", (root / "artifacts").as_uri())
    return uri


@pytest.fixture
def model_name() -> str:
    return f"encoder-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def new_run(store: str):
    """A factory of RUNNING runs in the store's ``granvit`` experiment -> run id."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("granvit").experiment_id

    def make(name: str = "register_encoder", tags: dict[str, str] | None = None) -> str:
        return client.create_run(experiment, tags=tags or {}, run_name=name).info.run_id

    return make


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage export with the tiny preset's encoder at its top (``export_encoder``)."""
    import torch

    from granvit_pipeline.model import GranViT, export_encoder, get_preset

    torch.manual_seed(0)
    return export_encoder(GranViT(get_preset("tiny")), tmp_path_factory.mktemp("stage2") / "export")
