"""``make dashboards``: the servers start on 127.0.0.1, answer, and every process they started
is gone after Ctrl-C (SIGINT to the supervisor) or ``stop``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from granvit_pipeline.reporting import dashboards

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 300  # mlflow's import alone takes ~20 s on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _group_members(pgid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True)
    rows = [line.split() for line in out.stdout.splitlines()]
    return [int(pid) for pid, group, stat in rows if int(group) == pgid and "Z" not in stat]


def _wait_http_200(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the supervisor exited early"
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"{url} did not answer 200 within {timeout_s} s")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The project's mlflow.yml and, when optuna-dashboard exists, a study to show."""
    (tmp_path / "conf/base").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "conf/base/mlflow.yml", tmp_path / "conf/base/mlflow.yml")
    if dashboards._bin("optuna-dashboard"):
        import optuna

        storage = f"sqlite:///{tmp_path / 'optuna.db'}"
        optuna.create_study(study_name="t", storage=storage)
        tune = {"tune": {"study": {"storage": storage}}}
        (tmp_path / "conf/base/parameters_tune.yml").write_text(json.dumps(tune))
    return tmp_path


@pytest.mark.slow
def test_dashboards_start_answer_and_stop_on_ctrl_c(project: Path) -> None:
    ports = {"mlflow": _free_port(), "viz": _free_port(), "optuna": _free_port()}
    pid_file = project / "dashboards.pid"
    command = [sys.executable, "-m", "granvit_pipeline.reporting.dashboards", "start",
               "--project-root", str(project), "--pid-file", str(pid_file),
               "--mlflow-port", str(ports["mlflow"]), "--viz-port", str(ports["viz"]),
               "--optuna-port", str(ports["optuna"])]  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}  # the project's conf, not the caller's
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)  # fmt: skip
    try:
        _wait_http_200(f"http://127.0.0.1:{ports['mlflow']}/", proc, START_TIMEOUT_S)
        assert (project / "mlruns/mlflow.db").exists()  # the conf's store, under the root
        if dashboards._bin("optuna-dashboard"):
            _wait_http_200(f"http://127.0.0.1:{ports['optuna']}/", proc, 60)
        groups = json.loads(pid_file.read_text())["groups"]
        assert "MLflow UI" in groups
        members = [pid for pgid in groups.values() for pid in _group_members(pgid)]
        assert members
        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{ports['mlflow']}" in output
    if dashboards.find_spec("kedro_viz") is None:
        assert "kedro-viz: not installed" in output
    assert not pid_file.exists()
    assert [pgid for pgid in groups.values() if _group_members(pgid)] == []


def test_stop_kills_the_groups_of_a_dead_supervisor(tmp_path: Path) -> None:
    """`make dashboards-stop` after the supervisor was killed (kill -9): the servers still go."""
    server = subprocess.Popen(["sleep", "300"], start_new_session=True)
    threading.Thread(target=server.wait, daemon=True).start()  # reap it, as init would
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid_file = tmp_path / "dashboards.pid"
    pid_file.write_text(json.dumps({"supervisor": dead.pid, "groups": {"x": server.pid}}))
    try:
        assert dashboards.stop(pid_file) == 0
        assert server.wait(timeout=5) is not None
    finally:
        if server.poll() is None:
            server.kill()
    assert not pid_file.exists()
    assert dashboards.stop(pid_file) == 0  # nothing running: a message, not an error
