"""Configuration of the ingest stage's sources (validated once, at the edge).

:class:`SourceConfig` is one dataset in a standard format; :class:`IngestParams` is
``params:ingest``: one source or a list of them, the built-in demo data among them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pydantic

from granvit_pipeline.regions.demo.config import DemoConfig

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


class DemoSource(pydantic.BaseModel, extra="forbid"):
    """The built-in demo data as a source (``format: demo``; see :class:`IngestParams`)."""

    format: Literal["demo"] = "demo"


class IngestParams(pydantic.BaseModel, extra="forbid"):
    """``params:ingest``. Either one source (``format``/``annotations``/``images``/...; handy on
    the command line) or a list of ``sources`` (a conf environment); ``format: demo`` is the
    built-in generated data."""

    format: Literal["demo", "coco", "vg", "icdar", "refcoco", "jsonl"] = "demo"
    annotations: Path | None = None
    images: Path | None = None
    captions: Path | None = None
    source: str | None = None
    sources: list[DemoSource | SourceConfig] = pydantic.Field(default_factory=list)
    split_fractions: dict[Literal["train", "val", "test"], float]
    batch_size: int = pydantic.Field(65536, gt=0)
    demo_dir: Path
    demo: DemoConfig = pydantic.Field(default_factory=DemoConfig)

    def resolved_sources(self) -> list[DemoSource | SourceConfig]:
        if self.sources:
            return list(self.sources)
        if self.format == "demo":
            return [DemoSource()]
        missing = [k for k in ("annotations", "images") if getattr(self, k) is None]
        if missing:
            raise ValueError(
                f"ingest.format={self.format} needs ingest.{' and ingest.'.join(missing)}"
            )
        return [
            SourceConfig(
                format=self.format,
                annotations=self.annotations,
                images=self.images,
                captions=self.captions,
                source=self.source,
            )
        ]

    def uses_demo(self) -> bool:
        return any(isinstance(s, DemoSource) for s in self.resolved_sources())
