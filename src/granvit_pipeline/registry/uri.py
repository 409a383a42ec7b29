"""Point MLflow's process-global tracking URI at a store for the length of a call.

Two MLflow 3 operations use the global URI whatever client they are called through:
``Model.log`` (it makes its own ``MlflowClient()``), and ``create_model_version`` from a
``models:/<model_id>`` source on a SQL registry, which looks the logged model up through a
fresh ``MlflowClient()`` (the TODO "Propagate tracking URI to file sqlalchemy directly" in
``mlflow/store/model_registry/sqlalchemy_store.py``; see mlflow/mlflow#23439).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"


@contextlib.contextmanager
def global_tracking_uri(uri: str) -> Iterator[None]:
    """``mlflow.set_tracking_uri(uri)`` meanwhile; afterwards the global is unset again and
    ``MLFLOW_TRACKING_URI`` (which ``set_tracking_uri`` also sets) has its old value.

    Unsetting rather than re-setting the old value matters: a global URI outlives the
    environment variable and wins over it, so later code that points MLflow elsewhere through
    the variable (the tracking hooks do, per node) would still talk to this store. (Had the
    caller set a global URI, ``set_tracking_uri`` also put it in the variable: it stays in
    effect through the variable.)
    """
    import mlflow

    before = os.environ.get(ENV_TRACKING_URI)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # as MLflow's own _use_tracking_uri restores "unset"
        if before is not None:
            os.environ[ENV_TRACKING_URI] = before
