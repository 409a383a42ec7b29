"""A tuning worker with a cheap synthetic objective (no training): for the storage tests.

    python tests/tuning/synthetic_worker.py <storage-url> <study> <n_trials> <seconds-per-trial>

Each trial writes ``<study>.<pid>.started`` next to nothing else (in $TUNE_MARKERS, if set) so a
test can kill the worker mid-trial.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from granvit_pipeline.tuning.config import PrunerConfig, StudyConfig
from granvit_pipeline.tuning.study import open_study, run_worker


def objective(seconds: float):
    def run(trial) -> float:
        x = trial.suggest_float("x", -3.0, 3.0)
        y = trial.suggest_int("y", 0, 1000)
        markers = os.environ.get("TUNE_MARKERS")
        if markers:
            Path(markers, f"{os.getpid()}.{trial.number}.started").touch()
        for step in range(1, 4):
            time.sleep(seconds / 3)
            trial.report((x - 1) ** 2 + step * 0.01, step)
        trial.set_user_attr("worker", os.getpid())
        return (x - 1) ** 2 + y * 1e-6

    return run


def main(argv: list[str]) -> int:
    storage, name, n_trials, seconds = argv[0], argv[1], int(argv[2]), float(argv[3])
    study_cfg = StudyConfig(name=name, storage=storage, heartbeat_interval_s=1, grace_period_s=3)
    study = open_study(study_cfg, PrunerConfig(type="none"))
    run_worker(study, objective(seconds), n_trials)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
