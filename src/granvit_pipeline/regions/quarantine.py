"""Rejected records: where they came from, which rule they broke, and why.

Nothing is dropped silently: every reader and validation rule that refuses a record adds a row
here, and the quarantine table is written beside the accepted data. Fatal input problems
(a file that is not JSON at all, say) raise :class:`DataError` instead, with the same naming.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),  # ingest | validate
        pa.field("file", pa.string(), nullable=False),  # the input file the record came from
        pa.field("record", pa.string(), nullable=False),  # e.g. "annotation id=17", "line 42"
        pa.field("rule", pa.string(), nullable=False),  # short rule name, e.g. "box_inside_image"
        pa.field("message", pa.string(), nullable=False),  # human-readable reason
        pa.field("image_id", pa.string(), nullable=True),
        pa.field("region_id", pa.string(), nullable=True),
        pa.field("payload", pa.string(), nullable=True),  # the offending record as JSON, if any
    ]
)


class DataError(ValueError):
    """Input that stops the run: the message names the file, the record and the rule."""

    def __init__(self, file: str, record: str, rule: str, message: str) -> None:
        self.file, self.record, self.rule, self.detail = str(file), record, rule, message
        super().__init__(f"{file}: {record}: [{rule}] {message}")

    def __reduce__(self) -> tuple[type, tuple[str, str, str, str]]:
        # Exceptions unpickle as cls(*args); ours takes four arguments, so say which. Needed
        # when a DataError crosses a process pool (parallel shard writing).
        return (type(self), (self.file, self.record, self.rule, self.detail))


def _to_json(payload: Any) -> str | None:
    if payload is None:
        return None
    try:
        return json.dumps(payload, ensure_ascii=False, default=str, allow_nan=True)
    except (TypeError, ValueError):
        return repr(payload)


class Quarantine:
    """Collects rejected records (expected to be a small fraction of the input)."""

    def __init__(self) -> None:
        self._rows: dict[str, list[Any]] = {name: [] for name in QUARANTINE_SCHEMA.names}
        self._tables: list[pa.Table] = []

    def reject(
        self,
        *,
        stage: str,
        file: str,
        record: str,
        rule: str,
        message: str,
        image_id: str | None = None,
        region_id: str | None = None,
        payload: Any = None,
    ) -> None:
        """Record one rejected record."""
        row = {
            "stage": stage,
            "file": str(file),
            "record": record,
            "rule": rule,
            "message": message,
            "image_id": image_id,
            "region_id": region_id,
            "payload": _to_json(payload),
        }
        for name, value in row.items():
            self._rows[name].append(value)

    def extend(self, table: pa.Table) -> None:
        """Add many rejections at once (a table with :data:`QUARANTINE_SCHEMA`)."""
        if table.num_rows:
            self._tables.append(table.select(QUARANTINE_SCHEMA.names).cast(QUARANTINE_SCHEMA))

    def to_table(self) -> pa.Table:
        """Everything rejected so far, in the order it was rejected per source."""
        rows = pa.Table.from_pydict(self._rows, schema=QUARANTINE_SCHEMA)
        return pa.concat_tables([rows, *self._tables]) if self._tables else rows

    def counts(self) -> Mapping[str, int]:
        """Number of rejected records per rule."""
        counts = Counter(self._rows["rule"])
        for table in self._tables:
            counts.update(table.column("rule").to_pylist())
        return dict(sorted(counts.items()))

    def __len__(self) -> int:
        return len(self._rows["rule"]) + sum(t.num_rows for t in self._tables)
