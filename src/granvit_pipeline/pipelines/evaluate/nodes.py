"""Evaluate nodes: thin adapters from the catalog to :mod:`granvit_pipeline.evaluation`.

``load_model`` -> ``score_regions`` (Caption2Bbox, Bbox2Caption, OCR regions) and
``score_probe`` (encoder-only linear probe) -> ``build_report`` (the metrics JSON); then the
HTML run report: ``pick_report_examples`` (predictions on the first val images) ->
``render_run_report`` (loss curves, metrics, examples) ->
``screenshot_run_report`` (headless Chromium, optional).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from granvit_pipeline.datasets import ShardSet
from granvit_pipeline.evaluation import TrainedModel, evaluate_regions, load_trained
from granvit_pipeline.evaluation.config import EvaluateParams
from granvit_pipeline.evaluation.loading import split_samples
from granvit_pipeline.evaluation.probe import probe_with_settings
from granvit_pipeline.reporting.browser import BrowserError, find_chromium, open_page
from granvit_pipeline.reporting.examples import pick_examples
from granvit_pipeline.reporting.html import render_lineage_report
from granvit_pipeline.training.run_dir import RunDir

logger = logging.getLogger(__name__)

SCREENSHOT = "run_report.png"  # the file in the evaluation_report_screenshot folder


def load_model(stage2_result: Mapping[str, Any], params: Mapping[str, Any]) -> TrainedModel:
    """The stage-2 export with its tokenizer and training prompts, on ``params.device``."""
    cfg = EvaluateParams.model_validate(params)
    run_config = RunDir(Path(stage2_result["output_dir"])).run_config
    return load_trained(stage2_result["export_dir"], run_config, cfg.device)


def score_regions(
    trained: TrainedModel, shards: ShardSet, params: Mapping[str, Any]
) -> dict[str, float]:
    """Caption2Bbox, Bbox2Caption and OCR-region metrics on ``params.split``."""
    cfg = EvaluateParams.model_validate(params)
    return evaluate_regions(
        trained.model, trained.tokenizer, split_samples(shards.path, cfg.split, cfg.max_images),
        trained.prompts, batch_size=cfg.batch_size, tasks=cfg.tasks,
        precision=trained.box_precision,
    )  # fmt: skip


def score_probe(
    trained: TrainedModel, shards: ShardSet, params: Mapping[str, Any]
) -> dict[str, float]:
    """Encoder-only probe: fitted on ``probe.train_split``, scored on ``split`` ({} if off)."""
    cfg = EvaluateParams.model_validate(params)
    return probe_with_settings(trained.model, shards.path, cfg) if cfg.probe.enabled else {}


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


def pick_report_examples(
    trained: TrainedModel, shards: ShardSet, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Predictions for the first ``report.examples`` images of ``split`` (``tasks``), with the
    images as base64 PNG: JSON, so the report can be rendered again without the model."""
    cfg = EvaluateParams.model_validate(params)
    samples = list(islice(shards.dataset(cfg.split), cfg.report.examples))
    if not samples:
        return {"images": [], "rows": []}
    return pick_examples(
        trained.model, trained.tokenizer, samples, trained.prompts,
        precision=trained.box_precision, tasks=cfg.tasks, per_task=cfg.report.per_task,
        batch_size=cfg.batch_size,
    )  # fmt: skip


def render_run_report(
    evaluation_report: Mapping[str, Any],
    report_examples: Mapping[str, Any],
    stage2_result: Mapping[str, Any],
    params: Mapping[str, Any],
) -> str:
    """The self-contained HTML run report of the evaluated model, with the loss curves of the
    stages that produced it (its ``output_dir``'s lineage)."""
    cfg = EvaluateParams.model_validate(params).report
    return render_lineage_report(
        evaluation_report, report_examples, stage2_result["output_dir"], title=cfg.title,
        image_size=cfg.image_size,
    )  # fmt: skip


def screenshot_run_report(report_html: str, params: Mapping[str, Any]) -> dict[str, bytes]:
    """``{"run_report.png": PNG}`` of the report in headless Chromium; ``{}`` when
    ``report.screenshot`` is off or no Chromium is installed (``make browser``). Console errors
    of the page are logged as warnings, not raised: the report is already written."""
    cfg = EvaluateParams.model_validate(params).report
    if not cfg.screenshot:
        return {}
    if find_chromium() is None:
        logger.warning("no Chromium (`make browser` installs it): run report screenshot skipped")
        return {}
    with tempfile.TemporaryDirectory(prefix="granvit-report-") as tmp:
        page = Path(tmp) / "run_report.html"
        page.write_text(report_html, encoding="utf-8")
        try:
            result = open_page(page, timeout_s=cfg.browser_timeout_s)
        except BrowserError as err:
            logger.warning("run report screenshot failed: %s", err)
            return {}
    for message in result.console_errors:
        logger.warning("run report console error: %s", message)
    return {SCREENSHOT: result.screenshot}
