"""Shard: pack validated images and their regions into deterministic tar shards per split."""

from granvit_pipeline.pipelines.shard.pipeline import create_pipeline

__all__ = ["create_pipeline"]
