"""Vectorised row rules and paper filters of the ``validate`` stage (one chunk at a time).

Every rule yields a boolean numpy mask over the rows of a chunk (``True`` = the row breaks it).
Masks are packed into one ``uint32`` per row, bit ``k`` standing for ``RULES[k]``; a rejected
row's rule is its lowest set bit, i.e. the first broken rule in :data:`RULES` order:
structural errors, then paper filters, then image checks. Filters are only evaluated on rows
that pass every structural rule, so a broken box is reported as broken, not also as "too
small". ``positive_image_size`` precedes ``box_inside_image``: no box fits a non-positive image.

Messages are built with ``pyarrow.compute`` string kernels over the rejected rows only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from granvit_pipeline.regions.image_checks import IMAGE_RULES
from granvit_pipeline.regions.schema import KINDS, REGION_SCHEMA, SPLITS, TEXT_TYPES
from granvit_pipeline.regions.validation.config import ValidationConfig

STRUCTURAL_RULES: tuple[str, ...] = (
    "not_null",
    "finite_box",
    "box_order",
    "positive_image_size",  # before box_inside_image: no box fits in a non-positive image
    "box_inside_image",
    "text_not_empty",
    "text_max_length",
    "kind_valid",
    "text_type_valid",
    "split_valid",
    "region_id_unique",
)
FILTER_RULES: tuple[str, ...] = (
    "image_short_side",
    "image_aspect_ratio",
    "box_aspect_ratio",
    "box_area",
    "min_boxes_per_image",
)
RULES: tuple[str, ...] = STRUCTURAL_RULES + FILTER_RULES + IMAGE_RULES
"""All rule names in priority order (a rejected row carries the first one it broke)."""

RULE_BIT: Mapping[str, int] = {rule: i for i, rule in enumerate(RULES)}
NON_NULLABLE: tuple[str, ...] = tuple(f.name for f in REGION_SCHEMA if not f.nullable)
_SETS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "kind_valid": ("kind", KINDS),
    "text_type_valid": ("text_type", TEXT_TYPES),
    "split_valid": ("split", SPLITS),
}
ID_REASONS: tuple[str, ...] = (
    "",
    "occurs more than once in its image (all occurrences rejected)",
    "does not start with '<image_id>#' (global uniqueness rests on that prefix)",
    "belongs to an image whose rows reappear after they ended (rows of an image must be "
    "contiguous), so its uniqueness cannot be proven",
)


def _f64(batch: pa.RecordBatch, name: str) -> np.ndarray:
    """Column as float64 numpy, nulls as NaN."""
    return pc.cast(batch.column(name), pa.float64()).to_numpy(zero_copy_only=False)


def _mask(arr: pa.Array) -> np.ndarray:
    """Boolean arrow array -> numpy bool, null -> False."""
    return pc.fill_null(arr, False).to_numpy(zero_copy_only=False)


def box_geometry(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    """Coordinates, image size and derived box/image quantities as float64 numpy arrays."""
    g = {name: _f64(batch, name) for name in ("x1", "y1", "x2", "y2", "width", "height")}
    g["bw"], g["bh"] = g["x2"] - g["x1"], g["y2"] - g["y1"]
    return g


def structural_masks(
    batch: pa.RecordBatch, g: Mapping[str, np.ndarray], cfg: ValidationConfig
) -> dict[str, np.ndarray]:
    """Masks of the structural rules except ``region_id_unique`` (see :mod:`.ids`)."""
    n = batch.num_rows
    not_null = np.zeros(n, dtype=bool)
    for name in NON_NULLABLE:
        col = batch.column(name)
        if col.null_count:
            not_null |= col.is_null().to_numpy(zero_copy_only=False)
    box = np.stack([g["x1"], g["y1"], g["x2"], g["y2"]])
    has_box = np.logical_and.reduce(
        [_mask(batch.column(c).is_valid()) for c in ("x1", "y1", "x2", "y2")]
    )
    finite = np.isfinite(box).all(axis=0)
    ordered = (g["x2"] > g["x1"]) & (g["y2"] > g["y1"])
    has_size = ~np.isnan(g["width"]) & ~np.isnan(g["height"])
    inside = (g["x1"] >= 0) & (g["y1"] >= 0) & (g["x2"] <= g["width"]) & (g["y2"] <= g["height"])
    text = batch.column("text")
    masks = {
        "not_null": not_null,
        "finite_box": has_box & ~finite,
        "box_order": has_box & finite & ~ordered,
        "box_inside_image": has_box & finite & has_size & ~inside,
        "positive_image_size": has_size & ((g["width"] <= 0) | (g["height"] <= 0)),
        "text_not_empty": _mask(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0)),
        "text_max_length": _mask(pc.greater(pc.utf8_length(text), cfg.max_text_chars)),
    }
    for rule, (column, allowed) in _SETS.items():
        col = batch.column(column)
        masks[rule] = col.is_valid().to_numpy(zero_copy_only=False) & ~_mask(
            pc.is_in(col, value_set=pa.array(allowed, pa.string()))
        )
    return masks


def _outside(ratio: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (ratio < lo) | (ratio > hi)


def filter_masks(
    g: Mapping[str, np.ndarray], structural_ok: np.ndarray, cfg: ValidationConfig
) -> dict[str, np.ndarray]:
    """Masks of the paper filters (all but ``min_boxes_per_image``) on structurally valid rows.

    Thresholds: short side ``> min_image_short_side`` and area ``> min_box_area`` (strict);
    aspect ratios ``width / height`` within ``[min_aspect_ratio, max_aspect_ratio]`` (inclusive).
    """
    if not cfg.filters_enabled:
        return {rule: np.zeros(len(structural_ok), dtype=bool) for rule in FILTER_RULES[:-1]}
    lo, hi = cfg.min_aspect_ratio, cfg.max_aspect_ratio
    with np.errstate(divide="ignore", invalid="ignore"):
        image_ratio, box_ratio = g["width"] / g["height"], g["bw"] / g["bh"]
    return {
        "image_short_side": structural_ok
        & (np.minimum(g["width"], g["height"]) <= cfg.min_image_short_side),
        "image_aspect_ratio": structural_ok & _outside(image_ratio, lo, hi),
        "box_aspect_ratio": structural_ok & _outside(box_ratio, lo, hi),
        "box_area": structural_ok & (g["bw"] * g["bh"] <= cfg.min_box_area),
    }


def pack_bits(masks: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Pack rule masks into one ``uint32`` per row (bit ``RULE_BIT[rule]``)."""
    bits = np.zeros(n, dtype=np.uint32)
    for rule, mask in masks.items():
        bits |= mask.astype(np.uint32) << np.uint32(RULE_BIT[rule])
    return bits


def first_rule_index(bits: np.ndarray) -> np.ndarray:
    """Index into :data:`RULES` of the lowest set bit of each (non-zero) element."""
    low = bits & (~bits + np.uint32(1))
    return np.log2(low.astype(np.float64)).astype(np.int64)
