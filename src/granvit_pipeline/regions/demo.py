"""Built-in demo data: synthetic shape scenes with referring expressions, plus rendered text.

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
import itertools
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, Field, model_validator

from granvit_pipeline.regions.demo_language import (
    RELATIONS,
    ShapeObject,
    global_caption,
    referring_expressions,
)

logger = logging.getLogger(__name__)

ShapeName = Literal["circle", "square", "triangle", "diamond", "cross"]
Channel = Annotated[int, Field(ge=0, le=255)]
RGB = tuple[Channel, Channel, Channel]
Box = tuple[float, float, float, float]
Mask = npt.NDArray[np.bool_]

_RESERVED = frozenset({"the", "a", "and", "shape", "left", "right", "of", "above", "below"})
DEFAULT_VOCABULARY: tuple[str, ...] = (
    "the", "and", "for", "you", "all", "new", "now", "one", "two", "top", "day", "sun", "cat",
    "dog", "car", "bus", "red", "big", "hot", "sale", "open", "shop", "cafe", "stop", "exit",
    "park", "road", "city", "home", "book", "food", "milk", "tea", "bar", "gym", "free", "wifi",
    "menu", "love", "time", "west", "east", "north", "south", "gate", "door", "room", "hall",
    "bank", "post", "taxi", "hotel", "music", "water", "fresh", "bread",
)  # fmt: skip


class DemoConfig(BaseModel, extra="forbid", frozen=True):
    """Demo data set parameters (``params:ingest.demo``); the defaults are the project's data."""

    seed: int = Field(0, ge=0)  # root of every image's random stream
    n_images: int = Field(3000, ge=1)
    image_size: int = Field(64, ge=32, le=1024)  # square images, pixels per side
    ocr_fraction: float = Field(0.15, ge=0.0, le=1.0)  # probability that an image is OCR-like
    source: str = Field("demo", min_length=1)  # source name the jsonl reader prefixes ids with
    min_objects: int = Field(2, ge=1)  # shapes per natural image, inclusive range
    max_objects: int = Field(4, ge=1)
    shapes: tuple[ShapeName, ...] = Field(("circle", "square", "triangle", "cross"), min_length=1)
    colours: dict[str, RGB] = Field(
        {"red": (220, 40, 40), "green": (30, 160, 60), "blue": (40, 80, 225),
         "yellow": (235, 195, 20), "purple": (150, 60, 190), "black": (25, 25, 25)},
        min_length=1,
    )  # fmt: skip
    # size class -> [min, max] object side as a fraction of the image side (ranges disjoint)
    sizes: dict[str, tuple[float, float]] = Field(
        {"small": (0.14, 0.19), "big": (0.27, 0.34)}, min_length=1
    )
    duplicate_prob: float = Field(0.15, ge=0.0, le=1.0)  # copy an earlier object's attributes
    relation_margin: float = Field(3.0, ge=0.0)  # pixels between centres for left/right/...
    object_gap: int = Field(2, ge=0)  # minimum free pixels between two objects' boxes
    background: RGB = (236, 234, 228)
    background_noise: int = Field(6, ge=0, le=30)  # uniform +-noise on the background luminance
    ocr_lines: tuple[int, int] = (1, 3)  # text lines per OCR image, inclusive range
    ocr_max_words: int = Field(2, ge=1, le=10)  # words per line
    ocr_font_sizes: tuple[Annotated[int, Field(ge=6)], ...] = Field((11, 13, 15), min_length=1)
    ocr_inks: tuple[RGB, ...] = Field(((20, 20, 20), (30, 40, 130), (130, 25, 25)), min_length=1)
    ocr_vocabulary: tuple[str, ...] = Field(DEFAULT_VOCABULARY, min_length=1)
    max_attempts: int = Field(200, ge=1)  # scene resamples before giving up (config too crowded)

    @model_validator(mode="after")
    def _check(self) -> DemoConfig:
        if not (1 <= self.min_objects <= self.max_objects):
            raise ValueError("need 1 <= min_objects <= max_objects")
        if not (1 <= self.ocr_lines[0] <= self.ocr_lines[1]):
            raise ValueError("need 1 <= ocr_lines[0] <= ocr_lines[1]")
        names = [*self.shapes, *self.colours, *self.sizes]
        if len(set(names)) != len(names) or _RESERVED & set(names):
            raise ValueError(f"attribute names must be distinct and not in {sorted(_RESERVED)}")
        if not all(re.fullmatch(r"[a-z]+", w) for w in [*names, *self.ocr_vocabulary]):
            raise ValueError("attribute names and vocabulary must be single lowercase words")
        self._check_colours()
        self._check_sizes()
        return self

    def _check_colours(self) -> None:
        pairs = itertools.combinations(self.colours.values(), 2)
        if any(np.linalg.norm(np.subtract(a, b)) < 80 for a, b in pairs):
            raise ValueError("colours must be clearly distinct (RGB distance >= 80)")
        palette = np.array([*self.colours.values(), *self.ocr_inks], dtype=float)
        contrast = np.abs(palette - np.array(self.background, dtype=float)).max(axis=-1)
        if contrast.min() <= self.background_noise + 40:
            raise ValueError("every colour and ink must stand out from the noisy background")

    def _check_sizes(self) -> None:
        ranges = sorted(self.sizes.values())
        if any(not (0 < lo <= hi <= 0.5) for lo, hi in ranges):
            raise ValueError("size ranges must satisfy 0 < min <= max <= 0.5")
        if any(a[1] >= b[0] for a, b in itertools.pairwise(ranges)):
            raise ValueError("size ranges must not overlap")
        if ranges[0][0] * self.image_size < 4:
            raise ValueError("the smallest objects would be under 4 pixels")
        side = ranges[-1][1] * self.image_size + self.object_gap
        if self.max_objects * side**2 > 0.6 * self.image_size**2:
            raise ValueError("max_objects big objects do not fit in the image")


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


