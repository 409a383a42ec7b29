"""The best values round-trip: saved through the catalog as conf/tuned/parameters_tuned.yml,
read back by `--env tuned` over base (one-key overrides), and trained by a pretrain stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kedro.framework.session import KedroSession

from granvit_pipeline.training.engine import train
from granvit_pipeline.training.granvit.params import (
    AdaptParams,
    PretrainParams,
    StageParams,
    train_config,
)
from granvit_pipeline.tuning.config import TuneConfig
from granvit_pipeline.tuning.space import tuned_parameters
from tests.tuning.conftest import conf_params

BEST = {"stage1_lr": 0.0042, "lambda_distill": 0.5, "ema_alpha": 0.95, "stage1_warmup": 1,
        "stage2_lr": 0.0011}  # fmt: skip


@pytest.fixture
def project(kedro_project: Path) -> Path:
    return kedro_project


def test_best_params_round_trip_into_a_pretrain_run(project: Path, tiny_inputs: dict) -> None:
    cfg = TuneConfig.model_validate(conf_params("tune")["tune"])
    tuned = tuned_parameters(BEST, cfg.space)
    with KedroSession.create(project_path=project) as session:
        session.load_context().catalog.save("tuned_parameters", tuned)
    assert (project / "conf" / "tuned" / "parameters_tuned.yml").is_file()

    base = conf_params("pretrain")["pretrain"]
    with KedroSession.create(project_path=project, env="tuned") as session:
        params = session.load_context().params
    stage1 = params["pretrain"]["stage1"]
    assert stage1["training"] == {**base["stage1"]["training"], "lr": 0.0042, "warmup_steps": 1}
    assert stage1["recipe"]["lambda_distill"] == 0.5
    assert stage1["recipe"]["distill"] == {**base["stage1"]["recipe"]["distill"], "ema_alpha": 0.95}
    assert stage1["recipe"]["tasks"] == base["stage1"]["recipe"]["tasks"]  # untouched keys kept
    assert params["adapt"]["stage2"]["training"]["lr"] == 0.0011
    pretrain = PretrainParams.model_validate(params["pretrain"])  # still valid parameters
    AdaptParams.model_validate(params["adapt"]).checked(pretrain.common)

    # Stage 1 of pretrain, as its node builds it from these parameters (tiny model, 2 steps).
    short = StageParams(
        training={**stage1["training"], "steps": 2, "micro_batch_size": 4},
        recipe=stage1["recipe"],
    )
    common = tiny_inputs["common"].model_copy(update={"output_root": project / "models"})
    run = train_config("stage1", common, short, tiny_inputs["shards"], tiny_inputs["tokenizer"],
                       tiny_inputs["init_from"])  # fmt: skip
    result = train(run)
    written = json.loads((Path(result.output_dir) / "run_config.json").read_text())["train"]
    assert written["lr"] == 0.0042 and written["warmup_steps"] == 1
    assert written["recipe_args"]["lambda_distill"] == 0.5
    assert written["recipe_args"]["distill"]["ema_alpha"] == 0.95
