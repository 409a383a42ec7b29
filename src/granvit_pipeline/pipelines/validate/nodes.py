"""Validate nodes: pass 1 finds every rejected row, pass 2 streams the accepted rows."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from granvit_pipeline.datasets import RegionStream, RegionTable
from granvit_pipeline.regions.readers import IngestParams
from granvit_pipeline.regions.validation import (
    ValidateParams,
    ValidationConfig,
    ValidationResult,
    check_rejected_fraction,
    drop_rejected,
    find_rejections,
    render_report_html,
    render_report_json,
)

logger = logging.getLogger(__name__)


@dataclass
class CheckedRegions:
    """Pass-1 outcome handed from ``check_regions`` to the report and the acceptance nodes."""

    result: ValidationResult
    config: ValidationConfig


def check_regions(
    raw_regions: RegionTable, validate: Mapping[str, Any], ingest: Mapping[str, Any]
) -> CheckedRegions:
    """Pass 1 over the raw table: quarantine rows with their rule, plus the summary."""
    cfg = ValidateParams(**validate).config_for(IngestParams(**ingest))
    return CheckedRegions(find_rejections(raw_regions.batches(), cfg), cfg)


def render_validation_report(
    checked: CheckedRegions, raw_regions: RegionTable
) -> tuple[dict[str, Any], str]:
    """JSON + HTML report: what was checked, counts per rule and filter, GX results."""
    report = {**render_report_json(checked.result.summary), "ingest": dict(raw_regions.summary)}
    return report, render_report_html(checked.result.summary)


def accept_regions(
    raw_regions: RegionTable, checked: CheckedRegions, report: Mapping[str, Any]
) -> RegionStream:
    """Fail above the rejected-fraction threshold; else stream the accepted rows (pass 2)."""
    check_rejected_fraction(checked.result.summary, checked.config)
    quarantine = checked.result.quarantine
    accepted = drop_rejected(
        raw_regions.batches(), quarantine.column("region_id"), expected_rows=quarantine.num_rows
    )
    logger.info("validate: %d of %d rows accepted", report["rows_accepted"], report["rows_checked"])
    both = pa.concat_tables([raw_regions.quarantine(), quarantine])
    return RegionStream(
        accepted,
        quarantine=lambda: both,
        summary=lambda: {"ingest": dict(raw_regions.summary), "validation": report},
    )
