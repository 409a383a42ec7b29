"""Ingest: map every configured source (or the built-in demo data) into the region contract."""

from granvit_pipeline.pipelines.ingest.pipeline import create_pipeline

__all__ = ["create_pipeline"]
