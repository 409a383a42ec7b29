"""Evaluation library (no Kedro): region metrics, batched generation, region evaluation.

Entry points: :func:`regions.evaluate_regions` (Caption2Bbox acc@0.5 / mean IoU / unparseable
rate, Bbox2Caption exact match next to its chance level), :func:`generate.predict` (one greedy
answer per eligible region) and the metrics in :mod:`metrics`.
"""

from granvit_pipeline.evaluation.generate import (
    DEFAULT_MAX_NEW_TOKENS,
    REGION_TASKS,
    eligible_pairs,
    predict,
)
from granvit_pipeline.evaluation.metrics import (
    REC_IOU_THRESHOLD,
    exact_match,
    exact_match_chance,
    paired_iou,
    rec_metrics,
)
from granvit_pipeline.evaluation.regions import evaluate_regions

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "REC_IOU_THRESHOLD",
    "REGION_TASKS",
    "eligible_pairs",
    "evaluate_regions",
    "exact_match",
    "exact_match_chance",
    "paired_iou",
    "predict",
    "rec_metrics",
]
