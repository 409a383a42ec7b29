"""Example predictions for the report: the model's answers on the first images of a split.

The result is plain JSON (rows + base64 PNG images), so it can be saved, diffed and rendered
again without the model.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from granvit_pipeline.evaluation.generate import predict
from granvit_pipeline.model.box_codec import try_parse_box
from granvit_pipeline.model.prompts import PromptTemplates
from granvit_pipeline.model.tasks import REGION_TASKS
from granvit_pipeline.model.tokenizer import normalize_text
from granvit_pipeline.reporting.images import png_bytes

logger = logging.getLogger(__name__)


def _region_texts(samples: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    return {
        (str(s["image_id"]), str(r["region_id"])): str(r.get("text") or "")
        for s in samples
        for r in s.get("regions", [])
    }


def pick_examples(
    model: Any,
    tokenizer: Any,
    samples: Sequence[Mapping[str, Any]],
    prompts: PromptTemplates,
    precision: int = 2,
    tasks: Sequence[str] = REGION_TASKS,
    per_task: int | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Greedy answers for every eligible region of ``samples`` (both region tasks).

    Returns:
        ``{"images": [{"image_id", "width", "height", "png_b64"}], "rows": [...]}``: each row
        is a :func:`~granvit_pipeline.evaluation.generate.predict` row plus ``text`` (the
        region's caption or referring expression) and ``pred_box_norm`` (the parsed predicted
        box for Caption2Bbox, normalised xyxy; None when unparseable or for Bbox2Caption).
        ``per_task`` keeps at most that many rows per task (None: all).
    """
    texts = _region_texts(samples)
    rows: list[dict[str, Any]] = []
    for task in tasks:
        predicted = predict(model, tokenizer, samples, task, prompts, batch_size=batch_size,
                            precision=precision)  # fmt: skip
        for row in predicted[:per_task]:
            # parsed exactly as the Caption2Bbox metrics parse it (evaluation.metrics)
            text = normalize_text(row["prediction"])
            box = try_parse_box(text) if task == "caption2bbox" else None
            rows.append({
                **row,
                "gt_box_norm": list(row["gt_box_norm"]),
                "text": texts.get((str(row["image_id"]), str(row["region_id"])), ""),
                "pred_box_norm": None if box is None else [float(v) for v in box],
            })  # fmt: skip
    used = {str(r["image_id"]) for r in rows}
    images = [
        {
            "image_id": str(s["image_id"]),
            "width": int(s["width"]),
            "height": int(s["height"]),
            "png_b64": base64.b64encode(png_bytes(s["image"].convert("RGB"))).decode("ascii"),
        }
        for s in samples
        if str(s["image_id"]) in used
    ]
    logger.info("%d example predictions on %d images", len(rows), len(images))
    return {"images": images, "rows": rows}
