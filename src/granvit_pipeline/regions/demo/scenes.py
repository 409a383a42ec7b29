"""Drawing the demo data: synthetic shape scenes with referring expressions, plus rendered text.

The project's default data (``kedro run`` on a fresh machine): small, fast, deterministic and
learnable by a tiny model at low resolution, yet not trivial. Two kinds of square images:

* **natural**: ``min_objects..max_objects`` non-overlapping shapes (shape, colour, size class)
  on a light, mildly noisy background. The global caption lists every object left to right.
  Each object is one ``refexp`` region naming the *fewest* attributes that pick it out (subsets
  tried in a fixed order, so the text is a function of the scene; no shape -> "the red shape").
  Objects sharing all attributes ("twins") get a relation to a uniquely described anchor,
  ``"<target> left of|right of|above|below <anchor>"``: the target's box centre is that side of
  the anchor's by >= ``relation_margin`` px, every twin's the other side by >= that margin.
* **ocr**: a few lines of common short words in Pillow's built-in font, not anti-aliased so every
  ink pixel is exact; one ``ocr`` region per line, no global caption.

Boxes are tight boxes of the drawn pixels, absolute xyxy (``boxes.py``). Image ``i`` draws from
its own stream ``numpy.random.default_rng([seed, i])``: the same config gives byte-identical PNGs
and records, and any image can be regenerated alone (:func:`demo_scene`). Images are square
(``image_size``); a non-square variant would only need a second size field.
"""

from __future__ import annotations

import io
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from granvit_pipeline.regions.demo.config import RGB, DemoConfig
from granvit_pipeline.regions.demo.language import (
    Box,
    ShapeObject,
    global_caption,
    referring_expressions,
)

logger = logging.getLogger(__name__)

Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class DemoImage:
    """One generated image and its annotation record."""

    name: str  # relative image path, e.g. "images/000123.png"
    png: bytes  # the encoded image
    record: dict[str, Any]  # one JSONL record in FORMAT_JSONL.md format


@dataclass(frozen=True)
class TextLine:
    """Ground truth of one rendered text line (OCR images)."""

    text: str
    font_size: int
    box: Box  # tight box of the ink pixels, absolute xyxy


@dataclass(frozen=True)
class DemoScene:
    """An image with the ground truth behind its record (for tests, probes and evaluation)."""

    image: DemoImage
    objects: tuple[ShapeObject, ...]  # natural images; empty for OCR
    lines: tuple[TextLine, ...]  # OCR images; empty for natural


def generate_demo(cfg: DemoConfig) -> Iterator[DemoImage]:
    """Stream the demo data set, one image at a time (bounded memory)."""
    start, kinds = time.perf_counter(), Counter[str]()
    for index in range(cfg.n_images):
        item = demo_scene(cfg, index).image
        kinds[item.record["kind"]] += 1
        yield item
    elapsed = time.perf_counter() - start
    logger.info("Generated %d demo images %s in %.1f s", cfg.n_images, dict(kinds), elapsed)


def demo_scene(cfg: DemoConfig, index: int) -> DemoScene:
    """Image ``index`` of the data set (independent of all other images) with its ground truth."""
    rng = np.random.default_rng([cfg.seed, index])
    image_id = f"{index:0{max(6, len(str(cfg.n_images - 1)))}d}"
    canvas = _background(rng, cfg)
    record: dict[str, Any] = {
        "image_id": image_id,
        "image": f"images/{image_id}.png",
        "width": cfg.image_size,
        "height": cfg.image_size,
    }
    if rng.random() < cfg.ocr_fraction:
        lines = _ocr_scene(rng, cfg, canvas)
        texts, boxes, objects = [ln.text for ln in lines], [ln.box for ln in lines], ()
        record.update(kind="ocr", global_caption=None)
    else:
        objects, texts = _natural_scene(rng, cfg, canvas)
        boxes, lines = [o.box for o in objects], ()
        record.update(kind="natural", global_caption=global_caption(objects))
    text_type = "ocr" if record["kind"] == "ocr" else "refexp"
    record["regions"] = [
        {"id": str(i), "box": list(b), "text": t, "text_type": text_type, "text_is_target": True}
        for i, (b, t) in enumerate(zip(boxes, texts, strict=True))
    ]
    return DemoScene(DemoImage(record["image"], _encode_png(canvas), record), objects, lines)


def _background(rng: np.random.Generator, cfg: DemoConfig) -> npt.NDArray[np.uint8]:
    n = cfg.background_noise
    noise = rng.integers(-n, n + 1, size=(cfg.image_size, cfg.image_size, 1))
    return np.clip(np.array(cfg.background, dtype=np.int16) + noise, 0, 255).astype(np.uint8)


def _encode_png(canvas: npt.NDArray[np.uint8]) -> bytes:
    buf = io.BytesIO()  # fixed options and no metadata chunks, so the bytes are stable
    Image.fromarray(canvas).save(buf, format="PNG", compress_level=1, optimize=False)
    return buf.getvalue()


def _tight(mask: Mask) -> Mask:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


