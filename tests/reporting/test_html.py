"""The report's pieces: lineage, curves, boxes drawn on images, escaping, self-containedness."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from granvit_pipeline.reporting.curves import loss_curves_png, stage_lineage
from granvit_pipeline.reporting.html import render_report
from granvit_pipeline.reporting.images import GT_COLOUR, PRED_COLOUR, draw_boxes
from granvit_pipeline.training.run_dir import read_metrics


def test_lineage_follows_init_from_oldest_first(lineage: Path) -> None:
    stages = stage_lineage(lineage)
    assert [s.stage for s in stages] == ["lm_warmup", "stage1", "stage2"]
    assert [len(s.rows) for s in stages] == [5, 8, 6]  # the torn last lines are skipped
    assert stages[1].loss_keys == ["loss", "loss_caption", "loss_distill"]


def test_lineage_of_a_bare_folder_and_missing_metrics(tmp_path: Path) -> None:
    (stage,) = stage_lineage(tmp_path / "nowhere")
    assert stage.stage == "nowhere" and stage.rows == []
    assert read_metrics(tmp_path / "missing.jsonl") == []
    assert loss_curves_png([stage]) is None


def test_loss_curves_are_a_png(lineage: Path) -> None:
    png = loss_curves_png(stage_lineage(lineage))
    assert png is not None
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.width > 3 * image.height  # three panels


def test_boxes_are_drawn_in_colour_on_the_upscaled_image() -> None:
    image = Image.new("RGB", (64, 64), "white")
    out = draw_boxes(image, [0.25, 0.25, 0.75, 0.75], [0.0, 0.0, 0.5, 0.5], size=256)
    assert out.size == (256, 256)
    assert out.getpixel((64, 150)) == GT_COLOUR  # left edge of the ground truth
    assert out.getpixel((32, 0)) == PRED_COLOUR  # top edge of the prediction
    assert out.getpixel((200, 200)) == (255, 255, 255)
    with pytest.raises(ValueError, match="4 numbers"):
        draw_boxes(image, [0.1, 0.2], None)


def test_report_escapes_text_and_is_self_contained(
    evaluation_report: dict[str, Any], lineage: Path, examples: dict, ablation_table: dict
) -> None:
    html = render_report(evaluation_report, stage_lineage(lineage), examples, ablation_table)
    assert "<script" not in html  # the caption's markup is shown, not run
    assert "&lt;script&gt;console.error(&quot;injected&quot;)" in html
    assert not re.search(r"(src|href)=\"(?!data:image/png;base64,)", html)
    assert "http://" not in html and "https://" not in html
    for heading in ("Loss curves", "Evaluation metrics", "Ablation", "Caption2Bbox",
                    "Bbox2Caption"):  # fmt: skip
        assert heading in html
    assert "not a box" in html and "chance" in html and "abc123" in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 1 + len(examples["rows"])  # curves + one card per example
    with Image.open(io.BytesIO(base64.b64decode(images[1]))) as card:
        assert card.size == (256, 256)


def test_report_without_optional_parts(evaluation_report: dict[str, Any]) -> None:
    html = render_report(evaluation_report)
    assert "No training metrics found" in html
    assert "Ablation" not in html and "Examples" not in html
    assert "caption2bbox/acc@0.5" in html
