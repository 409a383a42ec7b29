"""Counters of the ``validate`` stage: what was checked, what was rejected and why, and GX.

:meth:`ValidationSummary.as_dict` is the JSON-serialisable form that :mod:`.report` renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from granvit_pipeline.regions.validation.rules import FILTER_RULES, RULES, first_rule_index


@dataclass
class ExpectationTally:
    """GX results: the raw first chunk, and accepted chunks aggregated per expectation."""

    runner: Any  # .expectations.RegionSuiteRunner
    suite: Any  # gx.ExpectationSuite
    max_rows: int | None
    raw_rows: int
    raw: dict[str, Any] | None = None
    rows_validated: int = 0
    batches: int = 0
    seconds: float = 0.0
    per_expectation: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def create(
        cls, runner: Any, suite: Any, max_rows: int | None, raw_rows: int
    ) -> ExpectationTally:
        """A tally with nothing validated yet."""
        return cls(runner=runner, suite=suite, max_rows=max_rows, raw_rows=raw_rows)

    def wants_more(self) -> bool:
        """Whether the accepted-rows row budget still has room."""
        return self.max_rows is None or self.rows_validated < self.max_rows

    def add(self, result: dict[str, Any]) -> None:
        """Fold one :func:`.expectations.run_region_suite` summary in."""
        self.rows_validated += result["rows"]
        self.batches += 1
        self.seconds += result["seconds"]
        for e in result["expectations"]:
            agg = self.per_expectation.setdefault(
                e["name"],
                {"name": e["name"], "type": e["type"], "success": True, "unexpected_count": 0},
            )
            agg["success"] = agg["success"] and e["success"]
            agg["unexpected_count"] += e["unexpected_count"]

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, with the measured cost per 100k rows."""
        per_100k = self.seconds / self.rows_validated * 1e5 if self.rows_validated else None
        return {
            "enabled": True,
            "max_rows": self.max_rows,
            "rows_validated": self.rows_validated,
            "batches": self.batches,
            "seconds": self.seconds,
            "seconds_per_100k_rows": per_100k,
            "note": "GX checks the accepted rows of whole chunks until max_rows rows were "
            "validated (null: all), as a cross-check of the row rules; raw_first_batch shows "
            "what GX reports on the first raw chunk (up to raw_rows rows).",
            "raw_rows": self.raw_rows,
            "raw_first_batch": self.raw,
            "accepted": list(self.per_expectation.values()),
        }


@dataclass
class ValidationSummary:
    """Counts of one :func:`.runner.find_rejections` run."""

    config: dict[str, Any]
    rows_checked: int = 0
    rejected_by_rule: dict[str, int] = field(default_factory=dict)  # by first (assigned) rule
    rule_hits: dict[str, int] = field(default_factory=dict)  # rows breaking it at all
    images_seen: int = 0  # runs of rows with one image id
    images_rejected: int = 0  # images left without any accepted row
    images_checked: int = 0  # image files opened
    images_failed_checks: int = 0
    expectations: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def empty(cls, config: dict[str, Any]) -> ValidationSummary:
        """Zero counts for every rule."""
        zeros = dict.fromkeys(RULES, 0)
        times = {"row_rules_s": 0.0, "image_checks_s": 0.0, "expectations_s": 0.0}
        return cls(
            config=config, rejected_by_rule=dict(zeros), rule_hits=dict(zeros), timings=times
        )

    @property
    def rows_rejected(self) -> int:
        """Rows in the quarantine."""
        return sum(self.rejected_by_rule.values())

    @property
    def filtered_rows(self) -> int:
        """Rows removed by a paper filter (their first rule is a filter)."""
        return sum(self.rejected_by_rule[r] for r in FILTER_RULES)

    @property
    def error_rows(self) -> int:
        """Rows rejected for data errors (structural or image rules)."""
        return self.rows_rejected - self.filtered_rows

    def rejected_fraction(self, counts_filters: bool | None = None) -> float:
        """Rejected rows / rows checked; filtered rows count if ``counts_filters``."""
        if counts_filters is None:
            counts_filters = bool(self.config.get("rejected_fraction_counts_filters", False))
        rejected = self.rows_rejected if counts_filters else self.error_rows
        return rejected / self.rows_checked if self.rows_checked else 0.0

    def top_rules(self, k: int = 5) -> list[tuple[str, int]]:
        """The ``k`` rules that rejected most rows, most first."""
        ranked = sorted(self.rejected_by_rule.items(), key=lambda kv: (-kv[1], RULES.index(kv[0])))
        return [(rule, n) for rule, n in ranked[:k] if n]

    def add_chunk(self, bits: np.ndarray, run_of_row: np.ndarray, runs: int, failed: int) -> None:
        """Count one chunk's rows (``bits`` as in :mod:`.rules`)."""
        self.rows_checked += len(bits)
        rejected = bits[bits != 0]
        first = np.bincount(first_rule_index(rejected), minlength=len(RULES))
        hits = ((rejected[:, None] >> np.arange(len(RULES), dtype=np.uint32)) & 1).sum(axis=0)
        for i, rule in enumerate(RULES):
            self.rejected_by_rule[rule] += int(first[i])
            self.rule_hits[rule] += int(hits[i])
        accepted = np.bincount(run_of_row[bits == 0], minlength=runs)
        self.images_seen += runs
        self.images_rejected += int((accepted == 0).sum())
        self.images_failed_checks += failed

    def add_times(self, rules: float, images: float, gx: float) -> None:
        """Accumulate per-phase seconds."""
        self.timings["row_rules_s"] += rules
        self.timings["image_checks_s"] += images
        self.timings["expectations_s"] += gx

    def one_line(self) -> str:
        """A log line."""
        return (
            f"{self.rows_checked} rows checked, {self.rows_rejected} rejected "
            f"({self.error_rows} errors, {self.filtered_rows} filtered); top {self.top_rules(3)}"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary, including derived fractions and pass/fail."""
        threshold = float(self.config.get("max_rejected_fraction", 1.0))
        fraction = self.rejected_fraction()
        return {
            "rules_in_priority_order": list(RULES),
            "filter_rules": list(FILTER_RULES),
            "config": self.config,
            "rows_checked": self.rows_checked,
            "rows_rejected": self.rows_rejected,
            "rows_accepted": self.rows_checked - self.rows_rejected,
            "error_rows": self.error_rows,
            "filtered_rows": self.filtered_rows,
            "rejected_by_rule": dict(self.rejected_by_rule),
            "rule_hits": dict(self.rule_hits),
            "filter_removals": {r: self.rejected_by_rule[r] for r in FILTER_RULES},
            "images": {
                "seen": self.images_seen,
                "rejected": self.images_rejected,
                "checked": self.images_checked,
                "failed_checks": self.images_failed_checks,
            },
            "rejected_fraction": fraction,
            "rejected_fraction_counts_filters": bool(
                self.config.get("rejected_fraction_counts_filters", False)
            ),
            "max_rejected_fraction": threshold,
            "passed": fraction <= threshold,
            "expectations": self.expectations,
            "timings": dict(self.timings),
        }
