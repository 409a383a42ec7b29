"""Evaluation library (no Kedro): region metrics, batched generation, region evaluation, probe.

Entry points: :func:`regions.evaluate_regions` (Caption2Bbox acc@0.5 / mean IoU / unparseable
rate; Bbox2Caption exact match next to its chance level, ROUGE-L, CIDEr, BLEU-4; OCR-region
word accuracy and ANLS), :func:`probe.probe_encoder` (linear probe of the encoder's region
features), :func:`generate.predict` (one greedy answer per eligible region),
:func:`loading.load_trained` (an export with its training prompts) and the metrics in
:mod:`metrics`, :mod:`captions` and :mod:`ocr`.

Boxes: absolute-pixel xyxy in samples, normalised xyxy in prompt/answer text.
"""

from granvit_pipeline.evaluation.captions import CAPTION_METRICS, caption_metrics, tokenize_caption
from granvit_pipeline.evaluation.generate import (
    DEFAULT_MAX_NEW_TOKENS,
    eligible_pairs,
    predict,
)
from granvit_pipeline.evaluation.loading import TrainedModel, load_trained, resolve_device
from granvit_pipeline.evaluation.metrics import (
    REC_IOU_THRESHOLD,
    exact_match,
    exact_match_chance,
    paired_iou,
    rec_metrics,
)
from granvit_pipeline.evaluation.ocr import (
    ANLS_THRESHOLD,
    anls,
    normalized_levenshtein,
    ocr_metrics,
)
from granvit_pipeline.evaluation.probe import (
    PROBE_LABELS,
    RegionFeatures,
    linear_probe,
    probe_encoder,
    region_features,
    region_labels,
)
from granvit_pipeline.evaluation.regions import evaluate_regions
from granvit_pipeline.model.tasks import REGION_TASKS

__all__ = [
    "ANLS_THRESHOLD",
    "CAPTION_METRICS",
    "DEFAULT_MAX_NEW_TOKENS",
    "PROBE_LABELS",
    "REC_IOU_THRESHOLD",
    "REGION_TASKS",
    "RegionFeatures",
    "TrainedModel",
    "anls",
    "caption_metrics",
    "eligible_pairs",
    "evaluate_regions",
    "exact_match",
    "exact_match_chance",
    "linear_probe",
    "load_trained",
    "normalized_levenshtein",
    "ocr_metrics",
    "paired_iou",
    "predict",
    "probe_encoder",
    "rec_metrics",
    "region_features",
    "region_labels",
    "resolve_device",
    "tokenize_caption",
]
