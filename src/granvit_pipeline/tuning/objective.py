"""The trial objective: short stage-1 (+ stage-2) runs with the trial's values, then a score.

Each trial trains in ``<output_root>/<study>/trial_NNNN/<stage>/`` from ``lm_warmup``'s export,
on ``objective.split`` for ``objective.max_steps[stage]`` steps, always from scratch
(``resume_from: none``: a retried trial starts over). Training runs in child processes
(``training.launch``; the trial travels in ``GRANVIT_OPTUNA_TRIAL``, the trial's MLflow run in
``MLFLOW_RUN_ID``), or in this process with ``objective.in_process`` (tests).

Intermediate values (what the pruner sees) are the training metric ``objective.report_metric``
averaged over ``report_every`` steps, numbered across stages (stage 2's first step follows stage
1's last), negated when the study maximizes. The trial's value is ``objective.score``: the last
stage's export scored on held-out data (``val_loss``: answer-token cross-entropy of that stage's
task mix; ``caption2bbox/acc@0.5`` or ``/mean_iou``: greedy-decoded boxes), on the first
``score.max_images`` images of ``score.split``, the same images for every trial.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import optuna

from granvit_pipeline.evaluation.loss import validation_loss
from granvit_pipeline.evaluation.regions import evaluate_regions
from granvit_pipeline.regions.shards import ShardDataset
from granvit_pipeline.training.callbacks import EXIT_PRUNED
from granvit_pipeline.training.config import TrainConfig
from granvit_pipeline.training.granvit.params import CommonParams, StageParams, train_config
from granvit_pipeline.training.run_dir import RunDir, read_metrics
from granvit_pipeline.tuning.config import TuneConfig
from granvit_pipeline.tuning.pruning import (
    PruneRequested,
    PruningCallback,
    TrialLink,
    trial_reporter,
)
from granvit_pipeline.tuning.space import apply_values, suggest
from granvit_pipeline.tuning.tracking import TrialRuns

logger = logging.getLogger(__name__)


class TrialObjective:
    """``optuna`` objective over the stages of ``cfg.objective``; one instance per worker."""

    def __init__(
        self,
        cfg: TuneConfig,
        storage_url: str,
        shards_dir: Path,
        tokenizer_dir: Path,
        init_from: Path,
        common: CommonParams,
        stage_params: Mapping[str, Mapping[str, Any]],
        runs: TrialRuns | None = None,
    ):
        self.cfg, self.storage_url, self.runs = cfg, storage_url, runs
        self.shards_dir, self.tokenizer_dir, self.init_from = shards_dir, tokenizer_dir, init_from
        self.common, self.stage_params = common, stage_params

    def stage_config(self, stage: str, values: Mapping[str, Any], trial_dir: Path,
                     init_from: Path) -> TrainConfig:  # fmt: skip
        """The TrainConfig of one stage of a trial (values applied, budget and split set)."""
        obj = self.cfg.objective
        params = apply_values(stage, self.stage_params.get(stage, {}), values, self.cfg.space)
        steps = obj.max_steps[stage]
        training = {**self.common.training, **params.get("training", {})}
        params["training"] = {
            **params.get("training", {}), "steps": steps, "resume_from": "none",
            "checkpoint_every": 0, "stop_after_step": None,
            "warmup_steps": min(int(training.get("warmup_steps", 0)), steps),
        }  # fmt: skip
        params["recipe"] = {**params.get("recipe", {}), "split": obj.split}
        common = self.common.model_copy(update={"output_root": trial_dir})
        return train_config(stage, common, StageParams(**params), self.shards_dir,
                            self.tokenizer_dir, init_from)  # fmt: skip

    def __call__(self, trial: optuna.Trial) -> float:
        values = suggest(trial, self.cfg.space)
        name = f"trial_{trial.number:04d}"
        trial_dir = Path(self.cfg.output_root) / trial.study.study_name / name
        shutil.rmtree(trial_dir, ignore_errors=True)  # a retried trial starts over
        run_id = (
            self.runs.start(trial.study.study_name, trial.number, values) if self.runs else None
        )
        state, value, steps = "fail", None, 0
        try:
            init_from, offset = self.init_from, 0
            for stage in self.cfg.objective.stages:
                cfg = self.stage_config(stage, values, trial_dir, init_from)
                try:
                    self._train(cfg, trial, offset, run_id)
                finally:
                    steps += len(read_metrics(RunDir(cfg.output_dir).metrics))
                init_from, offset = RunDir(cfg.output_dir).export, offset + cfg.steps
            value = self._score(cfg)
            state = "complete"
            return value
        except PruneRequested as err:
            state = "pruned"
            raise optuna.TrialPruned(str(err)) from err
        finally:
            trial.set_user_attr("train_steps", steps)
            logger.info("%s: %s after %d steps (value %s)", name, state, steps, value)
            if self.runs and run_id:
                self.runs.end(run_id, state, value, steps)
            if not self.cfg.objective.keep_outputs:
                shutil.rmtree(trial_dir, ignore_errors=True)

    def _train(self, cfg: TrainConfig, trial: optuna.Trial, offset: int, run_id: str | None):
        obj = self.cfg.objective
        if obj.in_process:
            from granvit_pipeline.training.engine import train

            callback = PruningCallback(
                trial_reporter(trial), obj.report_metric, obj.report_every, offset, self.sign
            )
            return train(cfg, [callback])
        from granvit_pipeline.training.launcher import TrainingProcessError, launch

        link = TrialLink(
            self.storage_url, trial.study.study_name, trial._trial_id,
            self.cfg.pruner.model_dump(), obj.report_metric, obj.report_every, offset, self.sign,
        )  # fmt: skip
        env = {**link.to_env(), **(self.runs.env(run_id) if self.runs and run_id else {})}
        try:
            return launch(cfg, env)
        except TrainingProcessError as err:
            if err.returncode != EXIT_PRUNED:
                raise
            done = read_metrics(RunDir(cfg.output_dir).metrics)
            last = done[-1].get(obj.report_metric, float("nan")) if done else float("nan")
            raise PruneRequested(offset + len(done), last) from err

    @property
    def sign(self) -> float:
        """Intermediate values are losses: negated when the study maximizes its score."""
        return -1.0 if self.cfg.study.direction == "maximize" else 1.0

    def _score(self, cfg: TrainConfig) -> float:
        """``objective.score`` of the stage that ``cfg`` trained (its export, its prompts)."""
        from granvit_pipeline.evaluation.loading import load_trained

        score, run_dir = self.cfg.objective.score, RunDir(cfg.output_dir)
        trained = load_trained(run_dir.export, run_dir.run_config, score.device)
        samples = islice(ShardDataset(self.shards_dir, score.split), score.max_images)
        if score.metric == "val_loss":
            tasks = cfg.recipe_args.task_weights()
            result = validation_loss(trained, samples, tasks, score.batch_size, cfg.seed)
        else:
            result = evaluate_regions(
                trained.model, trained.tokenizer, samples, trained.prompts,
                batch_size=score.batch_size, tasks=("caption2bbox",),
                precision=trained.box_precision,
            )  # fmt: skip
        return float(result[score.metric])
