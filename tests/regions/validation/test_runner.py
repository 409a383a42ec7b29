"""Row rules, priority order, streaming passes and the rejected-fraction gate of ``validate``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pydantic
import pytest

from granvit_pipeline.regions.quarantine import QUARANTINE_SCHEMA, DataError
from granvit_pipeline.regions.schema import REGION_SCHEMA, region_batch
from granvit_pipeline.regions.validation import (
    FILTER_RULES,
    RULES,
    STRUCTURAL_RULES,
    ValidationConfig,
    check_rejected_fraction,
    drop_rejected,
    find_rejections,
)

# No image files and no GX here: those have their own test modules.
CFG = ValidationConfig(check_images=False, run_expectations=False)


def row(img: str = "demo/1", rid: str = "0", **kw: Any) -> dict[str, Any]:
    """A valid region row (passes every rule and filter) with overrides."""
    base = {
        "image_id": img, "source": "demo", "kind": "natural", "width": 640, "height": 480,
        "region_id": f"{img}#{rid}", "x1": 10.0, "y1": 20.0, "x2": 210.0, "y2": 220.0,
        "text": "a dog", "text_type": "caption", "global_caption": None, "split": "train",
        "image_path": f"/data/{img}.jpg", "iscrowd": False, "text_is_target": True,
    }  # fmt: skip
    base.update(kw)
    return base


def rejected(rows: list[dict[str, Any]], cfg: ValidationConfig = CFG) -> dict[str, dict]:
    """Quarantine rows keyed by record, from a single batch."""
    result = find_rejections([region_batch(rows)], cfg)
    return {r["record"]: r for r in result.quarantine.to_pylist()}


def test_valid_rows_are_accepted_including_ocr_ignore_regions() -> None:
    rows = [row(rid="0"), row(rid="1", kind="ocr", text="###", text_type="ocr",
                              text_is_target=False)]  # fmt: skip
    result = find_rejections([region_batch(rows)], CFG)
    assert result.quarantine.num_rows == 0
    assert result.summary.rows_checked == 2
    assert result.summary.rows_rejected == 0


@pytest.mark.parametrize(
    ("override", "rule", "value_text"),
    [
        ({"x1": None}, "not_null", "null=[x1]"),
        ({"text": None, "split": None}, "not_null", "null=[text, split]"),
        ({"x2": float("nan")}, "finite_box", "nan"),
        ({"y2": float("inf")}, "finite_box", "inf"),
        ({"x1": 300.0, "x2": 100.0}, "box_order", "box=(300, 20, 100, 220)"),
        ({"y1": 220.0}, "box_order", "box=(10, 220, 210, 220)"),
        ({"x1": -5.0}, "box_inside_image", "box=(-5, 20, 210, 220)"),
        ({"x2": 641.0}, "box_inside_image", "image=640x480"),
        ({"width": 0}, "positive_image_size", "image=0x480"),
        ({"height": -3}, "positive_image_size", "image=640x-3"),
        ({"text": "   \t"}, "text_not_empty", "text_chars=4"),
        ({"text": ""}, "text_not_empty", "text_chars=0"),
        ({"text": "x" * 201}, "text_max_length", "text_chars=201"),
        ({"kind": "photo"}, "kind_valid", "kind='photo'"),
        ({"text_type": "label"}, "text_type_valid", "text_type='label'"),
        ({"split": "dev"}, "split_valid", "split='dev'"),
        ({"region_id": "demo/2#0"}, "region_id_unique", "region_id='demo/2#0'"),
        ({"region_id": "demo/1"}, "region_id_unique", "does not start with"),
    ],
)
def test_each_row_rule(override: dict[str, Any], rule: str, value_text: str) -> None:
    got = rejected([row(rid="ok"), row(rid="bad", **override)])
    record = override.get("region_id", "demo/1#bad")
    assert list(got) == [record]
    assert got[record]["rule"] == rule
    assert got[record]["stage"] == "validate"
    assert got[record]["file"] == "/data/demo/1.jpg"
    assert record in got[record]["message"] and rule in got[record]["message"]
    assert value_text in got[record]["message"]


def test_positive_image_size_comes_before_box_inside_image() -> None:
    msg = rejected([row(width=0)])["demo/1#0"]["message"]
    assert msg.index("positive_image_size") < msg.index("box_inside_image")


def test_text_max_length_boundary_is_inclusive() -> None:
    assert rejected([row(text="x" * 200)]) == {}
    cfg = CFG.model_copy(update={"max_text_chars": 5})
    assert rejected([row(text="héllo")], cfg) == {}  # 5 code points, 6 bytes
    assert rejected([row(text="héllo!")], cfg)["demo/1#0"]["rule"] == "text_max_length"


def test_null_region_id_is_quarantined_under_row_number() -> None:
    result = find_rejections([region_batch([row(rid="a"), row(region_id=None)])], CFG)
    (q,) = result.quarantine.to_pylist()
    assert q["rule"] == "not_null" and q["record"] == "row 1" and q["region_id"] is None
    kept = list(drop_rejected([region_batch([row(rid="a"), row(region_id=None)])],
                              result.rejected_region_ids, expected_rows=1))  # fmt: skip
    assert sum(b.num_rows for b in kept) == 1


def test_priority_first_rule_wins_and_message_lists_all() -> None:
    bad = row(rid="bad", x1=300.0, x2=100.0, kind="photo", split="dev", text=" ")
    got = rejected([row(rid="ok"), bad])["demo/1#bad"]
    assert got["rule"] == "box_order"
    msg = got["message"]
    positions = [msg.index(r) for r in ("box_order", "text_not_empty", "kind_valid", "split_valid")]
    assert positions == sorted(positions)
    assert "kind='photo'" in msg and "split='dev'" in msg


def test_rule_order_is_structural_then_filters_then_images() -> None:
    assert RULES[: len(STRUCTURAL_RULES)] == STRUCTURAL_RULES
    assert RULES[len(STRUCTURAL_RULES) : len(STRUCTURAL_RULES) + len(FILTER_RULES)] == FILTER_RULES
    assert RULES[-4:] == ("image_missing", "image_undecodable", "image_size_mismatch",
                          "image_too_large")  # fmt: skip


def test_structural_error_hides_filters() -> None:
    # A tiny box that is also outside the image: reported as broken, not as "too small".
    got = rejected([row(rid="ok"), row(rid="b", x1=-10.0, x2=5.0)])["demo/1#b"]
    assert got["rule"] == "box_inside_image"
    assert "box_area" not in got["message"]


@pytest.mark.parametrize(
    ("override", "rule", "expect_rejected"),
    [
        ({"width": 449, "height": 449}, "image_short_side", False),
        ({"width": 448, "height": 900}, "image_short_side", True),  # strict >
        ({"width": 1344, "height": 449}, "image_aspect_ratio", False),  # 2.993
        ({"width": 1347, "height": 449}, "image_aspect_ratio", False),  # exactly 3.0 allowed
        ({"width": 1348, "height": 449}, "image_aspect_ratio", True),
        ({"x1": 0.0, "x2": 100.0, "y1": 0.0, "y2": 300.0}, "box_aspect_ratio", False),  # 1/3
        ({"x1": 0.0, "x2": 100.0, "y1": 0.0, "y2": 301.0}, "box_aspect_ratio", True),
        ({"x1": 0.0, "x2": 300.0, "y1": 0.0, "y2": 100.0}, "box_aspect_ratio", False),  # 3
        ({"x1": 0.0, "x2": 100.0, "y1": 0.0, "y2": 100.0}, "box_area", True),  # strict >
        ({"x1": 0.0, "x2": 100.0, "y1": 0.0, "y2": 100.5}, "box_area", False),
    ],
)
def test_paper_filters_at_thresholds(override: dict, rule: str, expect_rejected: bool) -> None:
    got = rejected([row(rid="k"), row(rid="f", **override)] if "x1" in override
                   else [row(rid="f", **override)])  # fmt: skip
    if expect_rejected:
        assert got["demo/1#f"]["rule"] == rule
        assert "=" in got["demo/1#f"]["message"].split("|")[-1]
    else:
        assert "demo/1#f" not in got


def test_filters_can_be_switched_off() -> None:
    small = row(rid="s", width=100, height=100, x1=0.0, y1=0.0, x2=10.0, y2=90.0)
    assert rejected([small], CFG.model_copy(update={"filters_enabled": False})) == {}
    neutral = {"min_image_short_side": 0, "min_box_area": 0, "min_aspect_ratio": 0}
    neutral = CFG.model_copy(update=neutral | {"max_aspect_ratio": math.inf})
    assert rejected([small], neutral) == {}


def test_min_boxes_per_image_rejects_image_whose_only_box_was_filtered() -> None:
    rows = [row("demo/a", "0", x2=50.0, y2=50.0),  # only box: too small
            row("demo/b", "0"), row("demo/b", "1", x2=50.0, y2=50.0)]  # fmt: skip
    got = rejected(rows)
    assert got["demo/a#0"]["rule"] == "box_area"
    assert got["demo/b#1"]["rule"] == "box_area"
    assert "demo/b#0" not in got
    two = CFG.model_copy(update={"min_boxes_per_image": 2})
    got = rejected(rows, two)
    assert got["demo/b#0"]["rule"] == "min_boxes_per_image"
    assert "keeps 1 box(es)" in got["demo/b#0"]["message"]


def test_min_boxes_counts_an_image_split_across_batches() -> None:
    two = CFG.model_copy(update={"min_boxes_per_image": 2})
    batches = [region_batch([row("demo/a", "0")]), region_batch([row("demo/a", "1")])]
    assert find_rejections(batches, two).quarantine.num_rows == 0


def test_duplicates_within_and_across_batches() -> None:
    b1 = region_batch([row("demo/a", "0"), row("demo/a", "0"), row("demo/b", "0")])
    b2 = region_batch([row("demo/b", "1"), row("demo/c", "0")])
    b3 = region_batch([row("demo/a", "9")])  # image a reappears after its rows ended
    result = find_rejections([b1, b2, b3], CFG)
    q = result.quarantine.to_pylist()
    assert [(r["record"], r["rule"]) for r in q] == [
        ("demo/a#0", "region_id_unique"), ("demo/a#0", "region_id_unique"),
        ("demo/a#9", "region_id_unique"),
    ]  # fmt: skip
    assert "more than once" in q[0]["message"]
    assert "reappear" in q[2]["message"]
    assert result.summary.images_seen == 4


def test_quarantine_schema_and_summary_counts() -> None:
    rows = [row(rid="0"), row(rid="1", kind="x"), row(rid="2", x2=60.0, y2=60.0)]
    result = find_rejections([region_batch(rows)], CFG)
    assert result.quarantine.schema.equals(QUARANTINE_SCHEMA)
    s = result.summary.as_dict()
    assert (s["rows_checked"], s["rows_rejected"], s["rows_accepted"]) == (3, 2, 1)
    assert s["rejected_by_rule"]["kind_valid"] == 1
    assert s["filter_removals"]["box_area"] == 1
    assert (s["error_rows"], s["filtered_rows"]) == (1, 1)
    assert s["rejected_fraction"] == pytest.approx(1 / 3)


def test_drop_rejected_streams_input_minus_rejections() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        for j in range(int(rng.integers(1, 4))):
            bad = rng.random() < 0.3
            rows.append(row(f"demo/{i}", str(j), x2=5.0 if bad else 210.0))
    batches = [region_batch(rows[k : k + 7]) for k in range(0, len(rows), 7)]
    result = find_rejections(batches, CFG)
    kept = list(drop_rejected(iter(batches), result.rejected_region_ids,
                              expected_rows=result.quarantine.num_rows))  # fmt: skip
    kept_ids = pa.Table.from_batches(kept, REGION_SCHEMA).column("region_id").to_pylist()
    bad_ids = set(result.quarantine.column("region_id").to_pylist())
    assert kept_ids == [r["region_id"] for r in rows if r["region_id"] not in bad_ids]
    assert len(kept_ids) + len(bad_ids) == len(rows)
    assert all(b.num_rows <= 7 for b in kept)


def test_drop_rejected_detects_accepted_rows_sharing_a_rejected_id() -> None:
    b1 = region_batch([row("demo/a", "0")])
    b2 = region_batch([row("demo/b", "0")])
    b3 = region_batch([row("demo/a", "0")])  # reappearing image, same id as an accepted row
    result = find_rejections([b1, b2, b3], CFG)
    assert result.quarantine.num_rows == 1
    with pytest.raises(DataError, match="region_id_unique"):
        list(drop_rejected([b1, b2, b3], result.rejected_region_ids,
                           expected_rows=result.quarantine.num_rows))  # fmt: skip


def test_rejected_fraction_gate() -> None:
    rows = [row(rid="0"), row(rid="1", kind="x"), row(rid="2", kind="y"),
            row(rid="3", x2=50.0, y2=50.0)]  # fmt: skip
    result = find_rejections([region_batch(rows)], CFG)
    check_rejected_fraction(result.summary, CFG)  # 2 errors / 4 = 0.5: not above
    strict = CFG.model_copy(update={"max_rejected_fraction": 0.4})
    with pytest.raises(DataError, match=r"0\.5000 .*max_rejected_fraction=0\.4.*kind_valid=2"):
        check_rejected_fraction(result.summary, strict)
    counting = CFG.model_copy(update={"rejected_fraction_counts_filters": True})
    with pytest.raises(DataError, match=r"0\.7500.*box_area=1"):
        check_rejected_fraction(result.summary, counting)


def test_config_forbids_unknown_keys() -> None:
    with pytest.raises(pydantic.ValidationError):
        ValidationConfig(min_box_aera=5)


def test_wrong_schema_is_a_data_error() -> None:
    batch = region_batch([row()]).drop_columns(["iscrowd"])
    with pytest.raises(DataError, match="schema"):
        find_rejections([batch], CFG)


def test_empty_input() -> None:
    result = find_rejections([], CFG)
    assert result.quarantine.num_rows == 0 and result.summary.rows_checked == 0
    check_rejected_fraction(result.summary, CFG)
