"""Region tables on disk: Parquet parts + their quarantine + a summary, saved as one unit.

A node returns a :class:`RegionStream` (lazy batches plus callables for what is only known
once the batches are consumed); :class:`RegionTableDataset` drains it batch by batch into a
temporary folder and renames it into place, so memory stays bounded by one batch and nothing
half-written is ever visible. ``load()`` gives a lazy :class:`RegionTable` handle.

Layout of ``<path>/``: ``regions/part-00000.parquet ...``, ``quarantine.parquet``,
``summary.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from kedro.io import AbstractDataset, DatasetError

from granvit_pipeline.datasets.atomic import atomic_directory
from granvit_pipeline.regions.quarantine import QUARANTINE_SCHEMA
from granvit_pipeline.regions.schema import REGION_SCHEMA


@dataclass
class RegionStream:
    """What a node returns: region batches, then (after they are drained) quarantine + summary."""

    batches: Iterable[pa.RecordBatch]
    quarantine: Callable[[], pa.Table] = QUARANTINE_SCHEMA.empty_table
    summary: Callable[[], Mapping[str, Any]] = dict


@dataclass
class RegionTable:
    """A saved region table: lazy access to the rows, plus its quarantine and summary."""

    path: Path
    summary: Mapping[str, Any] = field(default_factory=dict)

    def dataset(self) -> pads.Dataset:
        return pads.dataset(self.path / "regions", format="parquet", schema=REGION_SCHEMA)

    def batches(self, batch_size: int = 65536) -> Iterator[pa.RecordBatch]:
        """Rows in their saved order (parts in name order, rows in part order)."""
        for part in sorted((self.path / "regions").glob("part-*.parquet")):
            yield from pq.ParquetFile(part).iter_batches(batch_size=batch_size)

    def quarantine(self) -> pa.Table:
        return pq.read_table(self.path / "quarantine.parquet", schema=QUARANTINE_SCHEMA)

    @property
    def num_rows(self) -> int:
        return int(self.summary.get("rows", self.dataset().count_rows()))


class RegionTableDataset(AbstractDataset[RegionStream, RegionTable]):
    """Saves a :class:`RegionStream` atomically; loads a :class:`RegionTable` handle."""

    def __init__(self, path: str, rows_per_part: int = 1_000_000) -> None:
        self._path = Path(path)
        self._rows_per_part = rows_per_part

    def _save(self, data: RegionStream) -> None:
        with atomic_directory(self._path) as tmp:
            rows = _write_parts(data.batches, tmp / "regions", self._rows_per_part)
            pq.write_table(data.quarantine().cast(QUARANTINE_SCHEMA), tmp / "quarantine.parquet")
            summary = {**dict(data.summary()), "rows": rows}
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))

    def _load(self) -> RegionTable:
        summary_file = self._path / "summary.json"
        if not summary_file.is_file():
            raise DatasetError(f"{self._path}: no region table here (run the producing node first)")
        return RegionTable(self._path, json.loads(summary_file.read_text()))

    def _exists(self) -> bool:
        return (self._path / "summary.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "rows_per_part": self._rows_per_part}


def _write_parts(batches: Iterable[pa.RecordBatch], folder: Path, rows_per_part: int) -> int:
    """Stream batches into Parquet parts of at most ``rows_per_part`` rows; returns rows."""
    folder.mkdir(parents=True)
    writer, part, in_part, total = None, 0, 0, 0
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            if batch.schema != REGION_SCHEMA:
                batch = batch.cast(REGION_SCHEMA)
            if writer is None or in_part >= rows_per_part:
                if writer is not None:
                    writer.close()
                writer = pq.ParquetWriter(folder / f"part-{part:05d}.parquet", REGION_SCHEMA)
                part, in_part = part + 1, 0
            writer.write_batch(batch)
            in_part += batch.num_rows
            total += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # an empty table still has one (empty) part, so readers see the schema
        pq.write_table(REGION_SCHEMA.empty_table(), folder / "part-00000.parquet")
    return total
