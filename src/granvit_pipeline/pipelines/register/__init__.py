"""Register: log the evaluated encoder to the MLflow Model Registry and promote it by gates."""

from granvit_pipeline.pipelines.register.pipeline import create_pipeline

__all__ = ["create_pipeline"]
