"""mlflow.yml: the project's file validates through Kedro's loader; locations resolve under the
project root; MLFLOW_TRACKING_URI wins; typos are errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader
from pydantic import ValidationError

from granvit_pipeline import settings
from granvit_pipeline.tracking.config import TrackingConfig, resolve

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_conf_mlflow_yml_loads_through_the_project_settings() -> None:
    loader = OmegaConfigLoader(str(REPO_ROOT / "conf"), **settings.CONFIG_LOADER_ARGS)
    config = TrackingConfig.model_validate(loader["mlflow"])
    assert config.enabled and config.tracking_uri == "sqlite:///mlruns/mlflow.db"
    assert "validation_report_*" in config.artifact_datasets
    assert config.metric_datasets == {"evaluation_report": "metrics"}


def test_local_store_resolves_under_the_project_root(tmp_path: Path) -> None:
    resolved = resolve(TrackingConfig(), tmp_path, env={})
    assert resolved.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert resolved.artifact_location == (tmp_path.resolve() / "mlruns" / "artifacts").as_uri()
    assert resolved.shards_dir == tmp_path.resolve() / "data/05_model_input/shards"


def test_team_server_from_env_leaves_artifacts_to_the_server(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}
    resolved = resolve(TrackingConfig(), tmp_path, env=env)
    assert resolved.tracking_uri == "http://127.0.0.1:5000"
    assert resolved.artifact_location is None  # `mlflow server --artifacts-destination` decides
    explicit = TrackingConfig(artifact_location="s3://bucket/mlflow")
    assert resolve(explicit, tmp_path, env=env).artifact_location == "s3://bucket/mlflow"


def test_absolute_sqlite_and_typos(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/x.db"
    assert resolve(TrackingConfig(tracking_uri=uri), Path("/elsewhere"), env={}).tracking_uri == uri
    with pytest.raises(ValidationError, match="tracking_url"):
        TrackingConfig.model_validate({"tracking_url": "http://x"})
    with pytest.raises(ValidationError, match="node_name"):
        TrackingConfig.model_validate({"nested_runs": {"node_name": ["train_*"]}})
