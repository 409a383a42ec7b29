"""JSON and HTML rendering of the validation summary."""

from __future__ import annotations

import json
from typing import Any

import pytest

from granvit_pipeline.regions.schema import region_batch
from granvit_pipeline.regions.validation import ValidationConfig, find_rejections
from granvit_pipeline.regions.validation.report import render_report_html, render_report_json
from granvit_pipeline.regions.validation.summary import ValidationSummary


def row(rid: str, **kw: Any) -> dict[str, Any]:
    base = {
        "image_id": "demo/1", "source": "demo", "kind": "natural", "width": 640, "height": 480,
        "region_id": f"demo/1#{rid}", "x1": 10.0, "y1": 20.0, "x2": 210.0, "y2": 220.0,
        "text": "a dog", "text_type": "caption", "global_caption": None, "split": "train",
        "image_path": "/data/1.jpg", "iscrowd": False, "text_is_target": True,
    }  # fmt: skip
    return base | kw


@pytest.fixture
def summary() -> ValidationSummary:
    rows = [row("0"), row("1", kind="<script>"), row("2", kind="x"), row("3", x2=60.0, y2=60.0)]
    cfg = ValidationConfig(check_images=False, run_expectations=False, max_rejected_fraction=0.4,
                           image_root="<b>&root</b>")  # fmt: skip
    return find_rejections([region_batch(rows)], cfg).summary


def test_json_report_is_strict_json_with_the_counts(summary: ValidationSummary) -> None:
    report = render_report_json(summary)
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report
    assert (report["rows_checked"], report["rows_rejected"], report["rows_accepted"]) == (4, 3, 1)
    assert report["rejected_by_rule"]["kind_valid"] == 2
    assert report["filter_removals"]["box_area"] == 1
    assert report["rejected_fraction"] == pytest.approx(0.5)
    assert report["max_rejected_fraction"] == 0.4 and report["passed"] is False
    assert report["config"]["min_box_area"] == 10000
    assert report["expectations"] == {"enabled": False}


def test_json_report_from_a_mapping_replaces_non_finite_numbers(summary: ValidationSummary) -> None:
    data = summary.as_dict() | {"timings": {"total_s": float("nan")}}
    assert render_report_json(data)["timings"]["total_s"] is None


def test_html_report_escapes_text_and_shows_counts(summary: ValidationSummary) -> None:
    page = render_report_html(summary)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<b>&root</b>" not in page and "&lt;b&gt;&amp;root&lt;/b&gt;" in page
    assert "<td>kind_valid</td><td>2</td>" in page
    assert "<td>box_area</td><td>1</td>" in page  # filter removals table
    assert "FAIL" in page and "Not run" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_html_report_shows_gx_tables() -> None:
    gx = {
        "enabled": True,
        "max_rows": 10,
        "rows_validated": 3,
        "batches": 1,
        "seconds": 0.5,
        "seconds_per_100k_rows": 1.5,
        "raw_rows": 5,
        "note": "n",
        "raw_first_batch": {
            "expectations": [
                {
                    "name": "in_set(kind)",
                    "type": "t",
                    "success": False,
                    "unexpected_count": 7,
                    "partial_unexpected": ["<x>"],
                }
            ]
        },
        "accepted": [{"name": "x2 > x1", "type": "t", "success": True, "unexpected_count": 0}],
    }
    data = ValidationSummary.empty({"max_rejected_fraction": 0.5}).as_dict() | {"expectations": gx}
    page = render_report_html(data)
    assert "<td>in_set(kind)</td><td>t</td><td>False</td><td>7</td>" in page
    assert "&lt;x&gt;" in page and "x2 &gt; x1" in page
    assert "PASS" in page
