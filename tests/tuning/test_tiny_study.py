"""A tiny study on the ``tiny`` preset, training in-process: trials run, some are pruned, and
the best values come out as a parameters tree for pretrain/adapt."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from granvit_pipeline.tuning.config import TuneConfig
from granvit_pipeline.tuning.objective import TrialObjective
from granvit_pipeline.tuning.space import tuned_parameters
from granvit_pipeline.tuning.study import open_study, run_worker, storage_url, summary
from tests.tuning.conftest import conf_params


def tiny_tune_config(tmp_path: Path, direction: str = "minimize", **objective) -> TuneConfig:
    params = conf_params("tune")["tune"]
    params["n_trials"] = 6
    params["output_root"] = str(tmp_path / "trials")
    params["study"] |= {"name": "tiny", "storage": f"sqlite:///{tmp_path}/optuna.db",
                        "sampler_seed": 0, "direction": direction}  # fmt: skip
    params["pruner"] |= {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0}
    score = {**params["objective"]["score"], "max_images": 8, "batch_size": 8, "device": "cpu"}
    params["objective"] |= {"stages": ["stage1"], "max_steps": {"stage1": 6}, "report_every": 2,
                            "in_process": True, **objective,
                            "score": score | objective.get("score", {})}  # fmt: skip
    # A wide lr range so that some trials are clearly worse than the median.
    params["space"]["stage1_lr"] |= {"low": 1e-5, "high": 3e-2}
    if "stage2" not in params["objective"]["stages"]:
        params["space"].pop("stage2_lr")
    return TuneConfig.model_validate(params)


def test_tiny_study_completes_with_pruned_trials(tmp_path: Path, tiny_inputs: dict) -> None:
    cfg = tiny_tune_config(tmp_path)
    study = open_study(cfg.study, cfg.pruner)
    stage_params = {"stage1": conf_params("pretrain")["pretrain"]["stage1"]}
    objective = TrialObjective(
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
    values = [t.value for t in trials if t.state == TrialState.COMPLETE]
    assert all(0 < v < 20 for v in values) and len(set(values)) == len(values)  # val losses
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


@pytest.mark.parametrize(
    ("metric", "direction", "stages"),
    [("val_loss", "minimize", ["stage1"]),
     ("caption2bbox/mean_iou", "maximize", ["stage1", "stage2"])],
)  # fmt: skip
def test_trial_value_is_its_export_scored_on_the_val_split(
    tmp_path: Path, tiny_inputs: dict, metric: str, direction: str, stages: list[str]
) -> None:
    """The trial's value is its last stage's export scored on the first val images; the
    intermediate (loss) values are negated when the study maximizes."""
    from granvit_pipeline.evaluation.loading import load_trained
    from granvit_pipeline.evaluation.loss import validation_loss
    from granvit_pipeline.evaluation.regions import evaluate_regions
    from granvit_pipeline.regions.shards import ShardDataset
    from granvit_pipeline.training.config import read_run_config
    from granvit_pipeline.training.granvit.recipe import GranViTArgs

    cfg = tiny_tune_config(
        tmp_path, direction, stages=stages, max_steps=dict.fromkeys(stages, 2),
        keep_outputs=True, score={"metric": metric},
    )  # fmt: skip
    cfg = cfg.model_copy(update={"n_trials": 1})
    study = open_study(cfg.study, cfg.pruner)
    stage_params = {"stage1": conf_params("pretrain")["pretrain"]["stage1"],
                    "stage2": conf_params("adapt")["adapt"]["stage2"]}  # fmt: skip
    objective = TrialObjective(
        cfg, storage_url(cfg.study), tiny_inputs["shards"], tiny_inputs["tokenizer"],
        tiny_inputs["init_from"], tiny_inputs["common"], stage_params,
    )  # fmt: skip
    assert run_worker(study, objective, cfg.n_trials) == 1

    [trial] = study.get_trials()
    assert trial.state == TrialState.COMPLETE
    assert sorted(trial.intermediate_values) == list(range(2, 2 * len(stages) + 1, 2))
    sign = 1 if direction == "minimize" else -1
    assert all(sign * v > 0 for v in trial.intermediate_values.values())  # +-loss_caption

    last = tmp_path / "trials" / "tiny" / "trial_0000" / stages[-1]
    trained = load_trained(last / "export", last / "run_config.json")
    val = list(ShardDataset(tiny_inputs["shards"], "val"))[:8]
    if metric == "val_loss":
        run = read_run_config(last / "run_config.json")
        tasks = GranViTArgs.model_validate(run.recipe_args).task_weights()
        expected = validation_loss(trained, val, tasks, 8, seed=run.seed)
    else:
        expected = evaluate_regions(
            trained.model,
            trained.tokenizer,
            val,
            trained.prompts,
            tasks=("caption2bbox",),
            precision=trained.box_precision,
        )
    assert trial.value == pytest.approx(expected[metric], rel=1e-6)


def test_score_direction_and_stages_must_fit_the_metric(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="direction is minimize"):
        tiny_tune_config(tmp_path, stages=["stage1", "stage2"],
                         max_steps={"stage1": 2, "stage2": 2},
                         score={"metric": "caption2bbox/acc@0.5"})  # fmt: skip
    with pytest.raises(ValueError, match="only stage2 trains"):
        tiny_tune_config(tmp_path, "maximize", score={"metric": "caption2bbox/acc@0.5"})
