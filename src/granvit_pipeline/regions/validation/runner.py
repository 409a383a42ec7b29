"""The ``validate`` stage: row rules, paper filters, image checks and GX, in two streaming passes.

Pass 1, :func:`find_rejections`, reads the region batches once and returns only the rejected
rows (a :data:`QUARANTINE_SCHEMA` table) and a summary; accepted rows are never collected.
Pass 2, :func:`drop_rejected`, streams the same batches again and drops the rejected region
ids (a vectorised anti-join), so memory stays bounded in the number of rows.

Rules, in priority order (a rejected row carries the first rule it broke; its message lists
all of them): see :data:`.rules.RULES`: structural rules (``not_null`` ...
``region_id_unique``), then paper filters (``image_short_side`` ... ``min_boxes_per_image``),
then image checks (``image_missing`` ... ``image_too_large``). Filters only see rows that
pass every structural rule; image checks only open images that still have an accepted row.

Memory per region of state across batches: ~1.3 bytes (an 8-byte hash per image, see
:mod:`.ids`) plus the quarantine itself. Batches are re-cut at image boundaries so
that each processed chunk holds whole images (the carried tail is at most one image's rows).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from granvit_pipeline.regions.image_checks import ImageChecker, ImageRef
from granvit_pipeline.regions.quarantine import QUARANTINE_SCHEMA, DataError
from granvit_pipeline.regions.schema import REGION_SCHEMA
from granvit_pipeline.regions.validation.config import ValidationConfig
from granvit_pipeline.regions.validation.ids import RegionIdTracker, run_starts
from granvit_pipeline.regions.validation.messages import build_messages, id_reason_text
from granvit_pipeline.regions.validation.rules import (
    RULE_BIT,
    RULES,
    box_geometry,
    filter_masks,
    first_rule_index,
    pack_bits,
    structural_masks,
)
from granvit_pipeline.regions.validation.summary import (
    ExpectationTally,
    ValidationSummary,
)

__all__ = [
    "ValidationContractError",
    "ValidationResult",
    "check_rejected_fraction",
    "drop_rejected",
    "find_rejections",
]

logger = logging.getLogger(__name__)


class ValidationContractError(RuntimeError):
    """GX rejected rows that the row rules accepted: the two disagree, which is a bug."""


@dataclass
class ValidationResult:
    """Output of pass 1: the quarantine (rejected rows only) and the summary."""

    quarantine: pa.Table
    summary: ValidationSummary

    @property
    def rejected_region_ids(self) -> pa.Array:
        """Distinct region ids in the quarantine (null included if a null id was rejected)."""
        return pc.unique(self.quarantine.column("region_id").combine_chunks())


@dataclass
class _Chunk:
    """Per-chunk working state of pass 1."""

    batch: pa.RecordBatch
    offset: int  # global ordinal of its first row
    bits: np.ndarray = field(init=False)
    starts: np.ndarray = field(init=False)  # run (image) start indices
    run_of_row: np.ndarray = field(init=False)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.batch.num_rows
        self.bits = np.zeros(n, dtype=np.uint32)
        self.starts = run_starts(self.batch.column("image_id"))
        self.run_of_row = np.repeat(np.arange(len(self.starts)), np.diff(np.append(self.starts, n)))


def _check_schema(batch: pa.RecordBatch, index: int) -> pa.RecordBatch:
    """``batch`` if it has the region columns and types, else :class:`DataError`."""
    if batch.schema.names != REGION_SCHEMA.names or batch.schema.types != REGION_SCHEMA.types:
        raise DataError(
            "<region batches>",
            f"batch {index}",
            "schema",
            f"expected columns {REGION_SCHEMA.names} with types {REGION_SCHEMA.types}, "
            f"got {batch.schema}",
        )
    return batch


def _whole_image_chunks(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Re-cut the stream at image boundaries (the last image of a batch waits for the next)."""
    tail: pa.RecordBatch | None = None
    for i, batch in enumerate(batches):
        batch = _check_schema(batch, i)
        if tail is not None and tail.num_rows:
            batch = pa.concat_batches([tail, batch.cast(tail.schema)])
        if batch.num_rows == 0:
            continue
        cut = int(run_starts(batch.column("image_id"))[-1])
        if cut:
            yield batch.slice(0, cut)
        tail = batch.slice(cut)
    if tail is not None and tail.num_rows:
        yield tail


