"""The ``validate`` stage report: a JSON-serialisable dict and a self-contained HTML page.

Pure functions of the summary (no I/O): the pipeline node decides where they are written.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from granvit_pipeline.regions.validation.summary import ValidationSummary

_CSS = (
    "body{font-family:sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{border:1px solid #bbb;padding:.25em .6em;text-align:left;vertical-align:top}"
    "th{background:#eee}.fail{color:#a00;font-weight:bold}.pass{color:#070;font-weight:bold}"
)


def _plain(value: Any) -> Any:
    """Make ``value`` strictly JSON-serialisable (NaN/inf -> None, tuples -> lists)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def render_report_json(summary: ValidationSummary | Mapping[str, Any]) -> dict[str, Any]:
    """The report as a dict that ``json.dumps(..., allow_nan=False)`` accepts.

    Keys: ``passed``, ``rejected_fraction``, ``max_rejected_fraction``, row and image counts,
    ``rejected_by_rule`` (first broken rule, priority order), ``rule_hits`` (rows breaking each
    rule at all), ``filter_removals``, ``expectations`` (GX), ``timings`` and ``config``.
    """
    data = summary.as_dict() if isinstance(summary, ValidationSummary) else dict(summary)
    report = _plain(data)
    json.dumps(report, allow_nan=False)  # fail here, not in the writer
    return report


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping | list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def _gx_rows(result: Mapping[str, Any] | None) -> list[list[Any]]:
    if not result:
        return []
    return [
        [e["name"], e["type"], e["success"], e["unexpected_count"], e.get("partial_unexpected")]
        for e in result.get("expectations", [])
    ]


def _gx_sections(gx: Mapping[str, Any]) -> list[str]:
    if not gx.get("enabled"):
        return ["<h2>Great Expectations</h2><p>Not run (run_expectations is false).</p>"]
    facts = [
        [k, gx.get(k)]
        for k in (
            "max_rows",
            "rows_validated",
            "batches",
            "seconds",
            "seconds_per_100k_rows",
            "raw_rows",
            "note",
        )
    ]
    accepted = [
        [e["name"], e["type"], e["success"], e["unexpected_count"], ""]
        for e in gx.get("accepted", [])
    ]
    cols = ["expectation", "type", "success", "unexpected", "sample"]
    return [
        "<h2>Great Expectations</h2>",
        _table(["item", "value"], facts),
        "<h3>Raw input, first chunk (what GX sees in unvalidated data)</h3>",
        _table(cols, _gx_rows(gx.get("raw_first_batch"))),
        "<h3>Accepted rows (contract check: must all pass)</h3>",
        _table(cols, accepted),
    ]


def render_report_html(summary: ValidationSummary | Mapping[str, Any]) -> str:
    """A self-contained HTML page (inline CSS, no external assets, all text escaped)."""
    r = render_report_json(summary)
    verdict = "pass" if r["passed"] else "fail"
    overview = [
        ["result", verdict.upper()],
        ["rows checked", r["rows_checked"]],
        ["rows accepted", r["rows_accepted"]],
        ["rows rejected", r["rows_rejected"]],
        ["rows with data errors", r["error_rows"]],
        ["rows removed by filters", r["filtered_rows"]],
        ["rejected fraction", r["rejected_fraction"]],
        ["counts filtered rows", r["rejected_fraction_counts_filters"]],
        ["max rejected fraction", r["max_rejected_fraction"]],
    ]
    rules = [
        [i + 1, rule, r["rejected_by_rule"].get(rule, 0), r["rule_hits"].get(rule, 0)]
        for i, rule in enumerate(r["rules_in_priority_order"])
    ]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Region validation report</title>",
        f"<style>{_CSS}</style></head><body><h1>Region validation report</h1>",
        f"<p class='{verdict}'>{verdict.upper()}</p>",
        "<h2>Overview</h2>",
        _table(["item", "value"], overview),
        "<h2>Rules (priority order)</h2>",
        _table(["#", "rule", "rows rejected (first rule)", "rows breaking it"], rules),
        "<h2>Paper filters</h2>",
        _table(["filter", "rows removed"], list(r["filter_removals"].items())),
        "<h2>Images</h2>",
        _table(["item", "count"], list(r["images"].items())),
        *_gx_sections(r.get("expectations") or {}),
        "<h2>Timings (s)</h2>",
        _table(["phase", "seconds"], list(r["timings"].items())),
        "<h2>Configuration</h2>",
        _table(["key", "value"], list(r["config"].items())),
        "</body></html>",
    ]
    return "\n".join(parts)
