"""Example images for the report: upscaled, with the ground-truth box (green) and the predicted
box (red) drawn on them, as PNG bytes or a ``data:`` URI.

Boxes are normalised xyxy in [0, 1] (the project's text convention), so they scale with the
picture whatever its size.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

from PIL import Image, ImageDraw

GT_COLOUR = (0, 170, 0)  # green
PRED_COLOUR = (220, 0, 0)  # red
Box = Sequence[float]


def png_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI (the report embeds every image; no files, no network)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def decode_png(b64: str) -> Image.Image:
    """Base64 PNG text -> an RGB PIL image."""
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        return image.convert("RGB")


def _pixels(box: Box, side: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (min(max(float(v), 0.0), 1.0) * side for v in box)
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def draw_boxes(
    image: Image.Image, gt_box: Box | None, pred_box: Box | None, size: int = 256
) -> Image.Image:
    """``image`` scaled to ``size`` x ``size`` (nearest neighbour: the demo images are 64 px
    drawings, and smoothing would blur their edges) with ``gt_box`` in green and ``pred_box`` in
    red, both normalised xyxy (None: not drawn). The boxes are clipped to the image."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    canvas = image.convert("RGB").resize((size, size), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(canvas)
    width = max(2, size // 128)
    for box, colour in ((gt_box, GT_COLOUR), (pred_box, PRED_COLOUR)):
        if box is not None:
            if len(box) != 4:
                raise ValueError(f"a box is 4 numbers (normalised xyxy), got {box!r}")
            draw.rectangle(_pixels(box, size), outline=colour, width=width)
    return canvas
