"""Readers: standard region formats -> :data:`~granvit_pipeline.regions.schema.REGION_SCHEMA`.

Every reader is a function ``(cfg, quarantine, *, split_fractions, batch_size)`` that yields
``pyarrow.RecordBatch`` objects with exactly the region schema, and guarantees:

- the rows of one image are contiguous (an image may straddle two consecutive batches);
- ``image_id`` = ``"<source>/<id in source>"``, ``region_id`` = ``"<image_id>#<region id>"``;
- ``split`` = :func:`~granvit_pipeline.regions.schema.assign_split` of ``image_id``;
- ``image_path`` = ``str(images / file_name)``;
- boxes are absolute-pixel ``xyxy`` float32, converted with the helpers of
  :mod:`granvit_pipeline.regions.boxes` and never clipped or fixed (validation rejects boxes
  outside the image, degenerate or NaN);
- records that cannot be mapped go to the :class:`Quarantine` (stage ``ingest``, a rule name,
  the file and record in the message, the offending record as payload); fatal problems (file
  missing, not UTF-8, not JSON, wrong top-level structure) raise :class:`DataError`.

Readers are generators: files are opened and the quarantine is filled while the batches are
consumed. JSON formats (coco, refcoco, vg) are loaded whole; jsonl and icdar stream by line.
Images are opened only where the format has no size (vg, icdar), and only their header is read.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import pyarrow as pa

from granvit_pipeline.regions.quarantine import Quarantine
from granvit_pipeline.regions.readers._rows import DEFAULT_BATCH_SIZE
from granvit_pipeline.regions.readers.coco import read_coco
from granvit_pipeline.regions.readers.config import DemoSource, IngestParams, SourceConfig
from granvit_pipeline.regions.readers.icdar import read_icdar
from granvit_pipeline.regions.readers.jsonl import map_jsonl_records, read_jsonl
from granvit_pipeline.regions.readers.refcoco import read_refcoco
from granvit_pipeline.regions.readers.vg import read_vg
from granvit_pipeline.regions.schema import DEFAULT_SPLIT_FRACTIONS

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FORMATS",
    "DemoSource",
    "IngestParams",
    "Reader",
    "SourceConfig",
    "map_jsonl_records",
    "read_coco",
    "read_icdar",
    "read_jsonl",
    "read_refcoco",
    "read_source",
    "read_sources",
    "read_vg",
]


class Reader(Protocol):
    """The signature every reader in :data:`FORMATS` has."""

    def __call__(
        self,
        cfg: SourceConfig,
        quarantine: Quarantine,
        *,
        split_fractions: Mapping[str, float] = ...,
        batch_size: int = ...,
    ) -> Iterator[pa.RecordBatch]: ...


FORMATS: Mapping[str, Reader] = {
    "coco": read_coco,
    "vg": read_vg,
    "icdar": read_icdar,
    "refcoco": read_refcoco,
    "jsonl": read_jsonl,
}


def read_source(
    cfg: SourceConfig,
    quarantine: Quarantine,
    *,
    split_fractions: Mapping[str, float] = DEFAULT_SPLIT_FRACTIONS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[pa.RecordBatch]:
    """Read one source with the reader of ``cfg.format`` (see the module doc for guarantees).

    Logs one summary line (rows and newly quarantined records per rule) when exhausted.
    Raises ``ValueError`` at once for a ``batch_size`` below 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not cfg.images.is_dir():
        logger.warning(
            "images directory %s of source %s does not exist", cfg.images, cfg.source_name
        )
    return _logged(cfg, quarantine, split_fractions, batch_size)


def _logged(
    cfg: SourceConfig,
    quarantine: Quarantine,
    split_fractions: Mapping[str, float],
    batch_size: int,
) -> Iterator[pa.RecordBatch]:
    before = dict(quarantine.counts())
    rows = 0
    for batch in FORMATS[cfg.format](
        cfg, quarantine, split_fractions=split_fractions, batch_size=batch_size
    ):
        rows += batch.num_rows
        yield batch
    added = {
        rule: count - before.get(rule, 0)
        for rule, count in quarantine.counts().items()
        if count > before.get(rule, 0)
    }
    logger.info(
        "source %s (%s, %s): %d rows; quarantined %s",
        cfg.source_name,
        cfg.format,
        cfg.annotations,
        rows,
        added or "nothing",
    )


def read_sources(
    cfg: IngestParams,
    demo_records: Sequence[dict[str, Any]],
    quarantine: Quarantine,
    rows_per_source: Counter[str],
    *,
    demo_label: str = "demo_annotations",
) -> Iterator[pa.RecordBatch]:
    """Every source of ``cfg``, in order, as region batches; logs each source's row count.

    A demo source maps ``demo_records`` (the generated JSONL records, images under
    ``cfg.demo_dir``; quarantine entries name ``demo_label`` as their file). Rows are counted
    per source name into ``rows_per_source`` while the batches are consumed.
    """
    common = {"split_fractions": cfg.split_fractions, "batch_size": cfg.batch_size}
    for src in cfg.resolved_sources():
        if isinstance(src, DemoSource):
            name = "demo"
            labelled = ((f"{demo_label} line {n}", r) for n, r in enumerate(demo_records, 1))
            batches = map_jsonl_records(
                labelled,
                source=cfg.demo.source,
                images_dir=cfg.demo_dir,
                file_label=demo_label,
                quarantine=quarantine,
                **common,
            )
        else:
            name = src.source or src.format
            batches = read_source(src, quarantine, **common)
        for batch in batches:
            rows_per_source[name] += batch.num_rows
            yield batch
        logger.info("Ingested %d regions from source %r", rows_per_source[name], name)
