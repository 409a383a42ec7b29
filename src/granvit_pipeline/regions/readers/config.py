"""Configuration of one input source (validated once, at the edge)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pydantic

Format = Literal["coco", "vg", "icdar", "refcoco", "jsonl"]


class SourceConfig(pydantic.BaseModel, extra="forbid"):
    """Where one dataset lives and in which format (a YAML typo is an error, not ignored).

    ``annotations`` is the JSON/JSONL file, or for ``icdar`` a directory of ``gt_*.txt`` files
    (or a single such file). ``images`` is the directory the image file names are relative to.
    ``captions`` (``coco`` only) is a COCO captions JSON that supplies ``global_caption``.
    ``source`` names the dataset and prefixes every id (default: the format name); it must not
    contain ``/`` or ``#``, which separate the parts of ``image_id`` and ``region_id``.
    """

    format: Format
    annotations: Path
    images: Path
    captions: Path | None = None
    source: str | None = None

    @pydantic.field_validator("source")
    @classmethod
    def _source_is_plain_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or "#" in value):
            raise ValueError(f"source must be a non-empty name without '/' or '#', got {value!r}")
        return value

    @pydantic.model_validator(mode="after")
    def _captions_only_for_coco(self) -> SourceConfig:
        if self.captions is not None and self.format != "coco":
            raise ValueError(f"captions is only read for format 'coco', not {self.format!r}")
        return self

    @property
    def source_name(self) -> str:
        """The dataset name used in ids: ``source`` if given, else the format name."""
        return self.source if self.source is not None else self.format
