"""Evaluate: score the stage-2 export on the val split (regions, OCR, encoder probe)."""

from granvit_pipeline.pipelines.evaluate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
