"""Parameters of the built-in demo data set (``params:ingest.demo``), validated once.

The defaults are the project's demo data; :mod:`.scenes` draws it. The validator rejects
configurations that would make the data ambiguous (attribute names that collide with the
expression grammar, colours too alike, overlapping size classes) or impossible to draw.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

ShapeName = Literal["circle", "square", "triangle", "diamond", "cross"]
Channel = Annotated[int, Field(ge=0, le=255)]
RGB = tuple[Channel, Channel, Channel]

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
