"""Storage behaviour with a synthetic objective: several worker processes share a PostgreSQL
study without running a trial twice; a killed worker's study resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
from optuna.trial import TrialState

from granvit_pipeline.tuning.config import PrunerConfig, StudyConfig
from granvit_pipeline.tuning.study import open_study, run_worker
from tests.tuning.synthetic_worker import objective

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER = REPO_ROOT / "tests" / "tuning" / "synthetic_worker.py"


def _worker(storage: str, study: str, n_trials: int, seconds: float, env: dict | None = None):
    return subprocess.Popen(
        [sys.executable, str(WORKER), storage, study, str(n_trials), str(seconds)],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
    )  # fmt: skip


def test_two_workers_share_a_postgres_study(postgres: str) -> None:
    name = f"test-workers-{uuid.uuid4().hex[:8]}"
    n_trials = 8
    workers = [_worker(postgres, name, n_trials, 0.3) for _ in range(2)]
    try:
        assert [w.wait(timeout=120) for w in workers] == [0, 0]
    finally:
        for w in workers:
            w.kill() if w.poll() is None else None
    study = optuna.load_study(study_name=name, storage=postgres)
    trials = study.get_trials()
    try:
        assert [t.state for t in trials] == [TrialState.COMPLETE] * n_trials
        assert len({(t.params["x"], t.params["y"]) for t in trials}) == n_trials
        assert len({t.number for t in trials}) == n_trials
        assert len({t.user_attrs["worker"] for t in trials}) == 2  # both did work
    finally:
        optuna.delete_study(study_name=name, storage=postgres)


def _killed_mid_trial(storage: str, markers: Path) -> None:
    """Start a worker on study ``resume`` and SIGKILL it once its first trial is under way."""
    worker = _worker(storage, "resume", 4, 30.0, {"TUNE_MARKERS": str(markers)})
    try:
        deadline = time.monotonic() + 60
        while not list(markers.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(markers.iterdir()), "the worker never started a trial"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()


def _resume_cfg(storage: str) -> StudyConfig:
    return StudyConfig(name="resume", storage=storage, heartbeat_interval_s=1, grace_period_s=2)


def test_study_resumes_after_a_killed_worker(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    (markers := tmp_path / "markers").mkdir()
    _killed_mid_trial(storage, markers)
    study = open_study(_resume_cfg(storage), PrunerConfig(type="none"))
    [stale] = study.get_trials()
    assert stale.state == TrialState.RUNNING  # left behind by the killed worker

    # Past the grace period (2 s): the trial has no live heartbeat. SQLite's CURRENT_TIMESTAMP,
    # which Optuna stamps heartbeats with, has 1 s resolution: 2.5 s could read as 2 (not stale).
    time.sleep(3.5)
    assert run_worker(study, objective(0.0), n_trials=4) == 4  # the retry + 3 new ones
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 4
    assert finished[0].params == stale.params  # the interrupted trial was retried first
    assert finished[0].system_attrs.get("failed_trial") == stale.number


def test_a_worker_restarted_within_the_grace_period_still_fills_the_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    (markers := tmp_path / "markers").mkdir()
    _killed_mid_trial(storage, markers)
    study = open_study(_resume_cfg(storage), PrunerConfig(type="none"))
    # At once: the dead trial still counts as under way, so the first round runs 3 trials; it
    # is stale (> 3 s, SQLite's 1 s resolution included) by the third and re-queued there.
    assert run_worker(study, objective(1.5), n_trials=4) == 4
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 4
    assert any(t.system_attrs.get("failed_trial") == 0 for t in finished)  # the retry ran
