"""Shard node: plans shards lazily; ``ShardSetDataset`` writes them in parallel, atomically."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from granvit_pipeline.datasets import RegionTable, ShardPlan
from granvit_pipeline.regions.shards.format import ShardConfig
from granvit_pipeline.regions.shards.writer import plan_shards


def plan_region_shards(regions: RegionTable, params: Mapping[str, Any]) -> ShardPlan:
    """Group the validated rows image by image into shards of at most ``max_shard_bytes``."""
    cfg = ShardConfig(**params)
    return ShardPlan(specs=plan_shards(regions.batches(), cfg), config=cfg)
