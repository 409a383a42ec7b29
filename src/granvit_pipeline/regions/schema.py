"""The region table: one row per region (DESIGN.md section 4), as a pyarrow schema.

Boxes follow the convention in :mod:`granvit_pipeline.regions.boxes` (absolute pixels, xyxy).
Every reader yields ``pyarrow.RecordBatch`` objects with exactly :data:`REGION_SCHEMA`;
validation, sharding and training read nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import pyarrow as pa

Kind = Literal["natural", "ocr"]
TextType = Literal["caption", "refexp", "category", "ocr"]
Split = Literal["train", "val", "test"]

KINDS: tuple[str, ...] = ("natural", "ocr")
TEXT_TYPES: tuple[str, ...] = ("caption", "refexp", "category", "ocr")
SPLITS: tuple[str, ...] = ("train", "val", "test")

REGION_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),  # "<source>/<id in source>", global
        pa.field("source", pa.string(), nullable=False),  # dataset name, e.g. "coco128", "demo"
        pa.field("kind", pa.string(), nullable=False),  # natural | ocr
        pa.field("width", pa.int32(), nullable=False),  # image width, pixels
        pa.field("height", pa.int32(), nullable=False),  # image height, pixels
        pa.field("region_id", pa.string(), nullable=False),  # "<image_id>#<id>", global
        pa.field("x1", pa.float32(), nullable=False),  # absolute pixels, see regions/boxes.py
        pa.field("y1", pa.float32(), nullable=False),
        pa.field("x2", pa.float32(), nullable=False),
        pa.field("y2", pa.float32(), nullable=False),
        pa.field("text", pa.string(), nullable=False),  # caption / refexp / category / OCR text
        pa.field("text_type", pa.string(), nullable=False),  # caption|refexp|category|ocr
        pa.field("global_caption", pa.string(), nullable=True),  # image level; null for OCR
        pa.field("split", pa.string(), nullable=False),  # train | val | test, by image_id hash
        pa.field("image_path", pa.string(), nullable=False),  # source image file (ingest)
        pa.field("iscrowd", pa.bool_(), nullable=False),  # COCO crowd region: kept, flagged
        # False for boxes whose text must never be a generation target (ICDAR "###").
        pa.field("text_is_target", pa.bool_(), nullable=False),
    ]
)

COLUMNS: tuple[str, ...] = tuple(REGION_SCHEMA.names)

DEFAULT_SPLIT_FRACTIONS: Mapping[str, float] = {"train": 0.9, "val": 0.05, "test": 0.05}


def assign_split(image_id: str, fractions: Mapping[str, float] = DEFAULT_SPLIT_FRACTIONS) -> str:
    """Deterministic split of an image from the hash of its id (no image crosses splits).

    The first 8 bytes of ``sha1(image_id)`` give a uniform number in [0, 1); the cumulative
    ``fractions`` (in ``SPLITS`` order) cut it. Stable across machines and Python versions.
    """
    total = sum(fractions.get(s, 0.0) for s in SPLITS)
    if total <= 0:
        raise ValueError(f"split fractions must sum to a positive number, got {dict(fractions)}")
    u = int.from_bytes(hashlib.sha1(image_id.encode("utf-8")).digest()[:8], "big") / 2**64
    edge = 0.0
    for split in SPLITS:
        edge += fractions.get(split, 0.0) / total
        if u < edge:
            return split
    return SPLITS[-1]


def region_batch(
    rows: Sequence[Mapping[str, object]] | Iterable[Mapping[str, object]],
) -> pa.RecordBatch:
    """Build a :data:`REGION_SCHEMA` record batch from row dicts (missing nullable keys -> null)."""
    rows = list(rows)
    columns = {name: [row.get(name) for row in rows] for name in COLUMNS}
    return pa.RecordBatch.from_pydict(columns, schema=REGION_SCHEMA)


def empty_region_table() -> pa.Table:
    """A zero-row table with the region schema."""
    return REGION_SCHEMA.empty_table()
