"""The ``validate`` stage: row rules, the paper's filters, image checks and a GX cross-check.

- ``config``: :class:`ValidationConfig` (thresholds, switches) and ``params:validate``.
- ``runner``: the two streaming passes, :func:`find_rejections` and :func:`drop_rejected`.
- ``rules``, ``ids``, ``messages``: the vectorised row rules, ``region_id_unique`` and the
  quarantine messages; ``summary``: the counters; ``report``: JSON and HTML of the summary.
- ``expectations``: the Great Expectations suite. Not imported here: GX takes seconds to
  import, and runs without it (``run_expectations: false``) should not pay for it.
"""

from granvit_pipeline.regions.validation.config import ValidateParams, ValidationConfig
from granvit_pipeline.regions.validation.report import render_report_html, render_report_json
from granvit_pipeline.regions.validation.rules import FILTER_RULES, RULES, STRUCTURAL_RULES
from granvit_pipeline.regions.validation.runner import (
    ValidationContractError,
    ValidationResult,
    check_rejected_fraction,
    drop_rejected,
    find_rejections,
)
from granvit_pipeline.regions.validation.summary import ValidationSummary

__all__ = [
    "FILTER_RULES",
    "RULES",
    "STRUCTURAL_RULES",
    "ValidateParams",
    "ValidationConfig",
    "ValidationContractError",
    "ValidationResult",
    "ValidationSummary",
    "check_rejected_fraction",
    "drop_rejected",
    "find_rejections",
    "render_report_html",
    "render_report_json",
]
