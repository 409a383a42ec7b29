"""``MlflowCallback``: stream a training run's step metrics to an MLflow run, live.

Training runs in child processes (``training.launcher``); the Kedro hook that opened the stage's
run passes it down as ``MLFLOW_RUN_ID`` + ``MLFLOW_TRACKING_URI`` (the DeepSpeed launcher
forwards ``MLFLOW*`` variables to every node, see its ``EXPORT_ENVS``), and
``worker.entry`` attaches this callback on rank 0 when both are set.

Cost per step: a step appends its metrics to a buffer; one ``log_batch`` sends the buffer every
``flush_every_steps`` steps or ``flush_every_s`` seconds, whichever comes first, and at the end.
The batch is handed to MLflow's own async logging (``synchronous=False``): its thread writes
while training goes on, and the training loop pays only the append. The write itself still
costs CPU, hence batches (the defaults, 50 steps or 10 s, let the UI lag at most ~10 s);
``benchmarks/tracking_overhead.py`` measures the cost (figures: ``benchmarks/RESULTS.md``).
One batch is in flight at a time: the next flush first waits for the previous one, so a store
slower than training slows it down rather than piling up memory. A failing store costs the
metrics of that batch and a warning, never the training run.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from granvit_pipeline.tracking.config import ENV_RUN_ID, ENV_TRACKING_URI

if TYPE_CHECKING:
    from granvit_pipeline.training.callbacks import TrainResult

logger = logging.getLogger(__name__)

ARTIFACT_DIR = "training"
NOT_METRICS = frozenset({"step"})  # the x axis, not a series


class MlflowCallback:
    """A ``TrainCallback`` (rank 0) logging every step's metrics to run ``run_id``.

    Metric names are the keys of ``metrics.jsonl`` (``loss``, ``loss_caption``, ``lr``,
    ``grad_norm``, ``samples_per_s``, ``tokens_per_s``, ...), so the file and the UI agree. At the
    end it logs ``result.json``, ``run_config.json`` and a plot of the curves under
    ``training/``.
    """

    def __init__(
        self,
        client: Any,  # mlflow.MlflowClient
        run_id: str,
        flush_every_steps: int = 50,
        flush_every_s: float = 10.0,
        synchronous: bool = False,  # True: each flush waits for the store
    ):
        from mlflow.entities import Metric

        self._metric = Metric
        self.client, self.run_id = client, run_id
        self.flush_every_steps, self.flush_every_s = flush_every_steps, flush_every_s
        self.synchronous = synchronous
        self.buffer: list[Any] = []
        self.steps_buffered = 0
        self.last_flush = time.monotonic()
        self.in_flight: Any = None  # RunOperations of the batch being written (async)
        self.failed_flushes = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> MlflowCallback:
        """The callback for the run named by ``MLFLOW_RUN_ID`` in ``MLFLOW_TRACKING_URI``."""
        from mlflow import MlflowClient

        env = os.environ if env is None else env
        client = MlflowClient(tracking_uri=env[ENV_TRACKING_URI])
        return cls(client, env[ENV_RUN_ID], **kwargs)

    def on_train_start(self, run_config: dict[str, Any]) -> None:
        self._safely("log run_config.json", self.client.log_dict, self.run_id, run_config,
                     f"{ARTIFACT_DIR}/run_config.json")  # fmt: skip

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        now_ms = int(time.time() * 1000)
        self.buffer += [
            self._metric(key, float(value), now_ms, step)
            for key, value in metrics.items()
            if key not in NOT_METRICS
        ]
        self.steps_buffered += 1
        if (
            self.steps_buffered >= self.flush_every_steps
            or time.monotonic() - self.last_flush >= self.flush_every_s
        ):
            self.flush()

    def on_checkpoint(self, step: int, path: Path) -> None:
        pass

    def on_train_end(self, result: TrainResult) -> None:
        self.close()
        out = Path(result.output_dir)
        for name in ("result.json", "run_config.json"):
            if (out / name).is_file():
                self._safely(f"log {name}", self.client.log_artifact, self.run_id,
                             str(out / name), ARTIFACT_DIR)  # fmt: skip
        self._safely("log the metrics plot", self._log_plot, result)

    def flush(self) -> None:
        """Send the buffered steps in one ``log_batch`` (MLflow splits it at its batch limits)."""
        self._wait_in_flight()  # normally done long ago: it was sent `flush_every_*` earlier
        if self.buffer:
            batch, self.buffer = self.buffer, []
            try:
                self.in_flight = self.client.log_batch(
                    self.run_id, metrics=batch, synchronous=self.synchronous
                )
            except Exception as err:  # tracking must never stop training
                self._failed(len(batch), err)
        self.steps_buffered = 0
        self.last_flush = time.monotonic()

    def close(self) -> None:
        """Flush and wait until the store has everything (``worker.entry`` calls it also when
        training failed)."""
        self.flush()
        self._wait_in_flight()

    def _wait_in_flight(self) -> None:
        operation, self.in_flight = self.in_flight, None
        if operation is not None:
            try:
                operation.wait()
            except Exception as err:
                self._failed(None, err)

    def _failed(self, metrics: int | None, err: Exception) -> None:
        self.failed_flushes += 1
        lost = f"{metrics} metric values" if metrics is not None else "a batch of metrics"
        logger.warning("MLflow: %s for run %s not logged: %s", lost, self.run_id, err)

    def _log_plot(self, result: TrainResult) -> None:
        from granvit_pipeline.tracking.plots import plot_metrics

        with tempfile.TemporaryDirectory() as tmp:
            title = Path(result.output_dir).name
            png = plot_metrics(Path(result.metrics_path), Path(tmp) / "metrics.png", title)
            if png is not None:
                self.client.log_artifact(self.run_id, str(png), ARTIFACT_DIR)

    def _safely(self, what: str, fn: Any, *args: Any) -> bool:
        try:
            fn(*args)
        except Exception as err:  # tracking must never stop training
            logger.warning("MLflow: could not %s to run %s: %s", what, self.run_id, err)
            return False
        return True
