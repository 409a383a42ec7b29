"""Tune: Optuna search over the training stages' hyperparameters (``params:tune``)."""

from granvit_pipeline.pipelines.tune.pipeline import create_pipeline

__all__ = ["create_pipeline"]
