"""Region-level metrics: box IoU, REC accuracy (Caption2Bbox) and exact match (Bbox2Caption).

Boxes are ``xyxy``; IoU is scale-invariant, so pairs may be normalised ``[0, 1]`` (the text form
of :mod:`granvit_pipeline.model.box_codec`) or absolute pixels
(:mod:`granvit_pipeline.regions.boxes`) as long as both sides of a pair use the same one.

REC convention (RefCOCO): a prediction is correct iff ``IoU(pred, gt) >= 0.5``. A prediction that
is not a well-formed box (:func:`~granvit_pipeline.model.box_codec.try_parse_box` gives ``None``)
counts as wrong with IoU 0 and is also reported separately (``unparseable_rate``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torchvision.ops import box_iou

from granvit_pipeline.model.box_codec import try_parse_box
from granvit_pipeline.model.tokenizer import normalize_text

REC_IOU_THRESHOLD = 0.5
_CHUNK = 1024  # pairs per box_iou call: the (chunk x chunk) matrix stays small


def paired_iou(pred_xyxy: npt.ArrayLike, gt_xyxy: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """IoU of each predicted box with its own ground-truth box.

    Args:
        pred_xyxy: ``(N, 4)`` xyxy boxes (normalised or pixels).
        gt_xyxy: ``(N, 4)`` xyxy boxes in the same coordinates as ``pred_xyxy``.
    Returns:
        ``(N,)`` float64 IoU in ``[0, 1]``; a pair whose union is empty (two zero-area boxes)
        has IoU 0.
    """
    pred = torch.as_tensor(np.asarray(pred_xyxy, dtype=np.float64)).reshape(-1, 4)
    gt = torch.as_tensor(np.asarray(gt_xyxy, dtype=np.float64)).reshape(-1, 4)
    if pred.shape != gt.shape:
        raise ValueError(f"{pred.shape[0]} predicted boxes for {gt.shape[0]} ground-truth boxes")
    for name, boxes in (("pred", pred), ("gt", gt)):
        if bool(((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any()):
            raise ValueError(f"{name} boxes must be xyxy with x1 <= x2 and y1 <= y2")
    out = []
    for start in range(0, pred.shape[0], _CHUNK):
        block = box_iou(pred[start : start + _CHUNK], gt[start : start + _CHUNK])
        out.append(torch.diagonal(block))
    if not out:
        return np.zeros(0, dtype=np.float64)
    return torch.nan_to_num(torch.cat(out), nan=0.0).numpy()


def rec_metrics(
    pred_texts: Sequence[str],
    gt_boxes_norm: npt.ArrayLike,
    threshold: float = REC_IOU_THRESHOLD,
    image_boxes_norm: Sequence[npt.ArrayLike] | None = None,
) -> dict[str, float]:
    """Caption2Bbox (REC) metrics of generated box texts against normalised ground truth.

    Args:
        pred_texts: ``N`` generated answers, each meant to be ``"[x1, y1, x2, y2]"``.
        gt_boxes_norm: ``(N, 4)`` ground-truth boxes, normalised xyxy in ``[0, 1]``.
        threshold: IoU needed to count as correct (``>=``).
        image_boxes_norm: optional, per answer the ``(M_i, 4)`` normalised boxes of every
            region of its image (the named one included), for the grounding split below.
    Returns:
        ``{"acc@0.5", "mean_iou", "unparseable_rate", "n"}``: accuracy and mean IoU over all
        ``N`` (unparseable = IoU 0, wrong), the fraction that did not parse, and ``N``. The
        accuracy key names the threshold (``acc@0.7`` for 0.7). All 0 when ``N == 0``.
        With ``image_boxes_norm`` also ``any_object@0.5`` (the box matches *some* region of
        its image) and ``wrong_object@0.5`` (that, minus ``acc``: a region localised, but not
        the one the text names), which tell grounding errors from localisation errors.
    """
    gt = np.asarray(gt_boxes_norm, dtype=np.float64).reshape(-1, 4)
    if len(pred_texts) != gt.shape[0]:
        raise ValueError(f"{len(pred_texts)} predictions for {gt.shape[0]} ground-truth boxes")
    parsed = [try_parse_box(normalize_text(t)) for t in pred_texts]
    ok = np.array([p is not None for p in parsed], dtype=bool)
    iou = np.zeros(len(parsed), dtype=np.float64)
    if ok.any():
        iou[ok] = paired_iou([p for p in parsed if p is not None], gt[ok])
    n = len(parsed)
    acc = float((iou >= threshold).mean()) if n else 0.0
    out = {
        f"acc@{threshold:g}": acc,
        "mean_iou": float(iou.mean()) if n else 0.0,
        "unparseable_rate": float((~ok).mean()) if n else 0.0,
        "n": float(n),
    }
    if image_boxes_norm is not None:
        if len(image_boxes_norm) != n:
            raise ValueError(f"{len(image_boxes_norm)} image box lists for {n} predictions")
        hits = [box is not None and _best_iou(box, boxes) >= threshold
                for box, boxes in zip(parsed, image_boxes_norm, strict=True)]  # fmt: skip
        any_object = float(np.mean(hits)) if n else 0.0
        out[f"any_object@{threshold:g}"] = any_object
        out[f"wrong_object@{threshold:g}"] = any_object - acc
    return out


def _best_iou(box: Sequence[float], others: npt.ArrayLike) -> float:
    others = np.asarray(others, dtype=np.float64).reshape(-1, 4)
    return float(paired_iou([box] * len(others), others).max()) if len(others) else 0.0


def exact_match(preds: Sequence[str], targets: Sequence[str]) -> float:
    """Fraction of ``preds`` equal to their target after :func:`normalize_text` (0 if empty).

    Case and punctuation count: the demo texts are generated, so a right answer is exact.
    """
    if len(preds) != len(targets):
        raise ValueError(f"{len(preds)} predictions for {len(targets)} targets")
    if not preds:
        return 0.0
    hits = sum(normalize_text(p) == normalize_text(t) for p, t in zip(preds, targets, strict=True))
    return hits / len(preds)


def exact_match_chance(targets: Sequence[str]) -> float:
    """Exact match of the best constant answer: the share of the most common target text.

    A model that ignores the image and the box can do no better than this on the same set.
    """
    if not targets:
        return 0.0
    counts = Counter(normalize_text(t) for t in targets)
    return counts.most_common(1)[0][1] / len(targets)
