"""MlflowCallback against a real SQLite store: step metrics batched into few ``log_batch``
calls, flushed at the end with the run's files; a failing store never stops training."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from granvit_pipeline.tracking.callback import MlflowCallback
from granvit_pipeline.training.callbacks import TrainResult
from granvit_pipeline.worker.entry import tracking_callbacks


def step_metrics(step: int) -> dict[str, float]:
    return {"step": step, "loss": 5.0 - 0.1 * step, "loss_caption": 4.0, "loss_distill": 1.0,
            "lr": 1e-3, "grad_norm": float("nan") if step == 2 else 2.0,
            "samples_per_s": 100.0, "tokens_per_s": 900.0, "step_time_s": 0.01}  # fmt: skip


@pytest.fixture
def run(sqlite_uri: str, tmp_path: Path) -> tuple[MlflowClient, str]:
    client = MlflowClient(tracking_uri=sqlite_uri)
    name = f"callback-{uuid.uuid4().hex[:8]}"
    experiment = client.create_experiment(name, (tmp_path / "artifacts").as_uri())
    return client, client.create_run(experiment).info.run_id


def _spy_batches(client: MlflowClient, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    original = client.log_batch

    def log_batch(run_id, metrics=(), **kwargs):
        sizes.append(len(metrics))
        return original(run_id, metrics=metrics, **kwargs)

    monkeypatch.setattr(client, "log_batch", log_batch)
    return sizes


def _train_result(out: Path, steps: int) -> TrainResult:
    out.mkdir(parents=True)
    rows = [step_metrics(s) for s in range(1, steps + 1)]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "run_config.json").write_text('{"train": {"steps": 10}}\n')
    result = TrainResult(str(out), steps, None, rows[-1]["loss"], 1.0, str(out / "export"),
                         str(out / "metrics.jsonl"), None, 1)  # fmt: skip
    result.write(out / "result.json")
    return result


def test_steps_are_batched_and_flushed_at_the_end(run, tmp_path, monkeypatch) -> None:
    client, run_id = run
    sizes = _spy_batches(client, monkeypatch)
    callback = MlflowCallback(client, run_id, flush_every_steps=4, flush_every_s=3600)
    callback.on_train_start({"train": {"steps": 10}})
    per_step = len(step_metrics(1)) - 1  # all but `step`
    for step in range(1, 11):
        callback.on_step(step, step_metrics(step))
        if step == 3:
            assert client.get_metric_history(run_id, "loss") == []  # still buffered
    assert sizes == [4 * per_step, 4 * per_step]
    callback.on_train_end(_train_result(tmp_path / "stage", 10))
    assert sizes == [4 * per_step, 4 * per_step, 2 * per_step]

    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, round(m.value, 3)) for m in history] == [
        (s, round(5.0 - 0.1 * s, 3)) for s in range(1, 11)
    ]
    data = client.get_run(run_id).data
    assert set(data.metrics) == set(step_metrics(1)) - {"step"}
    artifacts = {f.path for f in client.list_artifacts(run_id, "training")}
    assert artifacts == {"training/metrics.png", "training/result.json",
                         "training/run_config.json"}  # fmt: skip


def test_time_based_flush_and_close(run, monkeypatch) -> None:
    client, run_id = run
    sizes = _spy_batches(client, monkeypatch)
    callback = MlflowCallback(client, run_id, flush_every_steps=100, flush_every_s=0.0)
    callback.on_step(1, step_metrics(1))  # flush_every_s elapsed: sent at once
    assert len(sizes) == 1
    callback.flush_every_s = 3600
    callback.on_step(2, step_metrics(2))
    callback.close()  # what worker.entry does when training fails
    assert len(sizes) == 2 and len(client.get_metric_history(run_id, "loss")) == 2


def test_failing_store_does_not_stop_training(caplog) -> None:
    class DownClient:
        def log_batch(self, *args, **kwargs):
            raise ConnectionError("tracking server down")

        log_dict = log_artifact = log_batch

    class FailedWrite:  # what MLflow's async logging returns when its thread failed
        def wait(self):
            raise RuntimeError("database is locked")

    class AsyncFailClient(DownClient):
        def log_batch(self, *args, **kwargs):
            return FailedWrite()

    for client, message in ((DownClient(), "server down"), (AsyncFailClient(), "is locked")):
        callback = MlflowCallback(client, "run", flush_every_steps=1)
        callback.on_train_start({})
        callback.on_step(1, step_metrics(1))
        callback.close()
        assert callback.failed_flushes == 1 and message in caplog.text


def test_entry_attaches_the_callback_only_on_rank0_with_a_run(monkeypatch, sqlite_uri) -> None:
    assert tracking_callbacks(0) == []
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri)
    monkeypatch.setenv("MLFLOW_RUN_ID", "0123abcd")
    assert tracking_callbacks(1) == []
    (callback,) = tracking_callbacks(0)
    assert isinstance(callback, MlflowCallback) and callback.run_id == "0123abcd"
