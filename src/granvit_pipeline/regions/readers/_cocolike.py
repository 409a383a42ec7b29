"""The COCO JSON structure shared by the ``coco`` and ``refcoco`` readers.

Both formats have an ``images`` list (``id``, ``file_name``, ``width``, ``height``) and an
``annotations`` list (``id``, ``image_id``, ``bbox`` as ``[x, y, width, height]`` absolute
pixels, ``iscrowd``). Ids are compared as strings, so ``9`` and ``"9"`` name the same image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from granvit_pipeline.regions.quarantine import DataError
from granvit_pipeline.regions.readers._io import Rejector
from granvit_pipeline.regions.readers._rows import (
    RecordProblem,
    check_box,
    get_id,
    get_key,
    get_size,
)


def require_list(doc: Any, key: str, path: Path) -> list[Any]:
    """``doc[key]`` if ``doc`` is a JSON object holding a list there, else a fatal DataError."""
    if not isinstance(doc, dict):
        raise DataError(
            str(path),
            "top level",
            "bad_structure",
            f"expected a JSON object with key {key!r}, got {type(doc).__name__}",
        )
    value = doc.get(key)
    if not isinstance(value, list):
        got = "nothing" if value is None else type(value).__name__
        raise DataError(
            str(path), f"key {key!r}", "bad_structure", f"expected a list under {key!r}, got {got}"
        )
    return value


@dataclass(frozen=True)
class CocoImage:
    """One valid entry of ``images`` (for refcoco: one image/expression pair)."""

    key: str
    file_name: str
    width: int
    height: int
    entry: Mapping[str, Any]


@dataclass(frozen=True)
class CocoAnnotation:
    """One annotation that passed the structural checks; ``bbox`` is still COCO xywh."""

    record: str
    key: str
    bbox: list[float]
    iscrowd: bool
    entry: Mapping[str, Any]


def index_images(
    entries: list[Any],
    reject: Rejector,
    check: Callable[[Mapping[str, Any]], None] | None = None,
) -> tuple[dict[str, CocoImage], set[str]]:
    """Valid image entries by id (in file order) and the ids of the invalid ones.

    Invalid entries are quarantined as ``bad_image``; a repeated id as ``duplicate_image`` (the
    first entry wins). ``check`` may raise :class:`RecordProblem` for format-specific keys.
    """
    images: dict[str, CocoImage] = {}
    bad: set[str] = set()
    for index, entry in enumerate(entries):
        record, key = f"image index {index}", None
        try:
            if not isinstance(entry, dict):
                raise RecordProblem("bad_image", "image entry is not a JSON object")
            key = str(get_id(entry, "id"))
            record = f"image id={key}"
            image = CocoImage(
                key=key,
                file_name=get_key(entry, "file_name", str),
                width=get_size(entry, "width"),
                height=get_size(entry, "height"),
                entry=entry,
            )
            if check is not None:
                check(entry)
        except RecordProblem as problem:
            reject(record, "bad_image", problem.reason, payload=entry)
            if key is not None:
                bad.add(key)
            continue
        if key in images:
            reject(record, "duplicate_image", "image id appears twice in 'images'", payload=entry)
            continue
        images[key] = image
    return images, bad


def group_annotations(
    entries: list[Any], images: Mapping[str, CocoImage], bad_images: set[str], reject: Rejector
) -> dict[str, list[CocoAnnotation]]:
    """Annotations grouped by image id, in file order; unmappable ones are quarantined.

    Rules: ``bad_record`` (not an object, missing/ill-typed ``id``/``image_id``/``iscrowd``),
    ``unknown_image`` (no such entry in ``images``), ``bad_image`` (the image entry was
    invalid), ``bad_bbox`` (``bbox`` missing or not 4 numbers).
    """
    groups: dict[str, list[CocoAnnotation]] = {}
    for index, entry in enumerate(entries):
        record = f"annotation index {index}"
        try:
            if not isinstance(entry, dict):
                raise RecordProblem("bad_record", "annotation is not a JSON object")
            key = str(get_id(entry, "id"))
            record = f"annotation id={key}"
            image_key = str(get_id(entry, "image_id"))
            if image_key not in images:
                rule = "bad_image" if image_key in bad_images else "unknown_image"
                raise RecordProblem(rule, f"image_id {image_key} has no valid entry in 'images'")
            bbox = check_box(entry.get("bbox"))
            iscrowd = entry.get("iscrowd", 0)
            if iscrowd not in (0, 1) or not isinstance(iscrowd, int | float):
                raise RecordProblem("bad_record", f"'iscrowd' must be 0 or 1, got {iscrowd!r:.40}")
        except RecordProblem as problem:
            reject(record, problem.rule, problem.reason, payload=entry)
            continue
        annotation = CocoAnnotation(record, key, list(bbox), bool(iscrowd), entry)
        groups.setdefault(image_key, []).append(annotation)
    return groups
