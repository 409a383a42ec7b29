"""Open a study on its storage and run one worker on it until the study has its trials.

Several workers (``kedro run --pipeline tune`` processes, on one machine or many) open the same
study name with ``load_if_exists``; the RDB/journal storage hands each new trial to exactly one
worker. ``n_trials`` is the study's total: a worker stops once finished (complete or pruned)
plus running trials reach it. Two workers that check at the same instant can both start one
more, so a study can overshoot by at most (workers - 1) trials.

Interruption: a killed worker leaves its trial RUNNING. On RDB storages (SQLite, PostgreSQL)
each worker writes a heartbeat; a RUNNING trial without one for ``grace_period_s`` is marked
FAIL by the next worker that asks for a trial, and ``RetryHeartbeatStaleTrialCallback``
re-queues its parameters as a new WAITING trial, which that worker runs first. JournalStorage has no
heartbeat: ``fail_stale_running`` fails trials RUNNING for longer than a given age and
re-queues them the same way (call it when no other worker is alive).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import is_heartbeat_enabled  # no public name (optuna 5.0)
from optuna.trial import TrialState

from granvit_pipeline.tuning.config import PrunerConfig, StudyConfig

logger = logging.getLogger(__name__)

JOURNAL_PREFIX = "journal:///"
# Trials that count towards n_trials. WAITING ones (re-queued retries) do not: a worker runs
# them first, as part of the trials it still has to run.
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def storage_url(cfg: StudyConfig, root: Path | None = None) -> str:
    """``cfg.storage`` with a relative SQLite/journal path made absolute under ``root`` (the
    training processes that report to a trial run elsewhere)."""
    for prefix in ("sqlite:///", JOURNAL_PREFIX):
        if cfg.storage.startswith(prefix):
            return prefix + str(_local_path(cfg.storage.removeprefix(prefix), root))
    return cfg.storage


def make_storage(cfg: StudyConfig, root: Path | None = None) -> optuna.storages.BaseStorage:
    """RDBStorage (with heartbeat + retry) for sqlite/postgresql URLs, JournalStorage for
    ``journal:///file``. Relative SQLite/journal paths are taken under ``root``."""
    url = storage_url(cfg, root)
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url.removeprefix(JOURNAL_PREFIX)))
    return _rdb_storage(url, cfg)


def _rdb_storage(url: str, cfg: StudyConfig, attempts: int = 5) -> RDBStorage:
    """RDBStorage; retried when workers starting together race to create the schema on an empty
    database (PostgreSQL: duplicate ``CREATE TYPE``/``CREATE TABLE`` -> IntegrityError)."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    engine_kwargs={"connect_args": {"timeout": 30}}
                    if url.startswith("sqlite")
                    else None,
                    heartbeat_interval=cfg.heartbeat_interval_s,
                    grace_period=cfg.grace_period_s,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                        max_retry=cfg.max_retry
                    ),
                )
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _local_path(path: str, root: Path | None) -> Path:
    resolved = Path(path) if Path(path).is_absolute() or root is None else Path(root) / path
    resolved.parent.mkdir(parents=True, exist_ok=True)
    return resolved.resolve()


def make_pruner(cfg: PrunerConfig) -> optuna.pruners.BasePruner:
    if cfg.type == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=cfg.n_startup_trials, n_warmup_steps=cfg.n_warmup_steps
        )
    if cfg.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=cfg.min_resource or "auto", reduction_factor=cfg.reduction_factor
        )
    return optuna.pruners.NopPruner()


def open_study(cfg: StudyConfig, pruner: PrunerConfig, root: Path | None = None) -> optuna.Study:
    """Create the study, or load it when another worker (or an earlier run) made it."""
    return optuna.create_study(
        study_name=cfg.name,
        storage=make_storage(cfg, root),
        direction=cfg.direction,
        sampler=optuna.samplers.TPESampler(seed=cfg.sampler_seed),
        pruner=make_pruner(pruner),
        load_if_exists=True,
    )


def count_trials(study: optuna.Study, states: tuple[TrialState, ...] = COUNTED) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


class StopAtTotal:
    """Optuna study callback: stop this worker once the study holds ``n_trials`` trials that
    finished or are under way (any worker's)."""

    def __init__(self, n_trials: int):
        self.n_trials = n_trials

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if count_trials(study) >= self.n_trials:
            study.stop()


def fail_stale_running(study: optuna.Study, older_than_s: float) -> int:
    """Fail (and re-queue the parameters of) RUNNING trials started over ``older_than_s`` ago.

    For storages without heartbeats (JournalStorage); only safe when no live worker runs them.
    """
    now = time.time()
    stale = [
        t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.datetime_start is None or now - t.datetime_start.timestamp() > older_than_s
    ]  # fmt: skip
    for trial in stale:
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"retried_from": trial.number})
    return len(stale)


def run_worker(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_trials: int,
    timeout_s: float | None = None,
) -> int:
    """Run trials of ``study`` until it holds ``n_trials`` (all workers together); returns how
    many this worker ran. Trial errors other than pruning fail the trial and stop the worker."""
    if is_heartbeat_enabled(study._storage):  # before counting: a dead worker's trial
        with warnings.catch_warnings():  # is failed and re-queued (WAITING)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    if count_trials(study) >= n_trials:
        logger.info("study %r already has %d trials: nothing to run", study.study_name, n_trials)
        return 0
    ran = 0

    def counted(trial: optuna.Trial) -> float:
        nonlocal ran
        ran += 1
        return objective(trial)

    # In rounds: a dead worker's trial still inside its grace period counts as under way when a
    # round starts; once Optuna fails it (before one of our trials), the study is owed a trial.
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while (remaining := n_trials - count_trials(study)) > 0:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        finished = count_trials(study, FINISHED)
        study.optimize(
            counted,
            n_trials=remaining,  # upper bound for this worker; StopAtTotal counts every worker's
            timeout=left,
            callbacks=[StopAtTotal(n_trials)],
            catch=(),
            gc_after_trial=True,
        )
        if count_trials(study, FINISHED) == finished:
            break  # no trial finished (e.g. every one failed on a NaN): do not spin
    logger.info("study %r: this worker ran %d trial(s)", study.study_name, ran)
    return ran


def summary(study: optuna.Study) -> dict[str, Any]:
    """Counts per state and the best trial, JSON-able."""
    trials = study.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    best = None
    if any(t.state == TrialState.COMPLETE for t in trials):
        bt = study.best_trial
        best = {"number": bt.number, "value": bt.value, "params": bt.params}
    return {"study": study.study_name, "direction": study.direction.name.lower(),
            "trials": states, "best": best}  # fmt: skip
