"""Evaluate nodes: thin adapters from the catalog to :mod:`granvit_pipeline.evaluation`.

``load_model`` -> ``score_regions`` (Caption2Bbox, Bbox2Caption, OCR regions) and
``score_probe`` (encoder-only linear probe) -> ``build_report`` (the metrics JSON).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from granvit_pipeline.datasets import ShardSet
from granvit_pipeline.evaluation import (
    REGION_TASKS,
    TrainedModel,
    evaluate_regions,
    load_trained,
    probe_encoder,
)

logger = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]
RUN_CONFIG = "run_config.json"  # written by the training engine into the stage's output_dir


class ProbeParams(BaseModel):
    """``evaluate.probe``: the encoder-only linear probe (``evaluation.probe``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    train_split: Split = "train"  # the classifier is fitted on this split's regions
    labels: list[Literal["shape", "colour", "size", "category"]] = Field(
        default_factory=lambda: ["shape"], min_length=1
    )
    max_train_images: int | None = Field(default=1000, gt=0)  # None: the whole split
    layer: int | None = None  # encoder layer; None: last hidden state
    roi_output_size: int = Field(default=2, gt=0)  # RoIAlign bins per side, then averaged
    c: float = Field(default=1.0, gt=0)  # inverse L2 strength of the logistic regression
    batch_size: int = Field(default=64, gt=0)  # images per encoder pass


class EvaluateParams(BaseModel):
    """``params:evaluate`` (``conf/base/parameters_evaluate.yml``)."""

    model_config = ConfigDict(extra="forbid")

    split: Split = "val"  # scored split
    max_images: int | None = Field(default=None, gt=0)  # None: the whole split
    tasks: list[Literal["caption2bbox", "bbox2caption"]] = Field(
        default_factory=lambda: list(REGION_TASKS), min_length=1
    )
    batch_size: int = Field(default=64, gt=0)  # regions per generation batch
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    probe: ProbeParams = Field(default_factory=ProbeParams)


def _samples(shards: ShardSet, split: str, limit: int | None) -> Iterable[dict[str, Any]]:
    """The split's samples in shard order (at most ``limit``); an empty split is an error."""
    if shards.manifest["splits"].get(split, {}).get("images", 0) == 0:
        raise ValueError(f"split {split!r} of {shards.path} has no images to evaluate on")
    return islice(shards.dataset(split), limit)


def load_model(stage2_result: Mapping[str, Any], params: Mapping[str, Any]) -> TrainedModel:
    """The stage-2 export with its tokenizer and training prompts, on ``params.device``."""
    cfg = EvaluateParams.model_validate(params)
    run_config = Path(stage2_result["output_dir"]) / RUN_CONFIG
    return load_trained(stage2_result["export_dir"], run_config, cfg.device)


def score_regions(
    trained: TrainedModel, shards: ShardSet, params: Mapping[str, Any]
) -> dict[str, float]:
    """Caption2Bbox, Bbox2Caption and OCR-region metrics on ``params.split``."""
    cfg = EvaluateParams.model_validate(params)
    return evaluate_regions(
        trained.model, trained.tokenizer, _samples(shards, cfg.split, cfg.max_images),
        trained.prompts, batch_size=cfg.batch_size, tasks=cfg.tasks,
        precision=trained.box_precision,
    )  # fmt: skip


def score_probe(
    trained: TrainedModel, shards: ShardSet, params: Mapping[str, Any]
) -> dict[str, float]:
    """Encoder-only probe: fitted on ``probe.train_split``, scored on ``split`` ({} if off)."""
    cfg = EvaluateParams.model_validate(params)
    probe = cfg.probe
    if not probe.enabled:
        return {}
    return probe_encoder(
        trained.model,
        _samples(shards, probe.train_split, probe.max_train_images),
        _samples(shards, cfg.split, cfg.max_images),
        labels=probe.labels, batch_size=probe.batch_size, layer=probe.layer,
        roi_output_size=probe.roi_output_size, c=probe.c,
    )  # fmt: skip


def build_report(
    region_metrics: Mapping[str, float],
    probe_metrics: Mapping[str, float],
    stage2_result: Mapping[str, Any],
    shards: ShardSet,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """The evaluation report: flat ``metrics`` plus what was scored (model, split, data)."""
    cfg = EvaluateParams.model_validate(params)
    images = shards.manifest["splits"][cfg.split]["images"]
    report = {
        "metrics": {**region_metrics, **probe_metrics},
        "split": cfg.split,
        "images": min(images, cfg.max_images or images),
        "data_version": shards.manifest["content_hash"],
        "model": {k: stage2_result.get(k) for k in ("stage", "export_dir", "weights_digest")},
        "params": cfg.model_dump(mode="json"),
    }
    logger.info("evaluation of %s on %d %s images", report["model"]["export_dir"],
                report["images"], cfg.split)  # fmt: skip
    return report
