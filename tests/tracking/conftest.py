"""Tracking fixtures: a clean MLflow environment, one migrated SQLite store for the session,
and a temporary copy of the project (as tests/pipelines does) for real KedroSession runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kedro.framework.startup import bootstrap_project

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the caller's MLflow server nor a leaked run id reaches a test."""
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="session")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite tracking store, created (schema migrated: seconds) once per test session."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()
    return uri


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the project's conf in a temporary folder, run from there."""
    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf")
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "conf" / "local").mkdir(exist_ok=True)
    (tmp_path / "src").mkdir()  # the package itself is installed; Kedro wants the folder
    monkeypatch.chdir(tmp_path)
    bootstrap_project(tmp_path)
    return tmp_path