def demo_statistics(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Summary counts of JSONL records (any source; ``relation_fraction`` is demo-specific)."""
    kinds, regions_per_kind, captions = Counter[str](), Counter[str](), set()
    rows: list[tuple[str, str, float, float]] = []  # text, text type, 1/#boxes, area fraction
    for rec in records:
        regions = rec.get("regions", [])
        kinds[rec["kind"]] += 1
        regions_per_kind[rec["kind"]] += len(regions)
        captions.add(rec.get("global_caption"))
        for r in regions:
            x1, y1, x2, y2 = r["box"]
            area = (x2 - x1) * (y2 - y1) / (rec["width"] * rec["height"])
            rows.append((r["text"], r["text_type"], 1 / len(regions), area))
    texts, n = Counter(row[0] for row in rows), max(len(rows), 1)
    words = [len(row[0].split()) for row in rows]
    top_text, top_count = texts.most_common(1)[0] if texts else ("", 0)
    return {
        "images": sum(kinds.values()),
        "images_per_kind": dict(sorted(kinds.items())),
        "regions": len(rows),
        "regions_per_text_type": dict(sorted(Counter(row[1] for row in rows).items())),
        "mean_objects_per_natural_image": regions_per_kind["natural"] / max(kinds["natural"], 1),
        "mean_lines_per_ocr_image": regions_per_kind["ocr"] / max(kinds["ocr"], 1),
        "distinct_texts": len(texts),
        "distinct_global_captions": len(captions - {None}),
        "most_common_text": top_text,
        "most_common_text_frequency": top_count / n,  # accuracy of always guessing it
        "uniform_text_chance": 1 / max(len(texts), 1),
        "most_common_text_frequency_per_type": {  # the same, per text type
            tt: Counter(r[0] for r in rows if r[1] == tt).most_common(1)[0][1] / count
            for tt, count in sorted(Counter(row[1] for row in rows).items())
        },
        "relation_fraction": sum(any(f" {r} " in row[0] for r in RELATIONS) for row in rows) / n,
        "mean_words_per_text": sum(words) / n,
        "max_words_per_text": max(words, default=0),
        "random_box_chance": sum(row[2] for row in rows) / n,  # pick one of the image's boxes
        "mean_box_area_fraction": sum(row[3] for row in rows) / n,
    }
