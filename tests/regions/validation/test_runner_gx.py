"""``find_rejections`` with Great Expectations: raw report, contract check, row budget."""

from __future__ import annotations

from typing import Any

import great_expectations as gx
import pytest

from granvit_pipeline.regions.schema import region_batch
from granvit_pipeline.regions.validation import (
    ValidationConfig,
    ValidationContractError,
    find_rejections,
)
from granvit_pipeline.regions.validation.expectations import build_region_suite

CFG = ValidationConfig(check_images=False)


def row(img: str = "demo/1", rid: str = "0", **kw: Any) -> dict[str, Any]:
    base = {
        "image_id": img, "source": "demo", "kind": "natural", "width": 640, "height": 480,
        "region_id": f"{img}#{rid}", "x1": 10.0, "y1": 20.0, "x2": 210.0, "y2": 220.0,
        "text": "a dog", "text_type": "caption", "global_caption": None, "split": "train",
        "image_path": f"/data/{img}.jpg", "iscrowd": False, "text_is_target": True,
    }  # fmt: skip
    return base | kw


@pytest.mark.slow
def test_gx_reports_raw_failures_and_accepts_what_the_rules_accept() -> None:
    first = region_batch([row(rid="0"), row(rid="1", kind="photo"), row(rid="2", x2=60.0, y2=60.0)])
    second = region_batch([row("demo/2", "0"), row("demo/2", "1", text="")])
    result = find_rejections([first, second], CFG.model_copy(update={"expectations_max_rows": 2}))
    gx_summary = result.summary.expectations
    raw = {e["name"]: e for e in gx_summary["raw_first_batch"]["expectations"]}
    assert raw["in_set(kind)"]["unexpected_count"] == 1 and not raw["in_set(kind)"]["success"]
    assert raw["x2 > x1"]["success"]  # the too-small box is a filter, not a GX failure
    # Accepted rows of the first chunk (demo/1: 1 row) and the second (demo/2: 1 row) are
    # validated; the budget of 2 rows is then spent.
    assert gx_summary["rows_validated"] == 2 and gx_summary["batches"] == 2
    assert all(e["success"] for e in gx_summary["accepted"])
    assert gx_summary["seconds_per_100k_rows"] > 0


def test_gx_row_budget_stops_the_contract_check() -> None:
    batches = [region_batch([row(f"demo/{i}", "0")]) for i in range(4)]
    cfg = CFG.model_copy(update={"expectations_max_rows": 1, "expectations_raw_rows": 0})
    summary = find_rejections(batches, cfg).summary.expectations
    assert (summary["rows_validated"], summary["batches"]) == (1, 1)
    assert summary["raw_first_batch"] is None


@pytest.mark.slow
def test_contract_error_names_the_expectation_the_rules_do_not_enforce() -> None:
    base = build_region_suite(CFG)
    extra = gx.expectations.ExpectColumnValuesToBeInSet(
        column="text_type", value_set=["category"], meta={"name": "only_categories"}
    )
    suite = gx.ExpectationSuite(name="stricter", expectations=[*base.expectations, extra])
    with pytest.raises(ValidationContractError, match="only_categories"):
        find_rejections([region_batch([row()])], CFG, suite=suite)
