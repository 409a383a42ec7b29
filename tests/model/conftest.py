"""Shared fixtures: synthetic region samples, a tokenizer trained on them, a tiny GranViT."""

from __future__ import annotations

import random
from typing import Any

import pytest
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
SHAPES = ("square", "block", "patch")


def make_sample(index: int, width: int = 80, height: int = 48) -> dict[str, Any]:
    """A non-square image with two coloured rectangles and their region records."""
    rng = random.Random(index)
    image = Image.new("RGB", (width, height), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    regions = []
    for k, colour in enumerate(rng.sample(sorted(COLOURS), 2)):
        x1, y1 = rng.randrange(0, width - 20), rng.randrange(0, height - 16)
        x2, y2 = x1 + rng.randrange(8, 20), y1 + rng.randrange(8, 16)
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=COLOURS[colour])
        regions.append(
            {
                "region_id": f"img{index}#{k}",
                "x1": float(x1),
                "y1": float(y1),
                "x2": float(x2),
                "y2": float(y2),
                "text": f"a {colour} {rng.choice(SHAPES)}",
                "text_type": "caption",
                "iscrowd": False,
                "text_is_target": True,
            }
        )
    caption = None if index % 4 == 3 else f"a gray picture with {len(regions)} shapes"
    return {
        "image_id": f"img{index}",
        "image": image,
        "width": width,
        "height": height,
        "regions": regions,
        "global_caption": caption,
    }


@pytest.fixture(scope="session")
def samples() -> list[dict[str, Any]]:
    return [make_sample(i) for i in range(8)]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread: None) -> None:
    """Every test here runs tiny models (``one_torch_thread``)."""
