"""Tuning fixtures: tiny shards, a tokenizer and an lm_warmup export, built once in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from granvit_pipeline.training.granvit.data import fit_tokenizer
from granvit_pipeline.training.granvit.params import CommonParams, StageParams, train_config
from granvit_pipeline.training.granvit.smoke import write_demo_shards

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_COMMON = {
    "training": {"micro_batch_size": 4, "precision": "fp32", "log_every": 100},
    "recipe": {"preset": "tiny", "num_workers": 0, "shuffle_buffer": 8},
}


def conf_params(name: str) -> dict:
    return yaml.safe_load((REPO_ROOT / "conf" / "base" / f"parameters_{name}.yml").read_text())


def tiny_common(output_root: Path) -> CommonParams:
    base = conf_params("pretrain")["pretrain"]["common"]
    return CommonParams(
        output_root=output_root,
        training={**base["training"], **TINY_COMMON["training"]},
        recipe={**base["recipe"], **TINY_COMMON["recipe"], "overrides": {}},
    )


@pytest.fixture(scope="session")
def tiny_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Shards (train + val), tokenizer dir and an lm_warmup export (2 steps), shared by the tuning
    tests."""
    from granvit_pipeline.model.prompts import PromptTemplates
    from granvit_pipeline.training.engine import train

    root = tmp_path_factory.mktemp("tune_inputs")
    # A val split: trials are scored on it.
    shards = write_demo_shards(root / "shards", n_images=24,
                               split_fractions={"train": 0.7, "val": 0.3, "test": 0.0})  # fmt: skip
    common = tiny_common(root / "models")
    prompts = PromptTemplates(**common.recipe["prompts"])
    tokenizer = fit_tokenizer(shards, "train", prompts, vocab_size=1024)
    tokenizer.save_pretrained(root / "tokenizer")
    stage = StageParams(training={"steps": 2, "lr": 3e-3, "warmup_steps": 0})
    result = train(train_config("lm_warmup", common, stage, shards, root / "tokenizer", None))
    return {"shards": shards, "tokenizer": root / "tokenizer", "init_from": Path(result.export_dir),
            "common": common}  # fmt: skip
