"""MLflow tracking for the project, without Kedro: configuration, runs, parameters, provenance
and the training callback. The Kedro hooks in ``granvit_pipeline.hooks`` are thin adapters.

``import mlflow`` takes seconds, so it happens inside ``RunTracker`` / ``MlflowCallback``, only
when tracking is on.
"""

from granvit_pipeline.tracking.callback import MlflowCallback
from granvit_pipeline.tracking.config import (
    ENV_RUN_ID,
    ENV_TRACKING_URI,
    NestedRunsConfig,
    TrackingConfig,
    TrackingSettings,
    resolve,
)
from granvit_pipeline.tracking.params import (
    flatten_params,
    is_secret_key,
    kedro_params,
    metric_values,
    redact_uri,
)
from granvit_pipeline.tracking.provenance import data_version, dvc_lock_tags, git_tags
from granvit_pipeline.tracking.runs import RunTracker

__all__ = [
    "ENV_RUN_ID",
    "ENV_TRACKING_URI",
    "MlflowCallback",
    "NestedRunsConfig",
    "RunTracker",
    "TrackingConfig",
    "TrackingSettings",
    "data_version",
    "dvc_lock_tags",
    "flatten_params",
    "git_tags",
    "is_secret_key",
    "kedro_params",
    "metric_values",
    "redact_uri",
    "resolve",
]
