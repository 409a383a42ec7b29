"""Tracking configuration (``conf/<env>/mlflow.yml``) and its resolution against the project.

The YAML is validated once here (pydantic, ``extra="forbid"``: a typo is an error). Resolution
turns the project-relative defaults into absolute locations, so that a ``kedro run`` started
from any directory, and the training processes it starts, write to the same store:

- ``tracking_uri``: ``$MLFLOW_TRACKING_URI`` wins over the YAML (MLflow's own convention, and
  how CI or a shell selects the team server without touching conf); ``sqlite:///<relative>``
  and bare relative paths are made absolute under the project root.
- ``artifact_location``: a relative path becomes a ``file://`` URI under the project root, used
  only with a local store (sqlite or file). With a tracking server the server decides
  (``mlflow server --artifacts-destination s3://...``), unless a full URI is given.

Credentials never go in this file: the MLflow server's basic auth comes from
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` and S3 from the usual ``AWS_*``
variables or ``~/.aws``, all read by MLflow/boto3 themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ENV_RUN_ID = "MLFLOW_RUN_ID"
LOCAL_SCHEMES = ("sqlite", "file", "")


class NestedRunsConfig(BaseModel):
    """Which nodes get a nested run of their own (the others log to the parent run)."""

    model_config = ConfigDict(extra="forbid")

    # fnmatch patterns on the node name (also tried without its namespace)
    node_names: list[str] = Field(default_factory=lambda: ["train_*", "score_*"])
    # or any node carrying one of these Kedro tags
    node_tags: list[str] = Field(default_factory=lambda: ["mlflow_run"])


class TrackingConfig(BaseModel):
    """The contents of ``mlflow.yml``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_location: str | None = "mlruns/artifacts"  # used when the experiment is created
    experiment_name: str = "granvit"
    nested_runs: NestedRunsConfig = Field(default_factory=NestedRunsConfig)
    # catalog datasets whose saved files are logged as artifacts of the node's run (fnmatch)
    artifact_datasets: list[str] = Field(default_factory=list)
    # catalog dataset -> dotted path of a flat {name: number} mapping in its value ("" = the
    # value itself), logged as metrics of the node's run
    metric_datasets: dict[str, str] = Field(default_factory=dict)
    # the shard set whose manifest content_hash is the `data.version` tag
    shards_dir: str | None = "data/05_model_input/shards"


@dataclass(frozen=True)
class TrackingSettings:
    """A resolved configuration: absolute locations, ready for ``MlflowClient``."""

    config: TrackingConfig
    project_root: Path
    tracking_uri: str
    artifact_location: str | None

    @property
    def shards_dir(self) -> Path | None:
        if self.config.shards_dir is None:
            return None
        return _under(self.project_root, self.config.shards_dir)


def _under(root: Path, path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else root / path


def uri_scheme(uri: str) -> str:
    return uri.split(":", 1)[0].lower() if ":" in uri and "://" in uri else ""


def resolve_tracking_uri(uri: str, root: Path) -> str:
    """``sqlite:///relative.db`` and relative paths -> absolute; anything else unchanged."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = uri[len(prefix) :]
        if path and not path.startswith("/") and path != ":memory:":
            return prefix + str((root / path).resolve())
        return uri
    if uri_scheme(uri) == "" and not uri.startswith("file:"):
        return str(_under(root, uri).resolve())
    return uri


def resolve_artifact_location(location: str | None, tracking_uri: str, root: Path) -> str | None:
    if location is None or "://" in location or location.startswith("file:"):
        return location  # a full URI (s3://bucket/prefix, file:///...) is used as given
    if uri_scheme(tracking_uri) not in LOCAL_SCHEMES:
        return None  # a tracking server: its --artifacts-destination decides
    return _under(root, location).resolve().as_uri()


def resolve(
    config: TrackingConfig, project_root: Path, env: Mapping[str, str] | None = None
) -> TrackingSettings:
    """Absolute tracking URI and artifact location for ``config`` in ``project_root``."""
    env = os.environ if env is None else env
    root = Path(project_root).resolve()
    uri = resolve_tracking_uri(env.get(ENV_TRACKING_URI) or config.tracking_uri, root)
    location = resolve_artifact_location(config.artifact_location, uri, root)
    return TrackingSettings(config, root, uri, location)
