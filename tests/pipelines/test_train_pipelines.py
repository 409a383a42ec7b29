"""The training pipelines: parameter validation, and pretrain + adapt end to end through a
KedroSession's catalog on the tiny preset (stage 1 with 2 ranks through the deepspeed launcher)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.runner import SequentialRunner
from pydantic import ValidationError
from safetensors.torch import load_file

from granvit_pipeline.pipelines import ablation, adapt, evaluate, pretrain
from granvit_pipeline.training.granvit.params import AdaptParams, CommonParams, PretrainParams
from granvit_pipeline.training.granvit.smoke import write_demo_shards

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "pretrain": {
        "common": {
            "training": {"micro_batch_size": 4, "precision": "fp32", "log_every": 1},
            "recipe": {"preset": "tiny", "num_workers": 0, "shuffle_buffer": 8},
        },
        "tokenizer": {"vocab_size": 1024},
        "lm_warmup": {"training": {"steps": 2, "warmup_steps": 0}},
        "stage1": {
            "training": {"steps": 2, "warmup_steps": 0, "num_processes": 2, "micro_batch_size": 2}
        },
    },
    "adapt": {"stage2": {"training": {"steps": 2, "warmup_steps": 0}}},
}


def _conf_params() -> dict:
    conf = REPO_ROOT / "conf" / "base"
    params = yaml.safe_load((conf / "parameters_pretrain.yml").read_text())
    return params | yaml.safe_load((conf / "parameters_adapt.yml").read_text())


def test_conf_parameters_validate_and_typos_fail() -> None:
    params = _conf_params()
    cfg = PretrainParams.model_validate(params["pretrain"])
    AdaptParams.model_validate(params["adapt"]).checked(
        CommonParams(**params["pretrain"]["common"])
    )
    assert cfg.common.recipe["preset"] == "demo"
    typo = json.loads(json.dumps(params["pretrain"]))
    typo["stage1"]["training"]["stpes"] = 10
    with pytest.raises(ValidationError, match="stpes"):
        PretrainParams.model_validate(typo)
    typo = json.loads(json.dumps(params["pretrain"]))
    typo["stage1"]["recipe"]["lamda_distill"] = 0.5
    with pytest.raises(ValidationError, match="lamda_distill"):
        PretrainParams.model_validate(typo)
    wrong_task = {"stage2": {"recipe": {"tasks": {"bbox2caption": 1.0}}}}
    with pytest.raises(ValidationError, match="mixes only"):
        AdaptParams(**wrong_task).checked(CommonParams(**params["pretrain"]["common"]))


@pytest.fixture
def project(kedro_project: Path) -> Path:
    """A copy of the project's conf with small demo shards where the catalog expects them."""
    write_demo_shards(kedro_project / "data" / "05_model_input" / "shards", n_images=24)
    return kedro_project


@pytest.mark.slow
def test_pretrain_then_adapt_on_the_tiny_preset(project: Path) -> None:
    with KedroSession.create(project_path=project, runtime_params=TINY) as session:
        catalog = session.load_context().catalog
        SequentialRunner().run(pretrain.create_pipeline() + adapt.create_pipeline(), catalog)

    models = project / "data" / "06_models"
    assert (models / "tokenizer" / "tokenizer.json").is_file()
    results = {s: json.loads((models / f"{s}_result.json").read_text()) for s in
               ("lm_warmup", "stage1", "stage2")}  # fmt: skip
    for stage, result in results.items():
        # relative to the project root: pulled into another checkout, the DVC outs still work
        assert result["steps"] == 2 and result["export_dir"] == f"data/06_models/{stage}/export"
        assert result["final_metrics"]["step"] == 2 and result["wall_time_s"] > 0
        assert (models / stage / "export" / "config.json").is_file()  # HF encoder
    stage1 = results["stage1"]
    assert stage1["world_size"] == 2 and stage1["final_metrics"]["loss_distill"] > 0
    run_config = json.loads((models / "stage1" / "run_config.json").read_text())
    assert run_config["train"]["recipe_args"]["init_from"] == results["lm_warmup"]["export_dir"]
    encoder = "encoder/model.safetensors"
    before = load_file(str(models / "stage1" / "export" / encoder))
    after = load_file(str(models / "stage2" / "export" / encoder))
    assert all((before[k] == after[k]).all() for k in before)

    # The ablation ladder on the same outputs: two more encoders (one process each), every
    # encoder probed the same way, one table with the stage-2 generation metrics.
    single = json.loads(json.dumps(TINY))
    single["pretrain"]["stage1"]["training"]["num_processes"] = 1
    single["evaluate"] = {"split": "train", "max_images": 8}  # these shards are all train
    with KedroSession.create(project_path=project, runtime_params=single) as session:
        catalog = session.load_context().catalog
        SequentialRunner().run(
            evaluate.create_pipeline()
            + pretrain.create_base_encoder_pipeline()
            + ablation.create_pipeline(),
            catalog,
        )
    no_distill = json.loads((models / "stage1_no_distill_result.json").read_text())
    assert no_distill["run_name"] == "stage1_no_distill" and no_distill["steps"] == 2
    assert no_distill["final_metrics"]["loss_distill"] == 0
    table = json.loads((project / "data" / "08_reporting" / "ablation_table.json").read_text())
    assert [r["row"] for r in table["rows"]] == ["base", "stage1", "stage1_distill", "stage2"]
    shape = "probe/shape/accuracy"
    assert all(0 <= r[shape] <= 1 for r in table["rows"])
    # stage 2 freezes the encoder: its probe repeats stage 1's exactly
    assert table["rows"][3][shape] == table["rows"][2][shape]
    assert table["rows"][3]["caption2bbox/acc@0.5"] is not None
    assert table["rows"][0]["caption2bbox/acc@0.5"] is None
    markdown = (project / "data" / "08_reporting" / "ablation_table.md").read_text()
    assert "+ self-distillation" in markdown and "| chance" in markdown
    report = (project / "data" / "08_reporting" / "run_report_ablation.html").read_text()
    assert "+ self-distillation" in report
