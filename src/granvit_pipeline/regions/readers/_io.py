"""File access shared by the readers: whole-JSON loading, line streaming, image headers.

Fatal problems (missing file, not UTF-8, not JSON) raise :class:`DataError` naming the file and
the position; per-record problems go to the :class:`Quarantine` through a :class:`Rejector`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from granvit_pipeline.regions.quarantine import DataError, Quarantine
from granvit_pipeline.regions.readers._rows import ImageMeta, RegionList
from granvit_pipeline.regions.schema import assign_split

logger = logging.getLogger(__name__)

STAGE = "ingest"
_BOM = "\ufeff"


class Rejector:
    """Adds ``ingest`` rejections for one input file to a :class:`Quarantine`.

    The message repeats file, record and rule (``"<file>: <record>: [<rule>] <reason>"``, the
    same shape as :class:`DataError`) so that it reads on its own in a log or a report.
    """

    def __init__(self, quarantine: Quarantine, file: str | Path) -> None:
        self.quarantine = quarantine
        self.file = str(file)

    def __call__(
        self,
        record: str,
        rule: str,
        reason: str,
        *,
        payload: Any = None,
        image_id: str | None = None,
        region_id: str | None = None,
    ) -> None:
        """Quarantine one record of this file under ``rule``."""
        self.quarantine.reject(
            stage=STAGE,
            file=self.file,
            record=record,
            rule=rule,
            message=f"{self.file}: {record}: [{rule}] {reason}",
            image_id=image_id,
            region_id=region_id,
            payload=payload,
        )

    def regions(self, regions: RegionList, rule: str, reason: str, *, image_id: str) -> None:
        """Quarantine every region of ``regions`` (e.g. when their image cannot be read)."""
        for record, region_id, payload in zip(
            regions.records, regions.region_ids, regions.payloads, strict=True
        ):
            self(record, rule, reason, payload=payload, image_id=image_id, region_id=region_id)


def require_file(path: Path, what: str = "annotations file") -> None:
    """Raise :class:`DataError` (rule ``missing_file``) unless ``path`` is an existing file."""
    if not path.is_file():
        raise DataError(str(path), "file", "missing_file", f"{what} does not exist")


def load_json(path: Path, what: str = "annotations file") -> Any:
    """Load a whole JSON file (optional UTF-8 BOM); the caller holds the parsed document.

    Raises :class:`DataError`: ``missing_file``; ``not_utf8`` with the byte offset;
    ``bad_json`` with line and column from :class:`json.JSONDecodeError`. ``NaN``/``Infinity``
    literals are accepted (validation rejects such boxes later).
    """
    require_file(path, what)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            str(path), f"byte {err.start}", "not_utf8", f"file is not valid UTF-8 ({err.reason})"
        ) from None
    del data  # keep only one copy of a large file in memory while parsing
    try:
        return json.loads(text.removeprefix(_BOM))
    except json.JSONDecodeError as err:
        raise DataError(
            str(path),
            f"line {err.lineno} column {err.colno}",
            "bad_json",
            f"file is not valid JSON: {err.msg}",
        ) from None


def iter_lines(path: Path, reject: Rejector) -> Iterator[tuple[int, str]]:
    """Stream the non-blank lines of a text file as ``(1-based line number, text)``.

    The file is read in binary and each line decoded on its own, so one bad line costs one
    record: a line that is not UTF-8 is quarantined (rule ``not_utf8``) and skipped. A UTF-8
    BOM at the start of the file and the line ending (``\\n`` or ``\\r\\n``) are removed.
    """
    require_file(path)
    offset = 0
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                reject(
                    f"line {lineno}",
                    "not_utf8",
                    f"line is not valid UTF-8 (file byte {start + err.start}: {err.reason})",
                    payload=raw.decode("utf-8", errors="replace"),
                )
                continue
            if lineno == 1:
                line = line.removeprefix(_BOM)
            line = line.rstrip("\r\n")
            if line.strip():
                yield lineno, line


class ImageProblem(Exception):
    """An image file that cannot give its size: ``rule`` is the quarantine rule name."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule, self.reason = rule, reason


def read_image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the image header only (PIL opens lazily; nothing is decoded).

    The size is the stored one; EXIF orientation is not applied. Raises :class:`ImageProblem`
    with rule ``image_missing`` or ``image_unreadable``.
    """
    if not path.is_file():
        raise ImageProblem("image_missing", f"image file {path} does not exist")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageProblem(
            "image_unreadable", f"cannot read image header of {path}: {err}"
        ) from None
    return int(width), int(height)


def image_file_meta(
    image_id: str, source: str, kind: str, path: Path, split_fractions: Mapping[str, float]
) -> ImageMeta:
    """Image-level columns of an image file on disk: size from its header, split from its id.

    For formats whose annotations do not state the image size (ICDAR, Visual Genome). Raises
    :class:`ImageProblem` as :func:`read_image_size` does.
    """
    width, height = read_image_size(path)
    return ImageMeta(
        image_id=image_id,
        source=source,
        kind=kind,
        width=width,
        height=height,
        image_path=str(path),
        split=assign_split(image_id, split_fractions),
    )
