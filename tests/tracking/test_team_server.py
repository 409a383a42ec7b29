"""The team set-up: ``mlflow server`` on PostgreSQL (127.0.0.1:5432, started by the machine)
with artifacts on a real S3-compatible server (rclone, started here), used through our
``RunTracker`` exactly as the Kedro hooks use it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from granvit_pipeline.storage import RcloneS3Server
from granvit_pipeline.storage.bucket import ensure_bucket, s3_client
from granvit_pipeline.storage.s3_server import free_port
from granvit_pipeline.tracking.config import TrackingConfig, resolve
from granvit_pipeline.tracking.runs import RunTracker

psycopg2 = pytest.importorskip("psycopg2")

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
BUCKET = "mlflow-artifacts"
pytestmark = pytest.mark.slow


def _postgres_or_skip() -> None:
    try:
        psycopg2.connect(connect_timeout=3, **PG).close()
    except psycopg2.OperationalError as err:
        if os.environ.get("CI"):
            raise  # CI has the service: never skip there
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432: {err}")


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (dropped afterwards)."""
    _postgres_or_skip()
    name = f"mlflow_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(**PG)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[RcloneS3Server]:
    with RcloneS3Server(tmp_path / "s3") as server:
        ensure_bucket(BUCKET, server.credentials, server.endpoint_url)
        yield server


@pytest.fixture
def mlflow_server(database: str, s3: RcloneS3Server, tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` in its own process group; credentials only in its environment."""
    port = free_port()
    env = {**os.environ, **s3.credentials.env(), "MLFLOW_S3_ENDPOINT_URL": s3.endpoint_url}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (tmp_path / "mlflow-server.log").open("wb")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")), "server",
            "--backend-store-uri", database,
            "--artifacts-destination", f"s3://{BUCKET}/artifacts",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # importing mlflow + migrating the schema
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (tmp_path / "mlflow-server.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow server did not start on {url}: {tail}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_runs_on_postgres_with_artifacts_on_s3(
    mlflow_server: str, s3: RcloneS3Server, tmp_path: Path
) -> None:
    # The conf's artifact location is relative: with a server, the server's destination wins.
    settings = resolve(TrackingConfig(experiment_name="team"), tmp_path,
                       env={"MLFLOW_TRACKING_URI": mlflow_server})  # fmt: skip
    assert settings.tracking_uri == mlflow_server and settings.artifact_location is None
    tracker = RunTracker(settings)
    parent = tracker.start_run("kedro run", {"kedro.pipeline": "__default__"})
    child = tracker.start_run("train_stage1", {}, parent_run_id=parent)
    tracker.log_params(child, {"stage1.training.lr": "0.003"})
    tracker.log_metrics(child, {"loss": 1.5}, step=1)
    report = tmp_path / "evaluation_report.json"
    report.write_text('{"metrics": {"caption2bbox/acc@0.5": 0.25}}')
    tracker.log_path(child, report)
    tracker.end_run(child)
    tracker.end_run(parent)

    client = tracker.client
    run = client.get_run(child)
    assert run.data.params == {"stage1.training.lr": "0.003"}
    assert run.data.metrics == {"loss": 1.5}
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.info.status == "FINISHED"
    # The artifact went through the server into the S3 bucket, and reads back through it.
    keys = [o["Key"] for o in s3_client(s3.credentials, s3.endpoint_url)
            .list_objects_v2(Bucket=BUCKET).get("Contents", [])]  # fmt: skip
    assert any(k.endswith(f"{child}/artifacts/evaluation_report.json") for k in keys), keys
    local = client.download_artifacts(child, "evaluation_report.json", str(tmp_path / "dl"))
    assert Path(local).read_text() == report.read_text()
