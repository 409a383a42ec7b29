"""Adapt node: stage 2 through ``training.launch`` (see ``pipelines.pretrain.nodes``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from granvit_pipeline.datasets import ShardSet
from granvit_pipeline.pipelines.pretrain.nodes import run_stage
from granvit_pipeline.pipelines.pretrain.params import AdaptParams, CommonParams


def train_stage2(
    shards: ShardSet,
    tokenizer: Path,
    stage1_result: Mapping[str, Any],
    common: Mapping[str, Any],
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """Stage 2: global caption + Caption2Bbox from stage 1's export; encoder frozen."""
    common_params = CommonParams(**common)
    adapt = AdaptParams(**params).checked(common_params)
    return run_stage("stage2", shards, tokenizer, stage1_result, common_params, adapt.stage2)
