"""The Great Expectations (1.x) suite of the region table, built in code from the config.

The suite states the data contract declaratively; :mod:`.runner` enforces the same contract
with vectorised row rules and uses this suite as an independent cross-check (on the accepted
rows, where any failure is a bug) and as a report of what GX sees in the raw input.

Each expectation carries ``meta["name"]``, e.g. ``"not_null(region_id)"`` or ``"x2 > x1"``,
which the summaries use. Note that GX's length/regex/between expectations skip nulls (and pandas
treats NaN as null), so every such column also has a not-null expectation.

GX is slow next to the row rules (its cost is in ``benchmarks/RESULTS.md``), which is why
:mod:`.runner` runs it on a row budget.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import great_expectations as gx
import pandas as pd
import pyarrow as pa
from great_expectations.data_context.types.base import ProgressBarsConfig

from granvit_pipeline.regions.schema import COLUMNS, KINDS, REGION_SCHEMA, SPLITS, TEXT_TYPES
from granvit_pipeline.regions.validation.config import ValidationConfig

logger = logging.getLogger(__name__)

COORD_MAX = float(2**31 - 1)  # finite upper bound: catches +inf (width/height are int32)
_E = gx.expectations


def _named(expectation: Any, name: str) -> Any:
    expectation.meta = {"name": name}
    return expectation


def _structure_expectations() -> list[Any]:
    out = [_named(_E.ExpectTableColumnsToMatchOrderedList(column_list=list(COLUMNS)), "columns")]
    for field in REGION_SCHEMA:
        if not field.nullable:
            col = field.name
            out.append(_named(_E.ExpectColumnValuesToNotBeNull(column=col), f"not_null({col})"))
    return out


def _box_expectations() -> list[Any]:
    pair = _E.ExpectColumnPairValuesAToBeGreaterThanB
    out = [
        _named(pair(column_A="x2", column_B="x1"), "x2 > x1"),
        _named(pair(column_A="y2", column_B="y1"), "y2 > y1"),
        _named(pair(column_A="width", column_B="x2", or_equal=True), "x2 <= width"),
        _named(pair(column_A="height", column_B="y2", or_equal=True), "y2 <= height"),
    ]
    for col in ("x1", "y1", "x2", "y2"):
        between = _E.ExpectColumnValuesToBeBetween(column=col, min_value=0, max_value=COORD_MAX)
        out.append(_named(between, f"finite_in_range({col})"))
    return out


def _text_and_set_expectations(cfg: ValidationConfig) -> list[Any]:
    lengths = _E.ExpectColumnValueLengthsToBeBetween(
        column="text", min_value=1, max_value=cfg.max_text_chars
    )
    out = [
        _named(lengths, "text_length(1..max_text_chars)"),
        _named(_E.ExpectColumnValuesToMatchRegex(column="text", regex=r"\S"), "text_not_blank"),
        _named(_E.ExpectColumnValuesToBeUnique(column="region_id"), "unique(region_id)"),
    ]
    for col, allowed in (("kind", KINDS), ("text_type", TEXT_TYPES), ("split", SPLITS)):
        in_set = _E.ExpectColumnValuesToBeInSet(column=col, value_set=list(allowed))
        out.append(_named(in_set, f"in_set({col})"))
    return out


def _size_expectations(cfg: ValidationConfig) -> list[Any]:
    """Positive image size; with filters on, short side > threshold <=> both sides > it."""
    low = max(0.0, cfg.min_image_short_side) if cfg.filters_enabled else 0.0
    out = []
    for col in ("width", "height"):
        between = _E.ExpectColumnValuesToBeBetween(
            column=col, min_value=low, max_value=COORD_MAX, strict_min=True
        )
        out.append(_named(between, f"size_above({col}, {low:g})"))
    return out


def build_region_suite(cfg: ValidationConfig, name: str = "regions") -> gx.ExpectationSuite:
    """The region-table expectation suite for ``cfg`` (not stored in any context)."""
    expectations = (
        _structure_expectations()
        + _box_expectations()
        + _size_expectations(cfg)
        + _text_and_set_expectations(cfg)
    )
    # Passed to the constructor: add_expectation() would need an active data context.
    return gx.ExpectationSuite(name=name, expectations=expectations)


class RegionSuiteRunner:
    """An ephemeral GX context with one pandas whole-dataframe batch definition, reused."""

    def __init__(self) -> None:
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        asset = self.context.data_sources.add_pandas("regions").add_dataframe_asset("batch")
        self._batches = asset.add_batch_definition_whole_dataframe("whole")

    def run(self, data: pd.DataFrame | pa.Table | pa.RecordBatch, suite: gx.ExpectationSuite):
        """Validate ``data`` (arrow is converted to pandas) against ``suite``; a summary dict."""
        df = data if isinstance(data, pd.DataFrame) else data.to_pandas()
        start = time.perf_counter()
        batch = self._batches.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(suite, result_format="SUMMARY")
        seconds = time.perf_counter() - start
        logger.debug("GX validated %d rows in %.3f s", len(df), seconds)
        return {
            "success": bool(result.success),
            "rows": len(df),
            "seconds": seconds,
            "expectations": [_expectation_summary(r) for r in result.results],
        }


def _expectation_summary(r: Any) -> dict[str, Any]:
    cfg = r.expectation_config
    res = r.result or {}
    raised = (r.exception_info or {}).get("raised_exception", False)
    return {
        "name": (cfg.meta or {}).get("name", cfg.type),
        "type": cfg.type,
        "success": bool(r.success),
        "unexpected_count": int(res.get("unexpected_count") or 0),
        "unexpected_percent": float(res.get("unexpected_percent") or 0.0),
        "partial_unexpected": [str(v) for v in (res.get("partial_unexpected_list") or [])[:5]],
        "exception": str(r.exception_info.get("exception_message")) if raised else None,
    }


def run_region_suite(
    data: pd.DataFrame | pa.Table | pa.RecordBatch,
    suite: gx.ExpectationSuite,
    runner: RegionSuiteRunner | None = None,
) -> dict[str, Any]:
    """Validate ``data`` against ``suite``: ``{"success", "rows", "seconds", "expectations"}``.

    ``expectations`` lists, per expectation in suite order: ``name``, ``type``, ``success``,
    ``unexpected_count``, ``unexpected_percent``, ``partial_unexpected`` (up to 5 values as
    text) and ``exception``. Pass a ``runner`` to reuse one context across batches.
    """
    return (runner or RegionSuiteRunner()).run(data, suite)


def failed_expectations(summary: dict[str, Any]) -> list[str]:
    """Names of the expectations that failed in a :func:`run_region_suite` summary."""
    return [e["name"] for e in summary["expectations"] if not e["success"]]
