"""Quarantine messages of the ``validate`` stage, built with vectorised string kernels.

A message reads ``"<record>: broke <rule> [<requirement>], ... | <values>"``: every rule the
row broke in priority order with what it requires, then the values that broke them (e.g.
``box=(0, 0, 50, 200) box_area=10000``). The rule/requirement part depends only on the set of
broken rules, so it is formatted once per distinct set; each value is formatted only for the
rows whose broken rules need it (number-to-text casts dominate the cost).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from granvit_pipeline.regions.image_checks import IMAGE_RULES
from granvit_pipeline.regions.validation.config import ValidationConfig
from granvit_pipeline.regions.validation.rules import _SETS, ID_REASONS, NON_NULLABLE, RULES

Cols = Mapping[str, pa.Array]
_NULL = pa.scalar(None, pa.string())


def _s(value: pa.Array) -> pa.Array:
    """Values as text (floats rounded to 2 decimals), null -> ``"null"``."""
    if pa.types.is_floating(value.type):
        value = pc.round(pc.cast(value, pa.float64()), 2)
    return pc.fill_null(pc.cast(value, pa.string()), "null")


def _join(*parts: object) -> pa.Array:
    """Concatenate literal strings and string arrays element-wise."""
    return pc.binary_join_element_wise(*parts, "")


def _f(c: Cols, name: str) -> pa.Array:
    return pc.cast(c[name], pa.float64())


def _null_columns(c: Cols) -> pa.Array:
    names = [pc.if_else(c[n].is_null(), n, _NULL) for n in NON_NULLABLE]
    return _join("null=[", pc.binary_join_element_wise(*names, ", ", null_handling="skip"), "]")


def _box(c: Cols) -> pa.Array:
    return _join("box=(", _s(c["x1"]), ", ", _s(c["y1"]), ", ", _s(c["x2"]), ", ", _s(c["y2"]), ")")


def _ratio(c: Cols, a: str, b: str) -> pa.Array:
    return pc.divide(_f(c, a), _f(c, b))


def _box_wh(c: Cols) -> tuple[pa.Array, pa.Array]:
    return pc.subtract(_f(c, "x2"), _f(c, "x1")), pc.subtract(_f(c, "y2"), _f(c, "y1"))


def _box_ratio(c: Cols) -> pa.Array:
    w, h = _box_wh(c)
    return _join("box_w/h=", _s(pc.divide(w, h)))


def _box_area(c: Cols) -> pa.Array:
    w, h = _box_wh(c)
    return _join("box_area=", _s(pc.multiply(w, h)))


# value name -> (rules whose message shows it, formatter over the rows that need it)
_VALUES: dict[str, tuple[tuple[str, ...], Callable[[Cols], pa.Array]]] = {
    "null": (("not_null",), _null_columns),
    "box": (("finite_box", "box_order", "box_inside_image"), _box),
    "image": (
        ("box_inside_image", "positive_image_size", "image_short_side", "image_aspect_ratio"),
        lambda c: _join("image=", _s(c["width"]), "x", _s(c["height"])),
    ),
    "text": (
        ("text_not_empty", "text_max_length"),
        lambda c: _join("text_chars=", _s(pc.utf8_length(c["text"]))),
    ),
    **{
        column: ((rule,), lambda c, column=column: _join(f"{column}='", _s(c[column]), "'"))
        for rule, (column, _) in _SETS.items()
    },
    "region_id": (
        ("region_id_unique",),
        lambda c: _join("region_id='", _s(c["region_id"]), "' ", c["_id_reason"]),
    ),
    "image_w/h": (
        ("image_aspect_ratio",),
        lambda c: _join("image_w/h=", _s(_ratio(c, "width", "height"))),
    ),
    "box_w/h": (("box_aspect_ratio",), _box_ratio),
    "box_area": (("box_area",), _box_area),
    "boxes_left": (
        ("min_boxes_per_image",),
        lambda c: _join("image '", _s(c["image_id"]), "' keeps ", _s(c["_boxes_left"]), " box(es)"),
    ),
    **{rule: ((rule,), lambda c, rule=rule: c[rule]) for rule in IMAGE_RULES},
}


def requirements(cfg: ValidationConfig) -> dict[str, str]:
    """What each rule requires, in words, with the configured thresholds."""
    ar = f"[{cfg.min_aspect_ratio:.4g}, {cfg.max_aspect_ratio:.4g}]"
    return {
        "not_null": "non-nullable columns set",
        "finite_box": "finite box coordinates",
        "box_order": "x2 > x1 and y2 > y1",
        "box_inside_image": "0 <= x1, 0 <= y1, x2 <= width, y2 <= height",
        "positive_image_size": "width > 0 and height > 0",
        "text_not_empty": "text not blank",
        "text_max_length": f"text <= {cfg.max_text_chars} chars",
        **{rule: f"{col} in {list(allowed)}" for rule, (col, allowed) in _SETS.items()},
        "region_id_unique": "unique region_id '<image_id>#<id>'",
        "image_short_side": f"min(width, height) > {cfg.min_image_short_side:g}",
        "image_aspect_ratio": f"width/height in {ar}",
        "box_aspect_ratio": f"box width/height in {ar}",
        "box_area": f"box area > {cfg.min_box_area:g}",
        "min_boxes_per_image": f">= {cfg.min_boxes_per_image} valid box(es) per image",
        "image_missing": "image file exists",
        "image_undecodable": "image decodes fully",
        "image_size_mismatch": "image size == (width, height)",
        "image_too_large": f"width * height <= {cfg.max_image_pixels}",
    }


def _rule_texts(bits: np.ndarray, cfg: ValidationConfig) -> pa.Array:
    """``"broke a [req], b [req]"`` per row, formatted once per distinct rule set."""
    present = np.bincount(bits)  # bits < 2**len(RULES): a dense lookup beats np.unique
    patterns = np.flatnonzero(present)
    lookup = np.zeros(len(present), dtype=np.int64)
    lookup[patterns] = np.arange(len(patterns))
    inverse = lookup[bits]
    req = requirements(cfg)
    texts = [
        "broke " + ", ".join(f"{r} [{req[r]}]" for k, r in enumerate(RULES) if p >> k & 1)
        for p in patterns.tolist()
    ]
    return pa.array(texts, pa.string()).take(pa.array(inverse))


def _rule_mask(rules: tuple[str, ...]) -> np.uint32:
    return np.uint32(sum(1 << RULES.index(r) for r in rules))


class _Taken(Mapping[str, pa.Array]):
    """Columns restricted to the rows ``sel``, taken lazily (only those a formatter reads)."""

    def __init__(self, cols: Mapping[str, pa.Array], sel: pa.Array) -> None:
        self._cols, self._sel = cols, sel
        self._cache: dict[str, pa.Array] = {}

    def __getitem__(self, key: str) -> pa.Array:
        if key not in self._cache:
            self._cache[key] = self._cols[key].take(self._sel)
        return self._cache[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols)

    def __len__(self) -> int:
        return len(self._cols)


def build_messages(
    sub: pa.RecordBatch,
    bits: np.ndarray,
    records: pa.Array,
    extra: Mapping[str, pa.Array],
    cfg: ValidationConfig,
) -> pa.Array:
    """One message per rejected row of ``sub`` (``bits`` as in :mod:`.rules`, non-zero).

    ``extra`` holds per-row helper columns: ``_id_reason`` (text), ``_boxes_left`` (count) and
    one message column per failed image rule (the image checker's text).
    """
    cols: dict[str, pa.Array] = {name: sub.column(name) for name in sub.schema.names}
    cols.update(extra)
    none = pa.nulls(len(bits), pa.string())
    values = []
    for rules, formatter in _VALUES.values():
        need = (bits & _rule_mask(rules)) != 0
        if not need.any():
            continue
        taken = _Taken(cols, pa.array(np.flatnonzero(need)))
        values.append(pc.replace_with_mask(none, pa.array(need), formatter(taken)))
    joined = pc.binary_join_element_wise(*values, " ", null_handling="skip")
    return _join(records, ": ", _rule_texts(bits, cfg), " | ", joined)


def id_reason_text(codes: np.ndarray) -> pa.Array:
    """Reason codes of :mod:`.ids` -> their texts."""
    return pa.array(np.asarray(ID_REASONS, dtype=object)[codes], pa.string())
