"""The Great Expectations suite: passes on good data, names the right expectation on bad."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from granvit_pipeline.regions.schema import REGION_SCHEMA, region_batch
from granvit_pipeline.regions.validation import ValidationConfig
from granvit_pipeline.regions.validation.expectations import (
    RegionSuiteRunner,
    build_region_suite,
    failed_expectations,
    run_region_suite,
)

CFG = ValidationConfig()


def row(rid: str = "0", **kw: Any) -> dict[str, Any]:
    base = {
        "image_id": "demo/1", "source": "demo", "kind": "natural", "width": 640, "height": 480,
        "region_id": f"demo/1#{rid}", "x1": 10.0, "y1": 20.0, "x2": 210.0, "y2": 220.0,
        "text": "a dog", "text_type": "caption", "global_caption": None, "split": "train",
        "image_path": "/data/1.jpg", "iscrowd": False, "text_is_target": True,
    }  # fmt: skip
    return base | kw


@pytest.fixture(scope="module")
def runner() -> RegionSuiteRunner:
    return RegionSuiteRunner()


@pytest.fixture(scope="module")
def suite() -> Any:
    return build_region_suite(CFG)


def test_suite_is_built_from_the_schema_and_config(suite: Any) -> None:
    names = [e.meta["name"] for e in suite.expectations]
    non_nullable = [f.name for f in REGION_SCHEMA if not f.nullable]
    assert {f"not_null({c})" for c in non_nullable} <= set(names)
    assert "not_null(global_caption)" not in names
    for name in (
        "columns",
        "x2 > x1",
        "y2 > y1",
        "x2 <= width",
        "y2 <= height",
        "finite_in_range(x1)",
        "text_length(1..max_text_chars)",
        "unique(region_id)",
        "in_set(kind)",
        "in_set(text_type)",
        "in_set(split)",
        "size_above(width, 448)",
    ):
        assert name in names  # fmt: skip
    lengths = next(e for e in suite.expectations if e.meta["name"].startswith("text_length"))
    assert lengths.max_value == CFG.max_text_chars
    unfiltered = build_region_suite(CFG.model_copy(update={"filters_enabled": False}))
    assert "size_above(width, 0)" in [e.meta["name"] for e in unfiltered.expectations]


def test_good_data_passes(runner: RegionSuiteRunner, suite: Any) -> None:
    batch = region_batch([row("0"), row("1", kind="ocr", text="###", text_type="ocr")])
    result = run_region_suite(batch, suite, runner)
    assert result["success"], failed_expectations(result)
    assert result["rows"] == 2
    assert all(e["unexpected_count"] == 0 for e in result["expectations"])


def test_bad_data_fails_with_the_right_expectations(runner: RegionSuiteRunner, suite: Any) -> None:
    rows = [
        row("0"),
        row("1", x2=float("nan")),
        row("2", y2=float("inf"), height=300),
        row("3", x1=300.0, x2=100.0),
        row("4", x2=700.0),
        row("5", text=""),
        row("6", text="   "),
        row("7", kind="photo", split="dev"),
        row("0", text_type="label"),
    ]
    result = run_region_suite(region_batch(rows), suite, runner)
    by_name = {e["name"]: e for e in result["expectations"]}
    assert not result["success"]
    expected = {
        # pair expectations count the NaN row too (only rows with both values missing skip)
        "not_null(x2)": 1, "finite_in_range(y2)": 1, "x2 > x1": 2, "x2 <= width": 2,
        "y2 <= height": 1, "text_length(1..max_text_chars)": 1, "text_not_blank": 2,
        "in_set(kind)": 1, "in_set(split)": 1, "in_set(text_type)": 1, "unique(region_id)": 2,
        "size_above(height, 448)": 1,
    }  # fmt: skip
    assert set(failed_expectations(result)) == set(expected)
    for name, count in expected.items():
        assert by_name[name]["unexpected_count"] == count, name


def test_column_mismatch_and_nulls(runner: RegionSuiteRunner, suite: Any) -> None:
    table = pa.Table.from_batches([region_batch([row("0"), row("1")])])
    text = pa.array(["a", None], pa.string())
    table = table.set_column(table.schema.get_field_index("text"), "text", text)
    result = run_region_suite(table.drop_columns(["iscrowd"]), suite, runner)
    failed = failed_expectations(result)
    assert "columns" in failed and "not_null(text)" in failed
    # text length/regex skip the null: only not_null catches it
    assert "text_length(1..max_text_chars)" not in failed


def test_run_region_suite_accepts_pandas_and_creates_its_own_context(suite: Any) -> None:
    df = region_batch([row("0")]).to_pandas()
    assert run_region_suite(df, suite)["success"]