@lru_cache(maxsize=256)
def _shape_mask(shape: str, side: int) -> Mask:
    """Aliased mask of ``shape`` drawn in a ``side`` x ``side`` square, cropped tight."""
    img = Image.new("1", (side, side), 0)
    draw, e, m = ImageDraw.Draw(img), side - 1, (side - 1) / 2
    if shape == "circle":
        draw.ellipse((0, 0, e, e), fill=1)
    elif shape == "square":
        draw.rectangle((0, 0, e, e), fill=1)
    elif shape == "triangle":
        draw.polygon([(m, 0), (e, e), (0, e)], fill=1)
    elif shape == "diamond":
        draw.polygon([(m, 0), (e, m), (m, e), (0, m)], fill=1)
    else:  # cross: a plus sign with arms a third of the side thick
        t = max(1, round(side / 3))
        o = (side - t) // 2
        draw.rectangle((o, 0, o + t - 1, e), fill=1)
        draw.rectangle((0, o, e, o + t - 1), fill=1)
    mask = _tight(np.array(img, dtype=bool))
    mask.flags.writeable = False
    return mask


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text_mask(text: str, size: int) -> Mask:
    """Ink mask of ``text`` in the built-in font, cropped tight.

    No anti-aliasing, so every ink pixel is exact. Monochrome glyphs are wider than the font's
    metrics say and its 2-3 px space vanishes, so words are drawn one by one on a common
    baseline and joined with a gap of half an em.
    """
    font, height = _font(size), 2 * size + 4
    columns: list[Mask] = []
    for word in text.split(" "):
        img = Image.new("1", (size * (len(word) + 2), height), 0)
        draw = ImageDraw.Draw(img)
        draw.fontmode = "1"
        draw.text((2, size + 2), word, font=font, fill=1, anchor="ls")
        ink = np.array(img, dtype=bool)
        used = np.flatnonzero(ink.any(axis=0))
        if columns:
            columns.append(np.zeros((height, max(4, round(size / 2))), dtype=bool))
        columns.append(ink[:, used[0] : used[-1] + 1])
    return _tight(np.hstack(columns))


def _place(rng: np.random.Generator, masks: list[Mask], cfg: DemoConfig) -> list[Box] | None:
    """Random non-overlapping positions (``object_gap`` apart) for the masks, or None."""
    size, gap, boxes = cfg.image_size, cfg.object_gap, []
    for mask in masks:
        h, w = mask.shape
        if h > size or w > size:
            return None
        for _ in range(50):
            x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            if all(
                x + w + gap <= b[0] or b[2] + gap <= x or y + h + gap <= b[1] or b[3] + gap <= y
                for b in boxes
            ):
                boxes.append((float(x), float(y), float(x + w), float(y + h)))
                break
        else:
            return None
    return boxes


def _paint(canvas: npt.NDArray[np.uint8], mask: Mask, box: Box, colour: RGB) -> None:
    x1, y1, x2, y2 = (int(v) for v in box)
    canvas[y1:y2, x1:x2][mask] = colour


def _natural_scene(
    rng: np.random.Generator, cfg: DemoConfig, canvas: npt.NDArray[np.uint8]
) -> tuple[tuple[ShapeObject, ...], list[str]]:
    """Sample, place and describe shapes until every object has a unique expression; paint."""
    shapes, colours, sizes = list(cfg.shapes), list(cfg.colours), list(cfg.sizes)
    for _ in range(cfg.max_attempts):
        attrs: list[tuple[str, str, str]] = []
        for i in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
            if i and rng.random() < cfg.duplicate_prob:
                attrs.append(attrs[int(rng.integers(i))])
            else:
                s, c, z = (int(rng.integers(len(v))) for v in (shapes, colours, sizes))
                attrs.append((shapes[s], colours[c], sizes[z]))
        masks = []
        for shape, _colour, size in attrs:
            lo, hi = cfg.sizes[size]
            masks.append(_shape_mask(shape, round(rng.uniform(lo, hi) * cfg.image_size)))
        boxes = _place(rng, masks, cfg)
        if boxes is None:
            continue
        objects = tuple(ShapeObject(*a, box=b) for a, b in zip(attrs, boxes, strict=True))
        texts = referring_expressions(objects, cfg.relation_margin)
        if texts is None:
            continue
        for obj, mask in zip(objects, masks, strict=True):
            _paint(canvas, mask, obj.box, cfg.colours[obj.colour])
        return objects, texts
    raise RuntimeError(f"no valid demo scene in {cfg.max_attempts} attempts: config too crowded")


def _ocr_scene(
    rng: np.random.Generator, cfg: DemoConfig, canvas: npt.NDArray[np.uint8]
) -> tuple[TextLine, ...]:
    """Sample distinct text lines that fit, place them apart and paint them."""
    vocab, sizes, inks = cfg.ocr_vocabulary, cfg.ocr_font_sizes, cfg.ocr_inks
    for _ in range(cfg.max_attempts):
        n_lines = int(rng.integers(cfg.ocr_lines[0], cfg.ocr_lines[1] + 1))
        lines: dict[str, tuple[int, Mask]] = {}  # text -> (font size, ink mask)
        for _ in range(20 * n_lines):  # bounded: a tiny vocabulary may not give enough lines
            words = rng.integers(0, len(vocab), size=int(rng.integers(1, cfg.ocr_max_words + 1)))
            text = " ".join(vocab[int(w)] for w in words)
            size = sizes[int(rng.integers(len(sizes)))]
            mask = _text_mask(text, size)
            if text not in lines and mask.shape[1] <= cfg.image_size - 2 * cfg.object_gap:
                lines[text] = (size, mask)
            if len(lines) == n_lines:
                break
        boxes = _place(rng, [m for _, m in lines.values()], cfg) if len(lines) == n_lines else None
        if boxes is None:
            continue
        for (_, mask), box in zip(lines.values(), boxes, strict=True):
            _paint(canvas, mask, box, inks[int(rng.integers(len(inks)))])
        return tuple(TextLine(t, s, b) for (t, (s, _)), b in zip(lines.items(), boxes, strict=True))
    raise RuntimeError(f"no valid OCR scene in {cfg.max_attempts} attempts: config too crowded")
