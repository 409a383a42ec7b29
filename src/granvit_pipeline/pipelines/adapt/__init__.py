"""Adapt: GranViT stage 2 (Caption2Bbox + global caption; encoder frozen) from stage 1."""

from granvit_pipeline.pipelines.adapt.pipeline import create_pipeline

__all__ = ["create_pipeline"]
