"""Ingest nodes: thin adapters over ``regions.demo`` and ``regions.readers``."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from granvit_pipeline.datasets import RegionStream
from granvit_pipeline.regions.demo import DemoConfig, generate_demo
from granvit_pipeline.regions.quarantine import Quarantine
from granvit_pipeline.regions.readers import SourceConfig, map_jsonl_records, read_source

logger = logging.getLogger(__name__)


class DemoSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["demo"] = "demo"


class IngestParams(BaseModel):
    """``params:ingest``. Either one source (``format``/``annotations``/``images``/...; handy on
    the command line) or a list of ``sources`` (a conf environment); ``format: demo`` is the
    built-in generated data."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["demo", "coco", "vg", "icdar", "refcoco", "jsonl"] = "demo"
    annotations: Path | None = None
    images: Path | None = None
    captions: Path | None = None
    source: str | None = None
    sources: list[DemoSource | SourceConfig] = Field(default_factory=list)
    split_fractions: dict[Literal["train", "val", "test"], float]
    batch_size: int = Field(65536, gt=0)
    demo_dir: Path
    demo: DemoConfig = Field(default_factory=DemoConfig)

    def resolved_sources(self) -> list[DemoSource | SourceConfig]:
        if self.sources:
            return list(self.sources)
        if self.format == "demo":
            return [DemoSource()]
        missing = [k for k in ("annotations", "images") if getattr(self, k) is None]
        if missing:
            raise ValueError(
                f"ingest.format={self.format} needs ingest.{' and ingest.'.join(missing)}"
            )
        return [
            SourceConfig(
                format=self.format,
                annotations=self.annotations,
                images=self.images,
                captions=self.captions,
                source=self.source,
            )
        ]

    def uses_demo(self) -> bool:
        return any(isinstance(s, DemoSource) for s in self.resolved_sources())


def generate_demo_data(params: Mapping[str, Any]) -> tuple[dict[str, bytes], list[dict]]:
    """Render the built-in demo data set when a demo source is configured (else nothing)."""
    cfg = IngestParams(**params)
    if not cfg.uses_demo():
        return {}, []
    images, records = {}, []
    for item in generate_demo(cfg.demo):
        images[item.name] = item.png
        records.append(item.record)
    logger.info("Generated %d demo images (seed %d)", len(records), cfg.demo.seed)
    return images, records


def ingest_regions(demo_records: list[dict], params: Mapping[str, Any]) -> RegionStream:
    """Stream every source into region batches; unmappable records go to the quarantine."""
    cfg = IngestParams(**params)
    quarantine = Quarantine()
    per_source: Counter[str] = Counter()

    def batches() -> Iterator[pa.RecordBatch]:
        for src in cfg.resolved_sources():
            name = "demo" if isinstance(src, DemoSource) else src.source or src.format
            for batch in _read_one(src, demo_records, cfg, quarantine):
                per_source[name] += batch.num_rows
                yield batch
            logger.info("Ingested %d regions from source %r", per_source[name], name)

    def summary() -> dict[str, Any]:
        rejected = quarantine.counts()
        logger.info("Ingest rejected %d records: %s", len(quarantine), rejected)
        return {"rows_per_source": dict(per_source), "ingest_rejections": rejected}

    return RegionStream(batches(), quarantine=quarantine.to_table, summary=summary)


def _read_one(
    src: DemoSource | SourceConfig,
    demo_records: list[dict],
    cfg: IngestParams,
    quarantine: Quarantine,
) -> Iterator[pa.RecordBatch]:
    common = {"split_fractions": cfg.split_fractions, "batch_size": cfg.batch_size}
    if isinstance(src, DemoSource):
        labelled = ((f"demo_annotations line {n}", r) for n, r in enumerate(demo_records, 1))
        return map_jsonl_records(
            labelled,
            source=cfg.demo.source,
            images_dir=cfg.demo_dir,
            file_label="demo_annotations",
            quarantine=quarantine,
            **common,
        )
    return read_source(src, quarantine, **common)
