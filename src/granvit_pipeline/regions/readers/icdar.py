"""ICDAR 2013 / 2015 ground-truth text files -> OCR region rows.

Input: ``annotations`` is a directory of ``gt_<stem>.txt`` files (sorted by name; other files
are ignored) or a single such file; each is streamed line by line. Line forms (a UTF-8 BOM at
the start of a file is removed):

- ICDAR 2015: ``x1,y1,x2,y2,x3,y3,x4,y4,transcription`` -- a quadrilateral, converted to its
  enclosing axis-aligned box with :func:`~granvit_pipeline.regions.boxes.quad_to_xyxy`; the
  transcription is everything after the 8th comma (it may contain commas).
- ICDAR 2013: ``x1 y1 x2 y2 "text"`` or ``x1, y1, x2, y2, "text"`` -- already xyxy, passed
  through (not reordered or clipped). The text must be in double quotes, which are removed;
  ``\\"`` and ``\\\\`` inside are unescaped.

``###`` marks unreadable text: the region is kept with text ``###`` and ``text_is_target``
False. Image location: the first of ``<images>/<stem>`` + ``.jpg``, ``.png``, ``.jpeg``,
``.JPG``, ``.PNG``, ``.JPEG`` that exists. The format has no image size, so it is read from
the image header (no decode); a missing or unreadable image sends the file's regions to the
quarantine (``image_missing`` / ``image_unreadable``).

Output: ``kind`` and ``text_type`` ``ocr``, ``global_caption`` null, ``image_id`` =
``<source>/<stem>``, ``region_id`` = ``<image_id>#<line number>`` (1-based, BOM line included).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa

from granvit_pipeline.regions.boxes import quad_to_xyxy
from granvit_pipeline.regions.quarantine import DataError, Quarantine
from granvit_pipeline.regions.readers._io import (
    ImageProblem,
    Rejector,
    image_file_meta,
    iter_lines,
)
from granvit_pipeline.regions.readers._rows import (
    DEFAULT_BATCH_SIZE,
    RegionList,
    RowBatcher,
)
from granvit_pipeline.regions.readers.config import SourceConfig
from granvit_pipeline.regions.schema import DEFAULT_SPLIT_FRACTIONS

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG")
UNREADABLE = "###"

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(rf"\s*{_NUMBER}\s*")
_ICDAR2013_SPACE = re.compile(
    rf'\s*({_NUMBER})\s+({_NUMBER})\s+({_NUMBER})\s+({_NUMBER})\s+"(.*)"\s*'
)
_ICDAR2013_COMMA = re.compile(
    rf'\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*"(.*)"\s*'
)
_ESCAPE = re.compile(r"\\([\"\\])")


def parse_line(line: str) -> tuple[list[float], str] | None:
    """``(xyxy box, text)`` of one ground-truth line, or None if it is neither ICDAR form."""
    parts = line.split(",", 8)
    if len(parts) == 9 and all(_NUMBER_RE.fullmatch(p) for p in parts[:8]):
        quad = [float(p) for p in parts[:8]]
        return quad_to_xyxy(quad).tolist(), parts[8]
    match = _ICDAR2013_COMMA.fullmatch(line) or _ICDAR2013_SPACE.fullmatch(line)
    if match is None:
        return None
    return [float(match.group(i)) for i in range(1, 5)], _ESCAPE.sub(r"\1", match.group(5))


def read_icdar(
    cfg: SourceConfig,
    quarantine: Quarantine,
    *,
    split_fractions: Mapping[str, float] = DEFAULT_SPLIT_FRACTIONS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[pa.RecordBatch]:
    """Yield :data:`REGION_SCHEMA` batches for ICDAR ground truth (see the module doc).

    Quarantine rules: ``bad_line``, ``not_utf8``, ``image_missing``, ``image_unreadable``.
    """
    source = cfg.source_name
    batcher = RowBatcher(batch_size)
    files = gt_files(cfg.annotations)
    for gt_file in files:
        reject = Rejector(quarantine, gt_file)
        stem = gt_file.stem.removeprefix("gt_")
        image_id = f"{source}/{stem}"
        regions = _read_regions(gt_file, image_id, reject)
        if not regions:
            continue
        try:
            image_path = locate_image(cfg.images, stem)
            meta = image_file_meta(image_id, source, "ocr", image_path, split_fractions)
        except ImageProblem as problem:
            reject.regions(regions, problem.rule, problem.reason, image_id=image_id)
            continue
        yield from batcher.add(meta, regions, regions.box_array())
    yield from batcher.finish()
    logger.info(
        "icdar %s: %d rows from %d images (%d ground-truth files)",
        cfg.annotations,
        batcher.rows,
        batcher.images,
        len(files),
    )


def gt_files(annotations: Path) -> list[Path]:
    """The ``gt_*.txt`` files of a directory (sorted), or ``[annotations]`` for a file."""
    if annotations.is_file():
        return [annotations]
    if not annotations.is_dir():
        raise DataError(
            str(annotations), "path", "missing_file", "annotations file or directory does not exist"
        )
    files = sorted(p for p in annotations.glob("gt_*.txt") if p.is_file())
    if not files:
        raise DataError(str(annotations), "directory", "no_files", "no gt_*.txt files in it")
    return files


def locate_image(images: Path, stem: str) -> Path:
    """The first existing ``images/<stem><suffix>`` over :data:`IMAGE_SUFFIXES`."""
    for suffix in IMAGE_SUFFIXES:
        candidate = images / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    tried = ", ".join(f"{stem}{suffix}" for suffix in IMAGE_SUFFIXES)
    raise ImageProblem("image_missing", f"no image for {stem!r} in {images} (tried {tried})")


def _read_regions(gt_file: Path, image_id: str, reject: Rejector) -> RegionList:
    """The parsable lines of one ground-truth file; the others are quarantined."""
    regions = RegionList()
    for lineno, line in iter_lines(gt_file, reject):
        record = f"line {lineno}"
        parsed = parse_line(line)
        if parsed is None:
            reason = (
                "line is neither 'x1,y1,...,x4,y4,text' (2015) nor 'x1 y1 x2 y2 \"text\"' (2013)"
            )
            reject(record, "bad_line", reason, payload=line, image_id=image_id)
            continue
        box, text = parsed
        regions.add(
            record,
            f"{image_id}#{lineno}",
            box,
            text,
            "ocr",
            text_is_target=text != UNREADABLE,
            payload=line,
        )
    return regions
