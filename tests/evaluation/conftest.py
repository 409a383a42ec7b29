"""Fixtures: hand-made region samples (with ineligible regions), a tokenizer, a tiny GranViT."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image, ImageDraw


def _region(rid: str, box: tuple[float, float, float, float], text: str, **extra: Any) -> dict:
    x1, y1, x2, y2 = box
    return {
        "region_id": rid, "x1": x1, "y1": y1, "x2": x2, "y2": y2, "text": text,
        "text_type": "refexp", "iscrowd": False, "text_is_target": True, **extra,
    }  # fmt: skip


def _sample(index: int, regions: list[dict], width: int = 48, height: int = 32) -> dict:
    image = Image.new("RGB", (width, height), (90, 90, 90))
    draw = ImageDraw.Draw(image)
    for k, r in enumerate(regions):
        draw.rectangle([r["x1"], r["y1"], r["x2"] - 1, r["y2"] - 1], fill=(200, 40 * k, 30))
    return {
        "image_id": f"img{index}", "image": image, "width": width, "height": height,
        "global_caption": f"picture {index}", "regions": regions,
    }  # fmt: skip


@pytest.fixture(scope="session")
def samples() -> list[dict[str, Any]]:
    """3 images. Eligible: bbox2caption a0 a1 a2 b0 c0 (5); caption2bbox a2 b0 c0 (3).

    a0/a1 share a text (no caption2bbox answer), a3 is crowd, b1 is not a target, b2 is empty.
    """
    return [
        _sample(0, [
            _region("a0", (2, 2, 12, 12), "the red shape"),
            _region("a1", (20, 4, 30, 14), "the red shape"),
            _region("a2", (5, 15, 25, 30), "the big square"),
            _region("a3", (30, 10, 40, 20), "people", iscrowd=True),
        ]),
        _sample(1, [
            _region("b0", (0, 0, 16, 16), "the left square"),
            _region("b1", (20, 0, 36, 16), "the right square", text_is_target=False),
            _region("b2", (10, 10, 20, 20), "   "),
        ]),
        _sample(2, [_region("c0", (8, 4, 40, 28), "the big shape")], width=64, height=48),
    ]  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test here runs tiny models (``one_torch_thread``)."""
