"""Region-level evaluation of a GranViT: Caption2Bbox (REC), Bbox2Caption and OCR regions."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from granvit_pipeline.evaluation.captions import caption_metrics
from granvit_pipeline.evaluation.generate import predict
from granvit_pipeline.evaluation.metrics import exact_match, exact_match_chance, rec_metrics
from granvit_pipeline.evaluation.ocr import ocr_metrics
from granvit_pipeline.model.modeling import GranViT
from granvit_pipeline.model.prompts import PromptTemplates
from granvit_pipeline.model.tasks import REGION_TASKS

logger = logging.getLogger(__name__)


def evaluate_regions(
    model: GranViT,
    tokenizer: Any,
    samples: Iterable[Mapping[str, Any]],
    prompts: PromptTemplates | None = None,
    image_size: int | None = None,
    batch_size: int = 64,
    tasks: Sequence[str] = REGION_TASKS,
    precision: int = 2,
) -> dict[str, float]:
    """Greedy-decode every eligible region of ``samples`` and score it.

    Returns a flat dict (ready for metric loggers); keys present for the tasks asked:

    * ``caption2bbox/acc@0.5``, ``caption2bbox/mean_iou``, ``caption2bbox/unparseable_rate``,
      ``caption2bbox/any_object@0.5`` and ``caption2bbox/wrong_object@0.5`` (the box is on
      some region of the image / on another region than the named one: grounding vs
      localisation errors), ``caption2bbox/n``, ``caption2bbox/regions_per_s``
    * ``bbox2caption/exact_match``, ``bbox2caption/exact_match_chance`` (best constant answer),
      ``bbox2caption/rouge_l``, ``bbox2caption/cider``, ``bbox2caption/bleu4``
      (:mod:`.captions`), ``bbox2caption/n``, ``bbox2caption/regions_per_s``
    * with ``bbox2caption``: ``ocr/exact_match``, ``ocr/anls``, ``ocr/n`` (:mod:`.ocr`) over
      the Bbox2Caption regions whose ``text_type`` is ``"ocr"`` (all 0 when there are none)

    Bbox2Caption scores cover every eligible region, OCR ones included; the ``ocr/`` keys
    score the OCR subset again as transcriptions. ``regions_per_s`` times generation and
    scoring together. Samples are shard-reader dicts (boxes: absolute-pixel xyxy).
    """
    unknown = set(tasks) - set(REGION_TASKS)
    if unknown or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of {REGION_TASKS}, got {tasks}")
    data = list(samples)
    out: dict[str, float] = {}
    for task in tasks:
        start = time.perf_counter()
        rows = predict(
            model, tokenizer, data, task, prompts, image_size, batch_size, precision=precision
        )
        preds = [r["prediction"] for r in rows]
        if task == "caption2bbox":
            scores = rec_metrics(
                preds, [r["gt_box_norm"] for r in rows],
                image_boxes_norm=[r["image_boxes_norm"] for r in rows],
            )  # fmt: skip
        else:
            scores = _caption_scores(rows)
            ocr = [r for r in rows if r["text_type"] == "ocr"]
            ocr_scores = ocr_metrics([r["prediction"] for r in ocr], [r["target"] for r in ocr])
            out |= {f"ocr/{k}": v for k, v in ocr_scores.items()}
        seconds = time.perf_counter() - start
        scores["regions_per_s"] = len(rows) / seconds if seconds > 0 else 0.0
        out |= {f"{task}/{k}": v for k, v in scores.items()}
    logger.info("region evaluation: %s", {k: round(v, 4) for k, v in out.items()})
    return out


def _caption_scores(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Bbox2Caption scores of :func:`predict` rows (exact match, chance, caption metrics)."""
    preds, targets = [r["prediction"] for r in rows], [r["target"] for r in rows]
    return {
        "exact_match": exact_match(preds, targets),
        "exact_match_chance": exact_match_chance(targets),
        **caption_metrics(preds, targets),
        "n": float(len(rows)),
    }
