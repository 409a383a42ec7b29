"""Configuration of the ``validate`` stage, validated once at the edge.

:class:`ValidationConfig` holds the thresholds and switches every validation module reads;
:class:`ValidateParams` is ``params:validate``, which picks the demo data's scaled thresholds
when every ingest source is the built-in demo data.
"""

from __future__ import annotations

from typing import Any

import pydantic

from granvit_pipeline.regions.readers.config import IngestParams


class ValidationConfig(pydantic.BaseModel, extra="forbid"):
    """Thresholds and switches of the ``validate`` stage (paper values by default).

    A filter is switched off alone by a neutral threshold (``min_image_short_side: 0``,
    ``min_box_area: 0``, aspect ratios ``0`` and ``.inf``, ``min_boxes_per_image: 0``), or all
    of them with ``filters_enabled: false``.
    """

    min_image_short_side: float = 448  # paper: short side > 448 px (strict)
    min_aspect_ratio: float = 1 / 3  # image and box width/height within [min, max] (inclusive)
    max_aspect_ratio: float = 3.0
    min_box_area: float = 100**2  # paper: box area > 100^2 px (strict)
    min_boxes_per_image: int = pydantic.Field(1, ge=0)  # else all the image's rows go
    filters_enabled: bool = True  # all five paper filters at once
    max_text_chars: int = pydantic.Field(200, ge=1)
    max_rejected_fraction: float = pydantic.Field(0.5, ge=0, le=1)  # run fails above this
    # False: the fraction counts data errors only (structural + image rules), since the paper
    # filters remove most of e.g. COCO's boxes by design; True: filtered rows count too.
    rejected_fraction_counts_filters: bool = False
    max_image_pixels: int = pydantic.Field(89_478_485, ge=1)  # bomb guard (Pillow's default)
    check_images: bool = True
    image_check_workers: int = pydantic.Field(2, ge=1)
    image_root: str | None = None  # relative image_path values are resolved against it
    run_expectations: bool = True
    # GX is slow next to the row rules, so the accepted-rows contract check runs on whole
    # chunks until this many rows were validated (None: every chunk).
    expectations_max_rows: int | None = pydantic.Field(200_000, ge=0)
    expectations_raw_rows: int = pydantic.Field(100_000, ge=0)  # raw rows GX reports on


class ValidateParams(pydantic.BaseModel, extra="forbid"):
    """``params:validate``: the paper's thresholds, and the scaled ones for the demo data."""

    checks: ValidationConfig = pydantic.Field(default_factory=ValidationConfig)
    # Keys of ``checks`` replaced when every ingest source is the demo data.
    demo_overrides: dict[str, Any] = pydantic.Field(default_factory=dict)

    def config_for(self, ingest: IngestParams) -> ValidationConfig:
        """``checks``, with ``demo_overrides`` applied when every ingest source is the demo."""
        sources = ingest.resolved_sources()
        if self.demo_overrides and all(s.format == "demo" for s in sources):
            return ValidationConfig(**{**self.checks.model_dump(), **self.demo_overrides})
        return self.checks