def _apply_row_rules(chunk: _Chunk, cfg: ValidationConfig, ids: RegionIdTracker) -> None:
    """Structural rules, filters and ``min_boxes_per_image`` into ``chunk.bits``."""
    batch, n = chunk.batch, chunk.batch.num_rows
    g = box_geometry(batch)
    masks = structural_masks(batch, g, cfg)
    id_codes = ids.check(batch.column("image_id"), batch.column("region_id"))
    masks["region_id_unique"] = id_codes > 0
    chunk.bits |= pack_bits(masks, n)
    chunk.bits |= pack_bits(filter_masks(g, chunk.bits == 0, cfg), n)
    ok = chunk.bits == 0
    left = np.bincount(chunk.run_of_row, weights=ok, minlength=len(chunk.starts)).astype(np.int64)
    if cfg.filters_enabled:
        few = ok & (left[chunk.run_of_row] < cfg.min_boxes_per_image)
        chunk.bits |= pack_bits({"min_boxes_per_image": few}, n)
    chunk.extra["_id_codes"] = id_codes
    chunk.extra["_boxes_left"] = left[chunk.run_of_row]


def _apply_image_checks(chunk: _Chunk, checker: ImageChecker) -> int:
    """Check images that still have an accepted row; failures hit all their rows."""
    accepted_runs = np.bincount(chunk.run_of_row[chunk.bits == 0], minlength=len(chunk.starts))
    todo = np.flatnonzero(accepted_runs > 0)
    if len(todo) == 0:
        return 0
    heads = chunk.batch.select(["image_id", "image_path", "width", "height"])
    heads = heads.take(pa.array(chunk.starts[todo])).to_pydict()
    refs = [ImageRef(*row) for row in zip(*heads.values(), strict=True)]
    failed = 0
    for run, result in zip(todo, checker.check(refs), strict=True):
        if result.rule is None:
            continue
        failed += 1
        rows = chunk.run_of_row == run
        chunk.bits[rows] |= np.uint32(1 << RULE_BIT[result.rule])
        messages = chunk.extra.setdefault(result.rule, np.full(len(chunk.bits), None, object))
        messages[rows] = result.message
    return failed


def _quarantine_rows(chunk: _Chunk, cfg: ValidationConfig) -> pa.Table:
    """The rejected rows of a chunk as a quarantine table, in row order."""
    idx = np.flatnonzero(chunk.bits)
    sub, bits = chunk.batch.take(pa.array(idx)), chunk.bits[idx]
    ordinals = pc.cast(pa.array(idx + chunk.offset), pa.string())
    records = pc.coalesce(
        sub.column("region_id"), pc.binary_join_element_wise("row ", ordinals, "")
    )
    extra = {
        "_id_reason": id_reason_text(chunk.extra["_id_codes"][idx]),
        "_boxes_left": pa.array(chunk.extra["_boxes_left"][idx]),
    }
    extra |= {k: pa.array(v[idx], pa.string()) for k, v in chunk.extra.items() if k in RULES}
    return pa.table(
        {
            "stage": pa.array(["validate"] * len(idx), pa.string()),
            "file": pc.coalesce(sub.column("image_path"), sub.column("source"), "<unknown>"),
            "record": records,
            "rule": pa.array(np.asarray(RULES, dtype=object)[first_rule_index(bits)], pa.string()),
            "message": build_messages(sub, bits, records, extra, cfg),
            "image_id": sub.column("image_id"),
            "region_id": sub.column("region_id"),
            "payload": pa.nulls(len(idx), pa.string()),
        }
    ).cast(QUARANTINE_SCHEMA)


def _run_gx(chunk: _Chunk, gx_state: ExpectationTally) -> None:
    """Raw-input report on the first chunk; contract check on accepted rows within budget."""
    if gx_state.raw is None and gx_state.raw_rows > 0:
        gx_state.raw = gx_state.runner.run(chunk.batch.slice(0, gx_state.raw_rows), gx_state.suite)
    if not gx_state.wants_more():
        return
    accepted = chunk.batch.filter(pa.array(chunk.bits == 0))
    if accepted.num_rows == 0:
        return
    result = gx_state.runner.run(accepted, gx_state.suite)
    gx_state.add(result)
    failed = [e for e in result["expectations"] if not e["success"]]
    if failed:
        rows = f"rows {chunk.offset}..{chunk.offset + chunk.batch.num_rows - 1}"
        raise ValidationContractError(
            f"GX expectations {[e['name'] for e in failed]} failed on rows that the row rules "
            f"accepted ({rows}); the rules and the suite disagree: {failed}"
        )


def _new_gx_tally(cfg: ValidationConfig, suite: Any = None) -> ExpectationTally:
    # Imported here: great_expectations takes seconds to import, and runs without GX
    # (run_expectations=False) should not pay for it.
    from granvit_pipeline.regions.validation.expectations import (
        RegionSuiteRunner,
        build_region_suite,
    )

    suite = build_region_suite(cfg) if suite is None else suite
    return ExpectationTally.create(
        RegionSuiteRunner(), suite, cfg.expectations_max_rows, cfg.expectations_raw_rows
    )


