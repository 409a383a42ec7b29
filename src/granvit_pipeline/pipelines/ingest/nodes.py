"""Ingest nodes: thin adapters over ``regions.demo`` and ``regions.readers``."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from granvit_pipeline.datasets import RegionStream
from granvit_pipeline.regions.demo import generate_demo
from granvit_pipeline.regions.quarantine import Quarantine
from granvit_pipeline.regions.readers import IngestParams, read_sources

logger = logging.getLogger(__name__)


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

    def summary() -> dict[str, Any]:
        rejected = quarantine.counts()
        logger.info("Ingest rejected %d records: %s", len(quarantine), rejected)
        return {"rows_per_source": dict(per_source), "ingest_rejections": rejected}

    batches = read_sources(cfg, demo_records, quarantine, per_source)
    return RegionStream(batches, quarantine=quarantine.to_table, summary=summary)
