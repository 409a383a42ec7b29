"""Validate: row rules, the paper's filters, image checks and the GX suite; quarantine + report."""

from granvit_pipeline.pipelines.validate.pipeline import create_pipeline

__all__ = ["create_pipeline"]
