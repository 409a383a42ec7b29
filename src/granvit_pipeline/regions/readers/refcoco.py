"""RefCOCO/+/g in the MDETR annotation format (e.g. ``final_refcoco_train.json``) -> rows.

Input: a COCO-style JSON whose ``images`` entries are (image, referring expression) pairs
(``id``, ``file_name``, ``width``, ``height``, ``caption`` = the expression, optionally
``original_id`` = the COCO image id) and whose ``annotations`` (``id``, ``image_id`` = the pair
id, ``bbox`` = ``[x, y, width, height]`` absolute pixels, ``iscrowd``) are the referred boxes.
Loaded whole with :func:`json.loads`.

Output: one row per annotation, ``text`` = the pair's expression, ``text_type`` ``refexp``,
``kind`` ``natural``, box converted with :func:`~granvit_pipeline.regions.boxes.xywh_to_xyxy`
(not clipped). Several pairs share one physical image, so ``image_id`` is
``<source>/<original_id>`` (or ``<source>/<file_name stem>`` without ``original_id``): the
split is per physical image and its rows (all its pairs) are contiguous, in order of first
appearance. ``region_id`` = ``<image_id>#<annotation id>``. The first pair of a physical image
gives its file name and size; a later pair that disagrees has its annotations quarantined
(``inconsistent_image``).
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
    CocoAnnotation,
    CocoImage,
    group_annotations,
    index_images,
    require_list,
)
from granvit_pipeline.regions.readers._io import Rejector, load_json
from granvit_pipeline.regions.readers._rows import (
    DEFAULT_BATCH_SIZE,
    ImageMeta,
    RegionList,
    RowBatcher,
    get_key,
)
from granvit_pipeline.regions.readers.config import SourceConfig
from granvit_pipeline.regions.schema import DEFAULT_SPLIT_FRACTIONS, assign_split

logger = logging.getLogger(__name__)


def read_refcoco(
    cfg: SourceConfig,
    quarantine: Quarantine,
    *,
    split_fractions: Mapping[str, float] = DEFAULT_SPLIT_FRACTIONS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[pa.RecordBatch]:
    """Yield :data:`REGION_SCHEMA` batches for an MDETR-style RefCOCO file (see module doc).

    Quarantine rules: ``bad_image`` (pair entry invalid, e.g. no ``caption``),
    ``duplicate_image``, ``bad_record``, ``unknown_image``, ``bad_bbox``,
    ``inconsistent_image``, ``duplicate_region``.
    """
    path = cfg.annotations
    doc = load_json(path)
    reject = Rejector(quarantine, path)
    pairs, bad_pairs = index_images(require_list(doc, "images", path), reject, _check_pair)
    groups = group_annotations(require_list(doc, "annotations", path), pairs, bad_pairs, reject)
    del doc
    source = cfg.source_name
    batcher = RowBatcher(batch_size)
    for physical_key, image_pairs in _physical_images(pairs).items():
        image_id = f"{source}/{physical_key}"
        first = image_pairs[0]
        regions = _physical_regions(image_pairs, groups, image_id, reject)
        meta = ImageMeta(
            image_id=image_id,
            source=source,
            kind="natural",
            width=first.width,
            height=first.height,
            image_path=str(cfg.images / first.file_name),
            split=assign_split(image_id, split_fractions),
        )
        yield from batcher.add(meta, regions, xywh_to_xyxy(regions.box_array()))
    yield from batcher.finish()
    logger.info(
        "refcoco %s: %d rows from %d physical images; %d expression pairs have no annotations",
        path,
        batcher.rows,
        batcher.images,
        sum(1 for key in pairs if key not in groups),
    )


def _check_pair(entry: Mapping[str, Any]) -> None:
    """Raise ``RecordProblem`` unless the pair has a string ``caption`` (and a usable id)."""
    get_key(entry, "caption", str)
    if "original_id" in entry:
        get_key(entry, "original_id", (int, str))


def _physical_key(pair: CocoImage) -> str:
    if "original_id" in pair.entry:
        return str(pair.entry["original_id"])
    return Path(pair.file_name).stem


def _physical_images(pairs: Mapping[str, CocoImage]) -> dict[str, list[CocoImage]]:
    """Pairs grouped by physical image, both in order of first appearance."""
    grouped: dict[str, list[CocoImage]] = {}
    for pair in pairs.values():
        grouped.setdefault(_physical_key(pair), []).append(pair)
    return grouped


def _same_image(first: CocoImage, other: CocoImage) -> bool:
    return (first.file_name, first.width, first.height) == (
        other.file_name,
        other.width,
        other.height,
    )


def _physical_regions(
    image_pairs: list[CocoImage],
    groups: Mapping[str, list[CocoAnnotation]],
    image_id: str,
    reject: Rejector,
) -> RegionList:
    """The regions of all pairs of one physical image (the first pair fixes file and size)."""
    first, regions = image_pairs[0], RegionList()
    for pair in image_pairs:
        annotations = groups.get(pair.key, [])
        if _same_image(first, pair):
            _add_regions(regions, annotations, pair, image_id, reject)
            continue
        reason = (
            f"pair id={pair.key} disagrees with pair id={first.key} on the file name or size "
            f"of physical image {image_id}"
        )
        for ann in annotations:
            reject(ann.record, "inconsistent_image", reason, payload=ann.entry, image_id=image_id)
    return regions


def _add_regions(
    regions: RegionList,
    annotations: list[CocoAnnotation],
    pair: CocoImage,
    image_id: str,
    reject: Rejector,
) -> None:
    caption = pair.entry["caption"]
    for ann in annotations:
        region_id = f"{image_id}#{ann.key}"
        if not regions.add(ann.record, region_id, ann.bbox, caption, "refexp", iscrowd=ann.iscrowd):
            reason = f"annotation id {ann.key} appears twice for physical image {image_id}"
            reject(ann.record, "duplicate_region", reason, payload=ann.entry, image_id=image_id)
