"""Report a training run's intermediate values to its Optuna trial and stop it when pruned.

The tuning node starts training in child processes (``training.launch``); it names the trial in
the environment (``GRANVIT_OPTUNA_TRIAL``: storage URL, study, trial id, pruner, reporting
settings, as JSON; not part of the run config, so not of any fingerprint), and
``worker.entry`` attaches a ``PruningCallback`` on rank 0. Every ``report_every`` steps the
callback reports the mean of ``metric`` over those steps (``trial.report``; negated when the
study maximizes, so that the pruner compares in the study's direction) and asks the pruner
(``trial.should_prune``); when pruned it raises ``PruneRequested``: the engine stops without an
export, the entry point exits with ``EXIT_PRUNED``, and the node raises ``optuna.TrialPruned``.

Several ranks: callbacks run on rank 0 only, so rank 0 reports and decides; the training loop
broadcasts its decision after every step (``training.loop.agree_on_stop``), so every rank stops
after the same step and exits with ``EXIT_PRUNED`` (no rank is killed mid-collective).

This module imports Optuna only when a callback is built from the environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from granvit_pipeline.training.callbacks import (
    EXIT_PRUNED,
    StopRequested,
    TrainingError,
    TrainResult,
)

ENV_TRIAL = "GRANVIT_OPTUNA_TRIAL"

Reporter = Callable[[float, int], bool]  # (value, step) -> should prune


class PruneRequested(StopRequested):
    """The pruner stopped this trial at ``step``; nothing was exported."""

    exit_code = EXIT_PRUNED

    def __init__(self, step: int, value: float):
        self.value = value
        super().__init__(step, f"trial pruned at step {step} (intermediate value {value:.5g})")


@dataclass
class TrialLink:
    """What a training process needs to report to one trial (travels as JSON in the env)."""

    storage: str  # sqlite:///abs/path, postgresql://..., journal:///abs/path
    study_name: str
    trial_id: int
    pruner: dict[str, Any] = field(default_factory=dict)  # tuning.config.PrunerConfig fields
    metric: str = "loss_caption"
    report_every: int = 5
    step_offset: int = 0  # steps of earlier stages of the same trial
    sign: float = 1.0  # -1 when the study maximizes (the metric is a loss: lower is better)

    def to_env(self) -> dict[str, str]:
        return {ENV_TRIAL: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TrialLink | None:
        raw = (os.environ if env is None else env).get(ENV_TRIAL)
        return cls(**json.loads(raw)) if raw else None


def trial_reporter(trial: Any) -> Reporter:
    """A reporter on an ``optuna.Trial`` (same process)."""

    def report(value: float, step: int) -> bool:
        trial.report(value, step)
        return trial.should_prune()

    return report


def link_reporter(link: TrialLink) -> Reporter:
    """A reporter on the trial that ``link`` names (another process made it)."""
    import optuna

    from granvit_pipeline.tuning.config import PrunerConfig, StudyConfig
    from granvit_pipeline.tuning.study import make_pruner, make_storage

    # No heartbeat here: the worker that owns the trial keeps it alive.
    storage = (
        make_storage(StudyConfig(storage=link.storage))
        if link.storage.startswith("journal:")
        else optuna.storages.RDBStorage(link.storage)
    )
    pruner = make_pruner(PrunerConfig(**link.pruner))
    study = optuna.load_study(study_name=link.study_name, storage=storage, pruner=pruner)
    return trial_reporter(optuna.Trial(study, link.trial_id))


class PruningCallback:
    """A ``TrainCallback`` (rank 0): intermediate values to a trial; raise when pruned."""

    def __init__(self, reporter: Reporter, metric: str = "loss_caption", report_every: int = 5,
                 step_offset: int = 0, sign: float = 1.0):  # fmt: skip
        self.reporter, self.metric = reporter, metric
        self.report_every, self.step_offset, self.sign = report_every, step_offset, sign
        self.window: list[float] = []
        self.reported: list[tuple[int, float]] = []  # (trial step, value)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PruningCallback | None:
        link = TrialLink.from_env(env)
        if link is None:
            return None
        return cls(link_reporter(link), link.metric, link.report_every, link.step_offset, link.sign)

    def on_train_start(self, run_config: dict[str, Any]) -> None:
        self.window.clear()

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:
            raise TrainingError(
                f"tuning metric {self.metric!r} not in step metrics {sorted(metrics)}"
            )
        self.window.append(float(metrics[self.metric]))
        if step % self.report_every:
            return
        value = self.sign * sum(self.window) / len(self.window)
        self.window.clear()
        trial_step = self.step_offset + step
        self.reported.append((trial_step, value))
        if self.reporter(value, trial_step):
            raise PruneRequested(trial_step, value)

    def on_checkpoint(self, step: int, path: Path) -> None:
        pass

    def on_train_end(self, result: TrainResult) -> None:
        pass

    def close(self) -> None:
        pass
