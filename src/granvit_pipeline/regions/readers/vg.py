"""Visual Genome ``region_descriptions.json`` -> region rows.

Input: a JSON list of ``{"id": <image id>, "regions": [{"region_id", "x", "y", "width",
"height", "phrase", ...}]}``, loaded whole with :func:`json.loads`. The box is
``x, y, width, height`` in absolute pixels. The image file is ``<images>/<id>.jpg`` (point
``images`` at a directory holding all images, e.g. the union of ``VG_100K`` and ``VG_100K_2``).
The format has no image size, so it is read from the image header (no decode); an image that
is missing or unreadable sends its regions to the quarantine (``image_missing`` /
``image_unreadable``). The region's own ``image_id`` key is not used: the enclosing entry's
``id`` is.

Output: one row per region, ``text`` = phrase, ``text_type`` ``caption``, ``kind``
``natural``, ``global_caption`` null, box converted with
:func:`~granvit_pipeline.regions.boxes.xywh_to_xyxy` (not clipped). ``image_id`` =
``<source>/<id>``, ``region_id`` = ``<image_id>#<region_id>``; images in file order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from granvit_pipeline.regions.boxes import xywh_to_xyxy
from granvit_pipeline.regions.quarantine import DataError, Quarantine
from granvit_pipeline.regions.readers._io import (
    ImageProblem,
    Rejector,
    image_file_meta,
    load_json,
)
from granvit_pipeline.regions.readers._rows import (
    DEFAULT_BATCH_SIZE,
    RecordProblem,
    RegionList,
    RowBatcher,
    get_id,
    get_key,
    is_number,
)
from granvit_pipeline.regions.readers.config import SourceConfig
from granvit_pipeline.regions.schema import DEFAULT_SPLIT_FRACTIONS

logger = logging.getLogger(__name__)

_BOX_KEYS = ("x", "y", "width", "height")


def read_vg(
    cfg: SourceConfig,
    quarantine: Quarantine,
    *,
    split_fractions: Mapping[str, float] = DEFAULT_SPLIT_FRACTIONS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[pa.RecordBatch]:
    """Yield :data:`REGION_SCHEMA` batches for VG region descriptions (see the module doc).

    Quarantine rules: ``bad_record`` (image entry or region malformed), ``duplicate_image``,
    ``bad_bbox``, ``duplicate_region``, ``image_missing``, ``image_unreadable``.
    """
    path = cfg.annotations
    doc = _load_image_list(path)
    reject = Rejector(quarantine, path)
    source = cfg.source_name
    batcher = RowBatcher(batch_size)
    seen: set[str] = set()
    for index, entry in enumerate(doc):
        key = _image_key(index, entry, seen, reject)
        if key is None:
            continue
        image_id = f"{source}/{key}"
        regions = _collect_regions(entry["regions"], key, image_id, reject)
        if not regions:
            continue
        image_path = cfg.images / f"{key}.jpg"
        try:
            meta = image_file_meta(image_id, source, "natural", image_path, split_fractions)
        except ImageProblem as problem:
            reject.regions(regions, problem.rule, problem.reason, image_id=image_id)
            continue
        yield from batcher.add(meta, regions, xywh_to_xyxy(regions.box_array()))
    yield from batcher.finish()
    logger.info(
        "vg %s: %d rows from %d images (%d image entries in the file)",
        path,
        batcher.rows,
        batcher.images,
        len(doc),
    )


def _load_image_list(path: Path) -> list[Any]:
    """The whole file's top-level list; anything else is a fatal ``bad_structure``."""
    doc = load_json(path)
    if not isinstance(doc, list):
        raise DataError(
            str(path),
            "top level",
            "bad_structure",
            f"expected a JSON list of images, got {type(doc).__name__}",
        )
    return doc


def _image_key(index: int, entry: Any, seen: set[str], reject: Rejector) -> str | None:
    """The image id of a valid, first-seen entry; otherwise quarantine it and return None."""
    record = f"image index {index}"
    try:
        if not isinstance(entry, dict):
            raise RecordProblem("bad_record", "image entry is not a JSON object")
        key = str(get_id(entry, "id"))
        record = f"image id={key}"
        get_key(entry, "regions", list)
    except RecordProblem as problem:
        reject(record, problem.rule, problem.reason, payload=entry)
        return None
    if key in seen:
        reject(record, "duplicate_image", "image id appears twice in the file", payload=entry)
        return None
    seen.add(key)
    return key


def _collect_regions(entries: list[Any], key: str, image_id: str, reject: Rejector) -> RegionList:
    """The mappable regions of one image; the others are quarantined."""
    regions = RegionList()
    for index, entry in enumerate(entries):
        record = f"image id={key} region index {index}"
        try:
            if not isinstance(entry, dict):
                raise RecordProblem("bad_record", "region is not a JSON object")
            region_key = str(get_id(entry, "region_id"))
            record = f"image id={key} region id={region_key}"
            box = [entry.get(name) for name in _BOX_KEYS]
            if not all(map(is_number, box)):
                raise RecordProblem(
                    "bad_bbox", f"x/y/width/height must be numbers, got {box!r:.80}"
                )
            phrase = get_key(entry, "phrase", str)
        except RecordProblem as problem:
            reject(record, problem.rule, problem.reason, payload=entry, image_id=image_id)
            continue
        region_id = f"{image_id}#{region_key}"
        if not regions.add(record, region_id, box, phrase, "caption", payload=entry):
            reason = "region id appears twice for this image"
            reject(record, "duplicate_region", reason, payload=entry, image_id=image_id)
    return regions
