"""Batched greedy generation over evaluation samples, one prediction per eligible region.

Samples are shard-reader dicts (``image`` PIL RGB, ``width``, ``height``, ``image_id``,
``regions`` with absolute-pixel xyxy boxes; see :mod:`granvit_pipeline.model.data`). Eligible
regions are exactly those the training collator builds examples from
(:func:`~granvit_pipeline.model.data.build_examples`): Bbox2Caption every target region,
Caption2Bbox every target region whose text is unique in its image.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import torch

from granvit_pipeline.model.data import Collator, Example, build_examples
from granvit_pipeline.model.modeling import GranViT
from granvit_pipeline.model.prompts import PromptTemplates
from granvit_pipeline.model.tasks import REGION_TASKS
from granvit_pipeline.model.tokenizer import normalize_text
from granvit_pipeline.regions.boxes import normalize_xyxy

logger = logging.getLogger(__name__)

RegionTask = Literal["caption2bbox", "bbox2caption"]
# Longest answers: a box is 9 tokens + <eos>; a region text is <= ~10 words (prompt says so).
DEFAULT_MAX_NEW_TOKENS: dict[str, int] = {"caption2bbox": 12, "bbox2caption": 16}

Pair = tuple[Mapping[str, Any], Example]


def eligible_pairs(
    samples: Iterable[Mapping[str, Any]], task: str, prompts: PromptTemplates, precision: int = 2
) -> list[Pair]:
    """``(sample, example)`` for every eligible region of ``task``, in sample then region order."""
    if task not in REGION_TASKS:
        raise ValueError(f"task must be one of {REGION_TASKS}, got {task!r}")
    return [(s, ex) for s in samples for ex in build_examples(s, task, prompts, precision)]


def _decode(tokenizer: Any, rows: torch.Tensor) -> list[str]:
    """``(B, L)`` generated ids -> texts, cut at the first ``<eos>`` (specials dropped)."""
    out = []
    for row in rows.tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        out.append(normalize_text(tokenizer.decode(row, skip_special_tokens=True)))
    return out


def _text_type(sample: Mapping[str, Any], region_id: str | None) -> str | None:
    types = [r.get("text_type") for r in sample.get("regions", [])
             if str(r["region_id"]) == region_id]  # fmt: skip
    return types[0] if types else None


def _image_boxes(sample: Mapping[str, Any]) -> list[tuple[float, ...]]:
    """Normalised xyxy boxes of every region of ``sample``."""
    boxes = [(r["x1"], r["y1"], r["x2"], r["y2"]) for r in sample.get("regions", [])]
    if not boxes:
        return []
    norm = normalize_xyxy(boxes, sample["width"], sample["height"])
    return [tuple(float(v) for v in box) for box in norm]


def _row(sample: Mapping[str, Any], ex: Example, prediction: str) -> dict[str, Any]:
    assert ex.box_px is not None  # region tasks always carry a box
    box = normalize_xyxy(ex.box_px, sample["width"], sample["height"])
    return {
        "image_id": ex.image_id,
        "region_id": ex.region_id,
        "text_type": _text_type(sample, ex.region_id),
        "task": ex.task,
        "prompt": ex.prompt,
        "target": ex.target,
        "prediction": prediction,
        "gt_box_norm": tuple(float(v) for v in box),
        "image_boxes_norm": _image_boxes(sample),
    }


def predict(
    model: GranViT,
    tokenizer: Any,
    samples: Sequence[Mapping[str, Any]],
    task: RegionTask,
    prompts: PromptTemplates | None = None,
    image_size: int | None = None,
    batch_size: int = 64,
    max_new_tokens: int | None = None,
    precision: int = 2,
) -> list[dict[str, Any]]:
    """Greedy answers of ``model`` for every eligible region of ``task`` in ``samples``.

    Args:
        model: a :class:`GranViT` (put in eval mode for the call, then restored).
        tokenizer: the tokenizer the model was trained with (pad/bos/eos/sep tokens).
        task: ``"caption2bbox"`` (answer: normalised box text) or ``"bbox2caption"``.
        prompts: templates; default: the paper's.
        image_size: encoder input side; default: the model's.
        batch_size: regions per generation batch (left-padded prompts).
        max_new_tokens: decoding steps at most; default :data:`DEFAULT_MAX_NEW_TOKENS`.
        precision: decimals of box coordinates in prompts/targets (as in training).
    Returns:
        One dict per eligible region, in sample then region order: ``image_id``, ``region_id``,
        ``text_type`` (the region's, e.g. ``"refexp"`` or ``"ocr"``), ``task``, ``prompt``,
        ``target`` (normalised answer text), ``prediction`` (normalised generated text, up to
        ``<eos>``), ``gt_box_norm`` (exact normalised xyxy box, not rounded like the box
        text) and ``image_boxes_norm`` (every region box of the image, normalised).
        Deterministic for fixed weights.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if task not in REGION_TASKS:
        raise ValueError(f"task must be one of {REGION_TASKS}, got {task!r}")
    prompts = prompts or PromptTemplates()
    size = image_size or model.image_size
    steps = max_new_tokens or DEFAULT_MAX_NEW_TOKENS[task]
    collator = Collator(tokenizer, prompts, {task: 1.0}, size, precision=precision)
    pairs = eligible_pairs(samples, task, prompts, precision)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    try:
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            batch = collator.collate(chunk, generation=True)
            ids = model.generate(
                batch["pixel_values"].to(device),
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                max_new_tokens=steps,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            texts = _decode(tokenizer, ids.cpu())
            rows += [_row(s, ex, t) for (s, ex), t in zip(chunk, texts, strict=True)]
    finally:
        model.train(was_training)
    logger.info("predicted %d %s regions", len(rows), task)
    return rows
