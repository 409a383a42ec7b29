"""COCO instances JSON (+ optional COCO captions JSON) -> region rows.

Input: ``images`` (``id``, ``file_name``, ``width``, ``height``), ``annotations`` (``id``,
``image_id``, ``category_id``, ``bbox`` = ``[x, y, width, height]`` absolute pixels,
``iscrowd``) and ``categories`` (``id``, ``name``). The file is loaded whole with
:func:`json.loads` (COCO files fit in memory; the parsed document is held while reading).

Output: one row per annotation, box converted to absolute-pixel xyxy with
:func:`~granvit_pipeline.regions.boxes.xywh_to_xyxy` (not clipped), ``text`` = category name,
``text_type`` ``category``, ``kind`` ``natural``; crowd regions are kept with ``iscrowd``.
``image_id`` = ``<source>/<COCO image id>``, ``region_id`` = ``<image_id>#<annotation id>``.
Images come out in the order of ``images``; images without annotations produce no rows.
With a captions file, ``global_caption`` is the caption (whitespace-stripped) with the smallest
annotation id of that image, else null.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from granvit_pipeline.regions.boxes import xywh_to_xyxy
from granvit_pipeline.regions.quarantine import Quarantine
from granvit_pipeline.regions.readers._cocolike import (
    CocoImage,
    group_annotations,
    index_images,
    require_list,
)
from granvit_pipeline.regions.readers._io import Rejector, load_json
from granvit_pipeline.regions.readers._rows import (
    DEFAULT_BATCH_SIZE,
    ImageMeta,
    RecordProblem,
    RegionList,
    RowBatcher,
    get_id,
    get_key,
)
from granvit_pipeline.regions.readers.config import SourceConfig
from granvit_pipeline.regions.schema import DEFAULT_SPLIT_FRACTIONS, assign_split

logger = logging.getLogger(__name__)


def read_coco(
    cfg: SourceConfig,
    quarantine: Quarantine,
    *,
    split_fractions: Mapping[str, float] = DEFAULT_SPLIT_FRACTIONS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[pa.RecordBatch]:
    """Yield :data:`REGION_SCHEMA` batches for a COCO instances file (see the module doc).

    Quarantine rules: ``bad_image``, ``duplicate_image``, ``bad_category``,
    ``duplicate_category``, ``bad_record``, ``unknown_image``, ``unknown_category``,
    ``bad_bbox``, ``duplicate_region``; captions file: ``bad_caption``.
    """
    path = cfg.annotations
    doc = load_json(path)
    reject = Rejector(quarantine, path)
    images, bad_images = index_images(require_list(doc, "images", path), reject)
    categories = _index_categories(require_list(doc, "categories", path), reject)
    groups = group_annotations(require_list(doc, "annotations", path), images, bad_images, reject)
    del doc
    captions = _load_captions(cfg.captions, images, quarantine) if cfg.captions else {}
    source = cfg.source_name
    batcher = RowBatcher(batch_size)
    for key, image in images.items():
        image_id = f"{source}/{key}"
        regions = RegionList()
        for ann in groups.get(key, []):
            region_id = f"{image_id}#{ann.key}"
            name = categories.get(str(ann.entry.get("category_id")))
            if name is None:
                reason = f"category_id {ann.entry.get('category_id')!r:.40} is not in 'categories'"
                reject(ann.record, "unknown_category", reason, payload=ann.entry, image_id=image_id)
            elif not regions.add(
                ann.record, region_id, ann.bbox, name, "category", iscrowd=ann.iscrowd
            ):
                reason = "annotation id appears twice for this image"
                reject(ann.record, "duplicate_region", reason, payload=ann.entry, image_id=image_id)
        meta = _image_meta(image, image_id, source, cfg.images, captions, split_fractions)
        yield from batcher.add(meta, regions, xywh_to_xyxy(regions.box_array()))
    yield from batcher.finish()
    logger.info(
        "coco %s: %d rows from %d images; %d images have no annotations (no rows)",
        path,
        batcher.rows,
        batcher.images,
        sum(1 for key in images if key not in groups),
    )


def _image_meta(
    image: CocoImage,
    image_id: str,
    source: str,
    images_dir: Path,
    captions: Mapping[str, str],
    split_fractions: Mapping[str, float],
) -> ImageMeta:
    return ImageMeta(
        image_id=image_id,
        source=source,
        kind="natural",
        width=image.width,
        height=image.height,
        image_path=str(images_dir / image.file_name),
        split=assign_split(image_id, split_fractions),
        global_caption=captions.get(image.key),
    )


def _index_categories(entries: list[Any], reject: Rejector) -> dict[str, str]:
    """Category name by id (as a string); invalid or repeated entries are quarantined."""
    names: dict[str, str] = {}
    for index, entry in enumerate(entries):
        record = f"category index {index}"
        try:
            if not isinstance(entry, dict):
                raise RecordProblem("bad_category", "category is not a JSON object")
            key = str(get_id(entry, "id"))
            record = f"category id={key}"
            name = get_key(entry, "name", str)
        except RecordProblem as problem:
            reject(record, "bad_category", problem.reason, payload=entry)
            continue
        if key in names:
            reject(record, "duplicate_category", "category id appears twice", payload=entry)
            continue
        names[key] = name
    return names


def _load_captions(
    path: Path, images: Mapping[str, CocoImage], quarantine: Quarantine
) -> dict[str, str]:
    """Per image id, the caption with the smallest caption id (a deterministic choice)."""
    entries = require_list(load_json(path, "captions file"), "annotations", path)
    reject = Rejector(quarantine, path)
    best: dict[str, tuple[int, str]] = {}
    for index, entry in enumerate(entries):
        record = f"caption index {index}"
        try:
            if not isinstance(entry, dict):
                raise RecordProblem("bad_caption", "caption is not a JSON object")
            caption_id = get_key(entry, "id", int)
            record = f"caption id={caption_id}"
            image_key = str(get_id(entry, "image_id"))
            text = get_key(entry, "caption", str).strip()
        except RecordProblem as problem:
            reject(record, "bad_caption", problem.reason, payload=entry)
            continue
        if image_key not in best or caption_id < best[image_key][0]:
            best[image_key] = (caption_id, text)
    unused = sum(1 for key in best if key not in images)
    if unused:
        logger.info(
            "captions %s: %d images with captions are not in the instances file", path, unused
        )
    return {key: text for key, (_, text) in best.items()}
