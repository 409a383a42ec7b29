"""One nested MLflow run per Optuna trial, under the run that ``MLFLOW_RUN_ID`` names.

During a node the Kedro tracking hooks set ``MLFLOW_RUN_ID`` (the parent run of the
``kedro run``, for the tune node) and ``MLFLOW_TRACKING_URI``. Trials log directly through an
``MlflowClient`` with explicit run ids (Optuna's ``MLflowCallback`` is deprecated, and the
fluent run stack is process-global). The trial's training processes stream their step metrics
into the trial's run: the node hands them its id as their ``MLFLOW_RUN_ID``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from granvit_pipeline.tracking.config import ENV_RUN_ID, ENV_TRACKING_URI

logger = logging.getLogger(__name__)

TAG_PARENT = "mlflow.parentRunId"


class TrialRuns:
    """Creates and ends the trial runs nested under one parent run."""

    def __init__(self, tracking_uri: str, parent_run_id: str):
        from mlflow import MlflowClient  # seconds to import; only when tracking is on

        self.tracking_uri, self.parent_run_id = tracking_uri, parent_run_id
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment_id = self.client.get_run(parent_run_id).info.experiment_id

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TrialRuns | None:
        env = os.environ if env is None else env
        if not (env.get(ENV_RUN_ID) and env.get(ENV_TRACKING_URI)):
            return None
        try:
            return cls(env[ENV_TRACKING_URI], env[ENV_RUN_ID])
        except Exception as err:  # tracking must never stop tuning
            logger.warning("MLflow: no trial runs (%s)", err)
            return None

    def env(self, run_id: str) -> dict[str, str]:
        """The environment that points a training process at the trial's run."""
        return {ENV_RUN_ID: run_id, ENV_TRACKING_URI: self.tracking_uri}

    def start(self, study: str, number: int, params: Mapping[str, Any]) -> str:
        from mlflow.entities import Param

        tags = {TAG_PARENT: self.parent_run_id, "optuna.study": study,
                "optuna.trial": str(number)}  # fmt: skip
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"trial_{number:04d}")
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
        return run_id

    def end(self, run_id: str, state: str, value: float | None, steps: int) -> None:
        """``state``: the Optuna trial state (complete, pruned, fail)."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric("trial_steps", float(steps), now, 0)]
        if value is not None:
            metrics.append(Metric("objective", float(value), now, 0))
        self.client.log_batch(run_id, metrics=metrics, tags=[RunTag("optuna.state", state)])
        status = "FAILED" if state == "fail" else "FINISHED"
        self.client.set_terminated(run_id, status, end_time=now)

    def log_best(self, best: Mapping[str, Any], tuned_yaml: str) -> None:
        """The best trial and its parameters file as artifacts of the parent run."""
        self.client.log_dict(self.parent_run_id, dict(best), "tuning/best_params.json")
        self.client.log_text(self.parent_run_id, tuned_yaml, "tuning/parameters_tuned.yml")
