"""Tracking fixtures: a clean MLflow environment, one migrated SQLite store for the session,
and a temporary copy of the project (as tests/pipelines does) for real KedroSession runs."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite tracking store, created (schema migrated: seconds) once per test session."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()
    return uri


@pytest.fixture
def project(kedro_project: Path) -> Path:
    """A copy of the project's conf in a temporary folder, run from there."""
    return kedro_project
