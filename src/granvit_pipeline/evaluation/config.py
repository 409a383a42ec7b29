"""``params:evaluate`` (``conf/base/parameters_evaluate.yml``): what is scored, and how."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from granvit_pipeline.model.tasks import REGION_TASKS, RegionTask

Split = Literal["train", "val", "test"]


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


class ReportParams(BaseModel):
    """``evaluate.report``: the HTML run report (``granvit_pipeline.reporting``)."""

    model_config = ConfigDict(extra="forbid")

    title: str = "GranViT run report"
    examples: int = Field(default=4, ge=0)  # first images of `split` shown with predictions
    per_task: int | None = Field(default=8, gt=0)  # example regions per task (None: all)
    image_size: int = Field(default=256, gt=0)  # example images are upscaled to this side
    screenshot: bool = True  # headless Chromium screenshot; skipped (warning) without Chromium
    browser_timeout_s: float = Field(default=60.0, gt=0)


class EvaluateParams(BaseModel):
    """``params:evaluate`` (``conf/base/parameters_evaluate.yml``)."""

    model_config = ConfigDict(extra="forbid")

    split: Split = "val"  # scored split
    max_images: int | None = Field(default=None, gt=0)  # None: the whole split
    tasks: list[RegionTask] = Field(default_factory=lambda: list(REGION_TASKS), min_length=1)
    batch_size: int = Field(default=64, gt=0)  # regions per generation batch
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    probe: ProbeParams = Field(default_factory=ProbeParams)
    report: ReportParams = Field(default_factory=ReportParams)
