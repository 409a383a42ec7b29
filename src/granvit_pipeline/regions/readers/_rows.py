"""Building region rows: record checks, per-image region lists, fixed-size record batches.

Readers hand over one image at a time (its metadata plus all its regions), so the rows of an
image are contiguous in the output by construction; batches are cut every ``batch_size`` rows,
which may split an image across two consecutive batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from granvit_pipeline.regions.schema import REGION_SCHEMA

DEFAULT_BATCH_SIZE = 65536
_INT32_MAX = 2**31 - 1


class RecordProblem(Exception):
    """One record that cannot be mapped: ``rule`` is the quarantine rule name."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule, self.reason = rule, reason


def is_number(value: object) -> bool:
    """A JSON number (``bool`` is not one, although Python says it is an ``int``)."""
    cls = value.__class__
    return cls is float or cls is int or (cls is not bool and isinstance(value, (int, float)))


def check_box(value: object, key: str = "bbox") -> Sequence[float]:
    """Return ``value`` if it is a list of 4 numbers, else raise ``RecordProblem('bad_bbox')``.

    Only the shape and types are checked: NaN, negative sizes or boxes outside the image pass
    through unchanged for validation to reject.
    """
    if not isinstance(value, (list, tuple)) or len(value) != 4 or not all(map(is_number, value)):
        raise RecordProblem("bad_bbox", f"{key!r} must be a list of 4 numbers, got {value!r:.80}")
    return value


def get_key(record: Mapping[str, Any], key: str, types: type | tuple[type, ...]) -> Any:
    """``record[key]`` if present with one of ``types``, else ``RecordProblem('bad_record')``."""
    try:
        value = record[key]
    except KeyError:
        raise RecordProblem("bad_record", f"missing required key {key!r}") from None
    if not isinstance(value, types) or (value.__class__ is bool and bool not in _as_tuple(types)):
        names = "/".join(t.__name__ for t in _as_tuple(types))
        raise RecordProblem("bad_record", f"key {key!r} must be {names}, got {value!r:.80}")
    return value


def get_id(record: Mapping[str, Any], key: str) -> int | str:
    """An id field: a JSON integer or string."""
    return get_key(record, key, (int, str))


def get_size(record: Mapping[str, Any], key: str) -> int:
    """An image width/height: an integer (or integral float) that fits ``int32``."""
    value = get_key(record, key, (int, float))
    if (isinstance(value, float) and not value.is_integer()) or abs(value) > _INT32_MAX:
        raise RecordProblem("bad_record", f"key {key!r} must be an int32 integer, got {value!r}")
    return int(value)


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


@dataclass(frozen=True)
class ImageMeta:
    """Image-level columns of the region table (repeated on every region row of the image)."""

    image_id: str
    source: str
    kind: str
    width: int
    height: int
    image_path: str
    split: str
    global_caption: str | None = None


@dataclass
class RegionList:
    """The regions of one image, boxes still in the source's format (see ``box_array``)."""

    region_ids: list[str] = field(default_factory=list)
    boxes: list[Sequence[float]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    text_types: list[str] = field(default_factory=list)
    iscrowd: list[bool] = field(default_factory=list)
    text_is_target: list[bool] = field(default_factory=list)
    payloads: list[Any] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set, repr=False)

    def add(
        self,
        record: str,
        region_id: str,
        box: Sequence[float],
        text: str,
        text_type: str,
        *,
        iscrowd: bool = False,
        text_is_target: bool = True,
        payload: Any = None,
    ) -> bool:
        """Append one region; ``False`` (nothing added) if ``region_id`` is already here."""
        if region_id in self._seen:
            return False
        self._seen.add(region_id)
        self.records.append(record)
        self.region_ids.append(region_id)
        self.boxes.append(box)
        self.texts.append(text)
        self.text_types.append(text_type)
        self.iscrowd.append(iscrowd)
        self.text_is_target.append(text_is_target)
        self.payloads.append(payload)
        return True

    def box_array(self) -> npt.NDArray[np.float64]:
        """The boxes as an ``(n, 4)`` float64 array, in the source's format (xywh, xyxy, ...)."""
        return np.asarray(self.boxes, dtype=np.float64).reshape(len(self.boxes), 4)

    def __len__(self) -> int:
        return len(self.region_ids)


_IMAGE_COLUMNS = ("image_id", "source", "kind", "width", "height", "global_caption", "split")
_REGION_COLUMNS = ("region_id", "text", "text_type", "iscrowd", "text_is_target")
_BOX_COLUMNS = ("x1", "y1", "x2", "y2")


class RowBatcher:
    """Accumulates whole images and emits :data:`REGION_SCHEMA` batches of ``batch_size`` rows."""

    def __init__(self, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.images = 0
        self.rows = 0
        self._columns: dict[str, list[Any]] = {
            name: [] for name in (*_IMAGE_COLUMNS, *_REGION_COLUMNS, "image_path")
        }
        self._boxes: list[npt.NDArray[np.float32]] = []
        self._pending = 0

    def add(
        self, meta: ImageMeta, regions: RegionList, xyxy: npt.ArrayLike
    ) -> Iterator[pa.RecordBatch]:
        """Add one image with its regions and absolute-pixel ``(n, 4)`` xyxy boxes.

        Yields every batch that became full. An image with no regions adds nothing.
        """
        n = len(regions)
        if n == 0:
            return
        boxes = np.asarray(xyxy, dtype=np.float32).reshape(n, 4)
        cols = self._columns
        for name in _IMAGE_COLUMNS:
            cols[name].extend([getattr(meta, name)] * n)
        cols["image_path"].extend([meta.image_path] * n)
        cols["region_id"].extend(regions.region_ids)
        cols["text"].extend(regions.texts)
        cols["text_type"].extend(regions.text_types)
        cols["iscrowd"].extend(regions.iscrowd)
        cols["text_is_target"].extend(regions.text_is_target)
        self._boxes.append(boxes)
        self._pending += n
        self.images += 1
        while self._pending >= self.batch_size:
            yield self._take(self.batch_size)

    def finish(self) -> Iterator[pa.RecordBatch]:
        """Yield the last, partial batch (if any rows are left)."""
        if self._pending:
            yield self._take(self._pending)

    def _take(self, count: int) -> pa.RecordBatch:
        boxes = np.concatenate(self._boxes) if len(self._boxes) > 1 else self._boxes[0]
        self._boxes = [boxes[count:]] if count < len(boxes) else []
        arrays: dict[str, pa.Array] = {
            name: pa.array(boxes[:count, i], type=pa.float32())
            for i, name in enumerate(_BOX_COLUMNS)
        }
        for name, values in self._columns.items():
            arrays[name] = pa.array(values[:count], type=REGION_SCHEMA.field(name).type)
            del values[:count]
        self._pending -= count
        self.rows += count
        return pa.RecordBatch.from_arrays(
            [arrays[name] for name in REGION_SCHEMA.names], schema=REGION_SCHEMA
        )