def find_rejections(
    batches: Iterable[pa.RecordBatch], cfg: ValidationConfig, *, suite: Any = None
) -> ValidationResult:
    """Pass 1: every rejected row (quarantine) and a summary; see the module docstring.

    ``suite`` (a ``gx.ExpectationSuite``) replaces :func:`.expectations.build_region_suite`
    ``(cfg)``, e.g. to add project-specific expectations; the accepted rows must satisfy it,
    else :class:`ValidationContractError` names the failing expectations.
    """
    start = time.perf_counter()
    summary = ValidationSummary.empty(cfg.model_dump(mode="json"))
    ids, tables, offset = RegionIdTracker(), [], 0
    gx_state = _new_gx_tally(cfg, suite) if cfg.run_expectations else None
    checker = ImageChecker(cfg.max_image_pixels, cfg.image_check_workers, cfg.image_root)
    with checker:
        for batch in _whole_image_chunks(batches):
            chunk = _Chunk(batch, offset)
            t0 = time.perf_counter()
            _apply_row_rules(chunk, cfg, ids)
            t1 = time.perf_counter()
            failed = _apply_image_checks(chunk, checker) if cfg.check_images else 0
            t2 = time.perf_counter()
            if chunk.bits.any():
                tables.append(_quarantine_rows(chunk, cfg))
            t3 = time.perf_counter()
            if gx_state is not None:
                _run_gx(chunk, gx_state)
            t4 = time.perf_counter()
            summary.add_chunk(chunk.bits, chunk.run_of_row, len(chunk.starts), failed)
            summary.add_times(rules=t1 - t0 + t3 - t2, images=t2 - t1, gx=t4 - t3)
            offset += batch.num_rows
        summary.images_checked = checker.checked
    summary.expectations = gx_state.as_dict() if gx_state is not None else {"enabled": False}
    summary.timings["total_s"] = time.perf_counter() - start
    quarantine = pa.concat_tables(tables) if tables else QUARANTINE_SCHEMA.empty_table()
    logger.info("validate: %s", summary.one_line())
    return ValidationResult(quarantine=quarantine, summary=summary)


def drop_rejected(
    batches: Iterable[pa.RecordBatch],
    rejected_region_ids: pa.Array | pa.ChunkedArray | Iterable[str | None],
    *,
    expected_rows: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """Pass 2: stream ``batches`` minus the rows whose ``region_id`` is rejected.

    A vectorised anti-join (``pyarrow.compute.is_in``; a null id in the set drops null ids).
    Each batch rebuilds the lookup table, which costs O(len(rejected_region_ids)): fine for a
    shard's quarantine. With ``expected_rows`` (the quarantine's row count), raises
    :class:`DataError` at the end if a different number of rows was dropped, which happens
    when an accepted row shares its id with a rejected one (an image whose rows reappear).
    Empty results are not yielded.
    """
    if isinstance(rejected_region_ids, pa.ChunkedArray):
        rejected_region_ids = rejected_region_ids.combine_chunks()
    if not isinstance(rejected_region_ids, pa.Array):
        rejected_region_ids = pa.array(list(rejected_region_ids), pa.string())
    value_set = pc.unique(rejected_region_ids)
    dropped = 0
    for batch in batches:
        if len(value_set):
            hit = pc.is_in(batch.column("region_id"), value_set=value_set, skip_nulls=False)
            dropped += pc.sum(hit).as_py() or 0
            batch = batch.filter(pc.invert(hit))
        if batch.num_rows:
            yield batch
    if expected_rows is not None and dropped != expected_rows:
        raise DataError(
            "<region batches>",
            f"{dropped} rows dropped",
            "region_id_unique",
            f"the quarantine holds {expected_rows} rows: accepted rows share region ids with "
            "rejected ones, so the anti-join cannot separate them",
        )


def check_rejected_fraction(summary: ValidationSummary, cfg: ValidationConfig) -> None:
    """Raise :class:`DataError` if the rejected fraction exceeds ``cfg.max_rejected_fraction``."""
    fraction = summary.rejected_fraction(cfg.rejected_fraction_counts_filters)
    if fraction <= cfg.max_rejected_fraction:
        return
    what = "rows" if cfg.rejected_fraction_counts_filters else "rows with data errors"
    top = ", ".join(f"{rule}={n}" for rule, n in summary.top_rules(5))
    raise DataError(
        "<region batches>",
        f"{summary.rows_checked} rows checked",
        "max_rejected_fraction",
        f"rejected fraction {fraction:.4f} of {what} > max_rejected_fraction="
        f"{cfg.max_rejected_fraction}; top rules: {top}",
    )
