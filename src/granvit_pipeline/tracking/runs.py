"""``RunTracker``: the few MLflow operations the Kedro hooks need, on explicit run ids.

Everything goes through one ``MlflowClient`` with explicit run ids, never the fluent
``mlflow.start_run`` stack: the stack is process-global state, and the runs here outlive any
one call (a parent run spans a whole ``kedro run``; a stage's run is written to by the training
processes). Nesting is MLflow's ``mlflow.parentRunId`` tag, which is what the UI groups by.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from granvit_pipeline.tracking.config import TrackingSettings
from granvit_pipeline.tracking.params import redact_uri

logger = logging.getLogger(__name__)

TAG_PARENT = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"
TAG_ERROR = "error"
MAX_TAG_VALUE = 8000  # mlflow.utils.validation.MAX_TAG_VAL_LENGTH
ERROR_FILE = "error.txt"


def error_text(error: BaseException) -> str:
    """``Type: message``, as short as a tag allows."""
    text = redact_uri(f"{type(error).__name__}: {error}")
    return text if len(text) <= MAX_TAG_VALUE else text[: MAX_TAG_VALUE - 3] + "..."


def end_fluent_run(run_id: str | None) -> None:
    """End MLflow's fluent active run if a node started it on ``run_id``.

    ``mlflow.log_*`` inside a node starts a fluent run on ``MLFLOW_RUN_ID`` (the node's run) and
    leaves it active; the next node's ``mlflow.log_*`` would then land in this node's run.
    """
    import mlflow

    active = mlflow.active_run()
    if run_id is not None and active is not None and active.info.run_id == run_id:
        mlflow.end_run()


class RunTracker:
    """Creates, annotates and ends runs of one experiment in one tracking store."""

    def __init__(self, settings: TrackingSettings):
        from mlflow import MlflowClient  # imported here: `import mlflow` takes seconds

        self.settings = settings
        if settings.tracking_uri.startswith("sqlite:///"):
            Path(settings.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        self.client = MlflowClient(tracking_uri=settings.tracking_uri)
        self.experiment_id = self._experiment_id()

    def _experiment_id(self) -> str:
        name = self.settings.config.experiment_name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        logger.info("creating MLflow experiment %r (artifacts: %s)", name,
                    self.settings.artifact_location or "server default")  # fmt: skip
        return self.client.create_experiment(name, self.settings.artifact_location)

    def start_run(
        self, name: str, tags: Mapping[str, str], parent_run_id: str | None = None
    ) -> str:
        """A RUNNING run named ``name``; nested under ``parent_run_id`` when given."""
        tags = dict(tags)
        if parent_run_id is not None:
            tags[TAG_PARENT] = parent_run_id
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
        return run.info.run_id

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        if params:
            self.client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        if tags:
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_path(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        """A file or a whole folder as artifact(s) under ``artifact_path``."""
        if path.is_dir():
            folder = f"{artifact_path}/{path.name}" if artifact_path else path.name
            self.client.log_artifacts(run_id, str(path), folder)
        else:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def log_value(self, run_id: str, value: Any, artifact_file: str) -> None:
        """An in-memory value (dict -> JSON, anything else -> text) as one artifact file."""
        if isinstance(value, Mapping | list):
            self.client.log_dict(run_id, value, artifact_file)
        else:
            self.client.log_text(run_id, str(value), artifact_file)

    def end_run(self, run_id: str) -> None:
        self.client.set_terminated(run_id, "FINISHED", end_time=int(time.time() * 1000))

    def fail_run(self, run_id: str, error: BaseException) -> None:
        """FAILED, with ``Type: message`` as the ``error`` tag and the traceback in error.txt."""
        try:
            self.set_tags(run_id, {TAG_ERROR: error_text(error)})
            trace = "".join(traceback.format_exception(error))
            self.client.log_text(run_id, redact_uri(trace), ERROR_FILE)
        finally:
            self.client.set_terminated(run_id, "FAILED", end_time=int(time.time() * 1000))
