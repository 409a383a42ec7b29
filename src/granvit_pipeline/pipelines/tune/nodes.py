"""Tune node: run one Optuna worker on the study, then report the best trial's parameters."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from granvit_pipeline.datasets import ShardSet
from granvit_pipeline.training.granvit.params import CommonParams
from granvit_pipeline.tuning.config import TuneConfig
from granvit_pipeline.tuning.objective import TrialObjective
from granvit_pipeline.tuning.space import tuned_parameters
from granvit_pipeline.tuning.study import open_study, run_worker, storage_url, summary
from granvit_pipeline.tuning.tracking import TrialRuns

logger = logging.getLogger(__name__)


def tune_stages(
    shards: ShardSet,
    tokenizer: Path,
    lm_warmup_result: Mapping[str, Any],
    common: Mapping[str, Any],
    stage1: Mapping[str, Any],
    stage2: Mapping[str, Any],
    params: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run trials until the study (shared by every worker) has ``n_trials``; returns the study
    summary (best trial included) and the best values as a parameters tree for ``pretrain`` /
    ``adapt`` (empty when no trial completed)."""
    cfg = TuneConfig.model_validate(params)
    score_split = cfg.objective.score.split
    if shards.manifest["splits"].get(score_split, {}).get("images", 0) == 0:
        raise ValueError(
            f"tune.objective.score.split {score_split!r} has no images in {shards.path}/"
            "manifest.json: score trials on a split that has data"
        )
    root = Path.cwd()  # the project root under `kedro run`
    study = open_study(cfg.study, cfg.pruner, root)
    runs = TrialRuns.from_env()
    objective = TrialObjective(
        cfg, storage_url(cfg.study, root), shards.path, Path(tokenizer),
        Path(lm_warmup_result["export_dir"]), CommonParams(**common),
        {"stage1": stage1, "stage2": stage2}, runs,
    )  # fmt: skip
    run_worker(study, objective, cfg.n_trials, cfg.timeout_s)
    result = summary(study)
    tuned = tuned_parameters(result["best"]["params"], cfg.space) if result["best"] else {}
    if runs is not None and result["best"]:
        runs.log_best(result, yaml.safe_dump(tuned, sort_keys=True))
    logger.info("study %r: %s; best %s", study.study_name, result["trials"], result["best"])
    return result, tuned
