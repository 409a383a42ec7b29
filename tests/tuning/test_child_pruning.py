"""A trial trained in a child process (the default path): the child reports to the trial named
in its environment, is pruned, exits with EXIT_PRUNED, and the trial ends PRUNED in Optuna and
in its nested MLflow run."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from granvit_pipeline.tuning.config import TuneConfig
from granvit_pipeline.tuning.objective import TrialObjective
from granvit_pipeline.tuning.study import open_study, run_worker, storage_url
from granvit_pipeline.tuning.tracking import TrialRuns
from tests.tuning.conftest import conf_params
from tests.tuning.test_tiny_study import tiny_tune_config


def _study_with_a_perfect_trial(cfg: TuneConfig) -> optuna.Study:
    """A study holding one finished trial with a loss no real run reaches: the next trial is
    pruned at its first report (median pruner)."""
    study = open_study(cfg.study, cfg.pruner)
    space = {
        name: IntDistribution(int(spec.low), int(spec.high)) if spec.type == "int"
        else FloatDistribution(spec.low, spec.high, log=spec.log)
        for name, spec in cfg.space.items()
    }  # fmt: skip
    study.add_trial(create_trial(
        params={name: dist.low for name, dist in space.items()}, distributions=space, value=0.0,
        intermediate_values={2: 0.0, 4: 0.0, 6: 0.0},
    ))  # fmt: skip
    return study


def _pruning_config(tmp_path: Path, **objective) -> TuneConfig:
    cfg = tiny_tune_config(tmp_path, in_process=False, **objective)
    return cfg.model_copy(update={"n_trials": 2, "pruner": cfg.pruner.model_copy(
        update={"n_startup_trials": 0})})  # fmt: skip


def test_child_process_trial_is_pruned_and_tracked(tmp_path: Path, tiny_inputs: dict) -> None:
    from mlflow import MlflowClient

    cfg = _pruning_config(tmp_path)
    study = _study_with_a_perfect_trial(cfg)

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("tune-test", str(tmp_path / "artifacts"))
    parent = client.create_run(experiment, run_name="tune").info.run_id
    objective = TrialObjective(
        cfg, storage_url(cfg.study), tiny_inputs["shards"], tiny_inputs["tokenizer"],
        tiny_inputs["init_from"], tiny_inputs["common"],
        {"stage1": conf_params("pretrain")["pretrain"]["stage1"]}, TrialRuns(uri, parent),
    )  # fmt: skip
    assert run_worker(study, objective, cfg.n_trials) == 1

    trial = study.get_trials()[1]
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [2]  # reported from the child, then stopped
    assert trial.user_attrs["train_steps"] == 2
    [run] = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert run.info.run_name == "trial_0001" and run.data.tags["optuna.state"] == "pruned"
    assert run.data.params["stage1_lr"] == str(trial.params["stage1_lr"])
    assert run.data.metrics["trial_steps"] == 2
    assert "loss" in run.data.metrics  # the child streamed its step metrics to the trial run
    assert isinstance(optuna.load_study(study_name="tiny", storage=storage_url(cfg.study)),
                      optuna.Study)  # fmt: skip


@pytest.mark.slow
def test_two_ranks_stop_together_when_rank_0_prunes(tmp_path: Path, tiny_inputs: dict) -> None:
    """Two processes through the deepspeed launcher (gloo): rank 0 reports and is pruned, the
    loop broadcasts the decision, and rank 1 stops after the same step on its own (no kill)."""
    cfg = _pruning_config(tmp_path, keep_outputs=True)
    study = _study_with_a_perfect_trial(cfg)
    stage1 = conf_params("pretrain")["pretrain"]["stage1"]
    stage1["training"] |= {"num_processes": 2, "micro_batch_size": 2}
    objective = TrialObjective(
        cfg, storage_url(cfg.study), tiny_inputs["shards"], tiny_inputs["tokenizer"],
        tiny_inputs["init_from"], tiny_inputs["common"], {"stage1": stage1},
    )  # fmt: skip
    assert run_worker(study, objective, cfg.n_trials) == 1

    trial = study.get_trials()[1]
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [2]
    log = (tmp_path / "trials" / "tiny" / "trial_0001" / "stage1" / "train.log").read_text()
    assert "rank 0: trial pruned at step 2" in log
    assert "rank 1: rank 0 stopped the run after step 2" in log
    assert "Traceback" not in log
