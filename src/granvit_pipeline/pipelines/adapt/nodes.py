"""Adapt node: stage 2 through ``training.granvit.stages.run_stage``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from granvit_pipeline.datasets import ShardSet
from granvit_pipeline.training.granvit.params import AdaptParams, CommonParams
from granvit_pipeline.training.granvit.stages import run_stage


def train_stage2(
    shards: ShardSet,
    tokenizer: Path,
    stage1_result: Mapping[str, Any],
    common: Mapping[str, Any],
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """Stage 2: global caption + Caption2Bbox from stage 1's export; encoder frozen."""
    adapt = AdaptParams(**params)
    return run_stage(
        "stage2", CommonParams(**common), adapt.stage2, shards.path, tokenizer, stage1_result
    )
