"""Project pipelines: one per stage, plus ``data`` (ingest -> validate -> shard)."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from granvit_pipeline.pipelines import (
    ablation,
    adapt,
    evaluate,
    ingest,
    pretrain,
    register,
    shard,
    tune,
    validate,
)


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines by name; ``__default__`` is the whole demo run.

    Listed explicitly rather than with ``find_pipelines``: since Kedro 1.7 it imports only
    the modules named by ``--pipelines``, so composite names such as ``data`` fail there.
    """
    pipelines = {
        "ingest": ingest.create_pipeline(),
        "validate": validate.create_pipeline(),
        "shard": shard.create_pipeline(),
        "pretrain": pretrain.create_pipeline(),
        "adapt": adapt.create_pipeline(),
        "base_encoder": pretrain.create_base_encoder_pipeline(),
        "evaluate": evaluate.create_pipeline(),
        "ablation": pretrain.create_base_encoder_pipeline() + ablation.create_pipeline(),
        "tune": tune.create_pipeline(),
        "register": register.create_pipeline(),
    }
    pipelines["data"] = pipelines["ingest"] + pipelines["validate"] + pipelines["shard"]
    # The demo run, end to end: data -> train -> evaluate -> register + promote the encoder.
    pipelines["__default__"] = (
        pipelines["data"]
        + pipelines["pretrain"]
        + pipelines["adapt"]
        + pipelines["evaluate"]
        + pipelines["register"]
    )
    return pipelines
