"""A tiny study on the ``tiny`` preset, training in-process: trials run, some are pruned, and
the best values come out as a parameters tree for pretrain/adapt."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from granvit_pipeline.pipelines.tune.objective import StageObjective
from granvit_pipeline.tuning.config import TuneConfig
from granvit_pipeline.tuning.space import tuned_parameters
from granvit_pipeline.tuning.study import open_study, run_worker, storage_url, summary
from tests.tuning.conftest import conf_params


def tiny_tune_config(tmp_path: Path, **objective) -> TuneConfig:
    params = conf_params("tune")["tune"]
    params["n_trials"] = 6
    params["output_root"] = str(tmp_path / "trials")
    params["study"] |= {"name": "tiny", "storage": f"sqlite:///{tmp_path}/optuna.db",
                        "sampler_seed": 0}  # fmt: skip
    params["pruner"] |= {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0}
    params["objective"] |= {"stages": ["stage1"], "max_steps": {"stage1": 6}, "report_every": 2,
                            "score_window": 2, "in_process": True, **objective}  # fmt: skip
    # A wide lr range so that some trials are clearly worse than the median.
    params["space"]["stage1_lr"] |= {"low": 1e-5, "high": 3e-2}
    params["space"].pop("stage2_lr")
    return TuneConfig.model_validate(params)


def test_tiny_study_completes_with_pruned_trials(tmp_path: Path, tiny_inputs: dict) -> None:
    cfg = tiny_tune_config(tmp_path)
    study = open_study(cfg.study, cfg.pruner)
    stage_params = {"stage1": conf_params("pretrain")["pretrain"]["stage1"]}
    objective = StageObjective(
        cfg, storage_url(cfg.study), tiny_inputs["shards"], tiny_inputs["tokenizer"],
        tiny_inputs["init_from"], tiny_inputs["common"], stage_params,
    )  # fmt: skip
    assert run_worker(study, objective, cfg.n_trials) == 6

    trials = study.get_trials()
    states = [t.state for t in trials]
    assert states.count(TrialState.PRUNED) >= 1, states
    assert states.count(TrialState.COMPLETE) >= 2, states
    for trial in trials:
        steps = trial.user_attrs["train_steps"]
        assert steps == 6 if trial.state == TrialState.COMPLETE else 0 < steps < 6
        assert trial.intermediate_values  # reported every 2 steps
    assert not list((tmp_path / "trials" / "tiny").glob("trial_*"))  # outputs removed

    result = summary(study)
    assert result["trials"]["complete"] + result["trials"]["pruned"] == 6
    tuned = tuned_parameters(result["best"]["params"], cfg.space)
    stage1 = tuned["pretrain"]["stage1"]
    assert stage1["training"]["lr"] == pytest.approx(result["best"]["params"]["stage1_lr"])
    assert set(stage1["recipe"]) == {"lambda_distill", "distill"}
    assert set(stage1["recipe"]["distill"]) == {"ema_alpha"}

    # A second worker on the finished study runs nothing.
    assert run_worker(open_study(cfg.study, cfg.pruner), objective, cfg.n_trials) == 0
