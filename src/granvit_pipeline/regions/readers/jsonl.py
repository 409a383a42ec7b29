"""Our own JSONL region format (``regions/FORMAT_JSONL.md``) -> region rows.

The file is streamed line by line (one JSON object = one image per line); boxes are already
absolute-pixel xyxy and pass through unchanged. :func:`map_jsonl_records` holds the mapping
from parsed records, so in-memory records (the demo pipeline) and files share one code path.

Required image keys: ``image_id`` (str), ``image`` (str, relative to ``images`` or absolute),
``width``/``height`` (int), ``kind`` (str), ``regions`` (list); optional ``global_caption``
(str or null). Required region keys: ``id`` (str), ``box`` (4 numbers), ``text`` (str),
``text_type`` (str); optional ``text_is_target`` (bool, default true). Unknown ``kind`` /
``text_type`` values pass through for validation to reject; unknown keys are ignored.
An invalid image-level key quarantines the whole record (``bad_record``); an invalid region
quarantines that region only (``bad_record`` / ``bad_bbox`` / ``duplicate_region``); an
image id seen before quarantines the later record (``duplicate_image``; the seen ids are
kept as 8-byte digests, <= 16 bytes per image: :mod:`._seen`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from granvit_pipeline.regions.quarantine import Quarantine
from granvit_pipeline.regions.readers._io import Rejector, iter_lines
from granvit_pipeline.regions.readers._rows import (
    DEFAULT_BATCH_SIZE,
    ImageMeta,
    RecordProblem,
    RegionList,
    RowBatcher,
    check_box,
    get_key,
    get_size,
)
from granvit_pipeline.regions.readers._seen import SeenIds
from granvit_pipeline.regions.readers.config import SourceConfig
from granvit_pipeline.regions.schema import DEFAULT_SPLIT_FRACTIONS, assign_split

logger = logging.getLogger(__name__)


def read_jsonl(
    cfg: SourceConfig,
    quarantine: Quarantine,
    *,
    split_fractions: Mapping[str, float] = DEFAULT_SPLIT_FRACTIONS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[pa.RecordBatch]:
    """Yield :data:`REGION_SCHEMA` batches for a JSONL file (see the module doc).

    Per-line rules: ``not_utf8``, ``bad_json`` (with line and column; not fatal), then those
    of :func:`map_jsonl_records`.
    """
    path = cfg.annotations
    yield from map_jsonl_records(
        _parse_lines(path, Rejector(quarantine, path)),
        source=cfg.source_name,
        images_dir=cfg.images,
        file_label=str(path),
        quarantine=quarantine,
        split_fractions=split_fractions,
        batch_size=batch_size,
    )


def _parse_lines(path: Path, reject: Rejector) -> Iterator[tuple[str, Any]]:
    """``("line <n>", parsed object)`` per non-blank line; unparsable lines are quarantined."""
    for lineno, line in iter_lines(path, reject):
        record = f"line {lineno}"
        try:
            yield record, json.loads(line)
        except json.JSONDecodeError as err:
            reject(
                record, "bad_json", f"not valid JSON at column {err.colno}: {err.msg}", payload=line
            )


def map_jsonl_records(
    records: Iterable[tuple[str, dict[str, Any]]],
    *,
    source: str,
    images_dir: Path,
    file_label: str,
    quarantine: Quarantine,
    split_fractions: Mapping[str, float] = DEFAULT_SPLIT_FRACTIONS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[pa.RecordBatch]:
    """Map parsed ``(record label, record)`` pairs to :data:`REGION_SCHEMA` batches.

    ``record label`` (e.g. ``"line 3"``) and ``file_label`` name the record in quarantine
    rows. Ids become ``<source>/<image_id>`` and ``<source>/<image_id>#<region id>``; the
    ``image`` path is joined to ``images_dir``. Boxes (absolute xyxy) pass through unchanged.
    """
    reject = Rejector(quarantine, file_label)
    batcher = RowBatcher(batch_size)
    seen = SeenIds()
    for record, obj in records:
        try:
            meta, region_entries = _image_meta(obj, source, images_dir, split_fractions)
        except RecordProblem as problem:
            reject(record, problem.rule, problem.reason, payload=obj)
            continue
        if seen.add(meta.image_id):
            reason = f"image_id {meta.image_id} was already read from an earlier record"
            reject(record, "duplicate_image", reason, payload=obj, image_id=meta.image_id)
            continue
        regions = _regions(region_entries, record, meta.image_id, reject)
        yield from batcher.add(meta, regions, regions.box_array())
    yield from batcher.finish()
    logger.info(
        "jsonl %s: %d rows from %d images (%d image records)",
        file_label,
        batcher.rows,
        batcher.images,
        len(seen),
    )


def _image_meta(
    obj: Any, source: str, images_dir: Path, split_fractions: Mapping[str, float]
) -> tuple[ImageMeta, list[Any]]:
    """Image-level columns and the raw region list; raises ``RecordProblem`` if invalid."""
    if not isinstance(obj, dict):
        raise RecordProblem("bad_record", f"record is not a JSON object: {obj!r:.80}")
    image_id = f"{source}/{get_key(obj, 'image_id', str)}"
    global_caption = obj.get("global_caption")
    if global_caption is not None and not isinstance(global_caption, str):
        raise RecordProblem(
            "bad_record", f"key 'global_caption' must be str or null, got {global_caption!r:.80}"
        )
    meta = ImageMeta(
        image_id=image_id,
        source=source,
        kind=get_key(obj, "kind", str),
        width=get_size(obj, "width"),
        height=get_size(obj, "height"),
        image_path=str(images_dir / get_key(obj, "image", str)),
        split=assign_split(image_id, split_fractions),
        global_caption=global_caption,
    )
    return meta, get_key(obj, "regions", list)


def _regions(entries: list[Any], record: str, image_id: str, reject: Rejector) -> RegionList:
    """The mappable regions of one record; the others are quarantined one by one."""
    regions = RegionList()
    for index, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict):
                raise RecordProblem("bad_record", "region is not a JSON object")
            key = get_key(entry, "id", str)
            box = check_box(entry.get("box"), "box")
            text = get_key(entry, "text", str)
            text_type = get_key(entry, "text_type", str)
            target = get_key(entry, "text_is_target", bool) if "text_is_target" in entry else True
        except RecordProblem as problem:
            label = _region_label(record, entry, index)
            reject(label, problem.rule, problem.reason, payload=entry, image_id=image_id)
            continue
        label = f"{record} region id={key}"
        if not regions.add(label, f"{image_id}#{key}", box, text, text_type, text_is_target=target):
            reason = "region id appears twice in this record"
            reject(label, "duplicate_region", reason, payload=entry, image_id=image_id)
    return regions


def _region_label(record: str, entry: Any, index: int) -> str:
    """``"<record> region id=<id>"`` where the region has a string id, else by its index."""
    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
        return f"{record} region id={entry['id']}"
    return f"{record} region index {index}"
