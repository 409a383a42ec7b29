"""The evaluate pipeline: its parameters, and a whole KedroSession run on a tiny stage-2 export
laid out where the catalog expects the adapt pipeline's outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from kedro.framework.session import KedroSession
from pydantic import ValidationError

from granvit_pipeline.datasets import ShardSetDataset
from granvit_pipeline.evaluation import eligible_pairs, region_labels
from granvit_pipeline.evaluation.config import EvaluateParams
from granvit_pipeline.model import GranViT, PromptTemplates, export_full, fit_vocab, get_preset
from granvit_pipeline.pipelines.evaluate import nodes
from granvit_pipeline.regions.demo import DemoConfig, generate_demo
from granvit_pipeline.regions.quarantine import Quarantine
from granvit_pipeline.regions.readers import map_jsonl_records
from granvit_pipeline.regions.shards import ShardConfig, ShardDataset, plan_shards, write_shards
from granvit_pipeline.training.config import run_config_dict, write_run_config
from granvit_pipeline.training.granvit.data import fit_tokenizer
from granvit_pipeline.training.granvit.params import CommonParams, StageParams, train_config

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF = REPO_ROOT / "conf" / "base"
FAST = {"evaluate": {"device": "cpu", "batch_size": 16, "probe": {"max_train_images": 20}}}


def test_conf_parameters_validate_and_typos_fail() -> None:
    params = yaml.safe_load((CONF / "parameters_evaluate.yml").read_text())["evaluate"]
    cfg = EvaluateParams.model_validate(params)
    assert cfg.split == "val" and cfg.probe.labels == ["shape", "colour", "size"]
    with pytest.raises(ValidationError, match="max_imgs"):
        EvaluateParams.model_validate({**params, "max_imgs": 3})
    with pytest.raises(ValidationError, match="labels"):
        EvaluateParams.model_validate({**params, "probe": {"labels": ["texture"]}})


def _write_shards(out: Path, n_images: int) -> Path:
    """Demo shards split train/val by image-id hash (the data pipeline, minus validation)."""
    images = out.with_name("images")
    records = []
    for item in generate_demo(DemoConfig(n_images=n_images)):
        (images / item.name).parent.mkdir(parents=True, exist_ok=True)
        (images / item.name).write_bytes(item.png)
        records.append((f"image {len(records)}", item.record))
    batches = map_jsonl_records(
        records, source="demo", images_dir=images, file_label="demo", quarantine=Quarantine(),
        split_fractions={"train": 0.5, "val": 0.5, "test": 0.0},
    )  # fmt: skip
    cfg = ShardConfig(max_images_per_shard=8, workers=1)
    write_shards(plan_shards(batches, cfg), out, cfg)
    return out


def _write_stage2(models: Path, shards: Path) -> dict[str, Any]:
    """A tiny random-init stage-2 export, its run_config.json and stage2_result.json."""
    common = yaml.safe_load((CONF / "parameters_pretrain.yml").read_text())["pretrain"]["common"]
    common["recipe"] |= {"preset": "tiny", "overrides": {}}
    prompts = PromptTemplates(**common["recipe"]["prompts"])
    tokenizer = fit_tokenizer(shards, "train", prompts, vocab_size=1024)
    tokenizer.save_pretrained(models / "tokenizer")
    stage2 = yaml.safe_load((CONF / "parameters_adapt.yml").read_text())["adapt"]["stage2"]
    cfg = train_config(
        "stage2", CommonParams(**common), StageParams(**stage2), shards, models / "tokenizer",
        models / "stage1" / "export",
    )  # fmt: skip
    torch.manual_seed(0)
    export_full(GranViT(fit_vocab(get_preset("tiny"), len(tokenizer))), cfg.output_dir / "export",
                tokenizer)  # fmt: skip
    write_run_config(cfg.output_dir / "run_config.json", run_config_dict(cfg, {}, 1, "cpu"))
    result = {"stage": "stage2", "export_dir": str(cfg.output_dir / "export"),
              "output_dir": str(cfg.output_dir), "weights_digest": "test"}  # fmt: skip
    (models / "stage2_result.json").write_text(json.dumps(result))
    return result


@pytest.fixture
def project(kedro_project: Path) -> Path:
    """A copy of the project's conf with small demo shards and a stage-2 export in place."""
    shards = _write_shards(kedro_project / "data" / "05_model_input" / "shards", n_images=30)
    _write_stage2(kedro_project / "data" / "06_models", shards)
    return kedro_project


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_evaluate_through_a_kedro_session(project: Path) -> None:
    with KedroSession.create(project_path=project, runtime_params=FAST) as session:
        session.run(pipeline_names=["evaluate"])

    report = json.loads((project / "data/08_reporting/evaluation_report.json").read_text())
    shards = project / "data/05_model_input/shards"
    manifest = json.loads((shards / "manifest.json").read_text())
    assert report["split"] == "val" and report["images"] == manifest["splits"]["val"]["images"]
    assert report["data_version"] == manifest["content_hash"]
    assert report["model"]["export_dir"].endswith("stage2/export")
    m = report["metrics"]
    for key in ("caption2bbox/acc@0.5", "caption2bbox/mean_iou", "caption2bbox/unparseable_rate",
                "bbox2caption/exact_match", "bbox2caption/exact_match_chance",
                "bbox2caption/rouge_l", "bbox2caption/cider", "bbox2caption/bleu4",
                "ocr/exact_match", "ocr/anls", "ocr/n", "probe/shape/accuracy",
                "probe/shape/chance", "probe/colour/accuracy", "probe/size/accuracy"):  # fmt: skip
        assert 0.0 <= m[key] <= (10.0 if key.endswith("cider") else float("inf")), key

    # Exactly the val split was scored: every eligible region, every labelled region.
    val = list(ShardDataset(shards, "val"))
    prompts = PromptTemplates()  # eligibility does not depend on the templates
    assert m["caption2bbox/n"] == len(eligible_pairs(val, "caption2bbox", prompts))
    b2c = eligible_pairs(val, "bbox2caption", prompts)
    assert m["bbox2caption/n"] == len(b2c) > 10
    ocr_ids = {r["region_id"] for s in val for r in s["regions"] if r["text_type"] == "ocr"}
    assert m["ocr/n"] == sum(ex.region_id in ocr_ids for _, ex in b2c)
    assert m["probe/shape/n_val"] == sum(len(region_labels(s, "shape")) for s in val) > 10


def test_load_model_uses_the_training_prompts_and_an_empty_split_fails(project: Path) -> None:
    stage2_result = json.loads((project / "data/06_models/stage2_result.json").read_text())
    params = FAST["evaluate"]
    trained = nodes.load_model(stage2_result, params)
    conf = yaml.safe_load((CONF / "parameters_pretrain.yml").read_text())
    assert trained.prompts == PromptTemplates(**conf["pretrain"]["common"]["recipe"]["prompts"])
    assert trained.prompts != PromptTemplates()  # the conf's short prompts, not the defaults
    assert trained.box_precision == 2 and not trained.model.training
    shards = ShardSetDataset(str(project / "data/05_model_input/shards")).load()
    with pytest.raises(ValueError, match="no images"):
        nodes.score_regions(trained, shards, {**params, "split": "test"})
