"""JSONL reader and ``map_jsonl_records``: mapping, per-line errors, per-key errors."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from granvit_pipeline.regions.quarantine import Quarantine
from granvit_pipeline.regions.readers import SourceConfig, map_jsonl_records, read_source
from granvit_pipeline.regions.schema import REGION_SCHEMA, assign_split


def record(image_id: str = "000123", **overrides: Any) -> dict[str, Any]:
    rec = {
        "image_id": image_id,
        "image": f"images/{image_id}.png",
        "width": 64,
        "height": 48,
        "kind": "natural",
        "global_caption": "a small red circle left of a big blue square",
        "regions": [
            {
                "id": "0",
                "box": [3.0, 10.0, 19.5, 26.0],
                "text": "the small red circle",
                "text_type": "refexp",
            },
            {
                "id": "1",
                "box": [30, 5, 70, 50],
                "text": "blue square",
                "text_type": "caption",
                "text_is_target": False,
            },
        ],
    }
    rec.update(overrides)
    return rec


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def read(path: Path, quarantine: Quarantine, **kwargs: Any) -> pa.Table:
    cfg = SourceConfig(format="jsonl", annotations=path, images=path.parent, **kwargs)
    return pa.Table.from_batches(
        list(read_source(cfg, quarantine, batch_size=3)), schema=REGION_SCHEMA
    )


def test_jsonl_maps_records_unchanged_boxes_and_prefixed_ids(tmp_path: Path) -> None:
    records = [record("000123"), record("ocr_7", kind="ocr", global_caption=None, regions=[])]
    records.append(
        record(
            "9",
            kind="sketch",
            regions=[{"id": "a", "box": [5, 5, 1, 1], "text": "x", "text_type": "doodle"}],
        )
    )
    path = write_lines(
        tmp_path / "regions.jsonl",
        [b"\xef\xbb\xbf" + json.dumps(records[0]).encode(), b""]
        + [json.dumps(r).encode() for r in records[1:]],
    )
    quarantine = Quarantine()
    rows = read(path, quarantine, source="demo").to_pylist()
    assert len(quarantine) == 0
    assert [r["region_id"] for r in rows] == ["demo/000123#0", "demo/000123#1", "demo/9#a"]
    sources = {
        f"demo/{r['image_id']}#{reg['id']}": (r, reg) for r in records for reg in r["regions"]
    }
    for row in rows:
        rec, reg = sources[row["region_id"]]
        assert [row["x1"], row["y1"], row["x2"], row["y2"]] == reg["box"]  # float32-exact inputs
        assert row["image_id"] == f"demo/{rec['image_id']}"
        assert row["image_path"] == str(tmp_path / rec["image"])
        assert (row["width"], row["height"], row["kind"]) == (
            rec["width"],
            rec["height"],
            rec["kind"],
        )
        assert (row["text"], row["text_type"]) == (
            reg["text"],
            reg["text_type"],
        )  # unknown ones pass
        assert row["text_is_target"] == reg.get("text_is_target", True)
        assert row["global_caption"] == rec["global_caption"]
        assert row["split"] == assign_split(row["image_id"])
        assert row["iscrowd"] is False


def test_map_jsonl_records_in_memory_matches_the_file_reader(tmp_path: Path) -> None:
    records = [record(str(i)) for i in range(5)]
    path = write_lines(tmp_path / "a.jsonl", [json.dumps(r).encode() for r in records])
    from_file = read(path, Quarantine(), source="demo")
    quarantine = Quarantine()
    batches = map_jsonl_records(
        [(f"line {i + 1}", r) for i, r in enumerate(records)],
        source="demo",
        images_dir=tmp_path,
        file_label="in memory",
        quarantine=quarantine,
        split_fractions={"train": 0.9, "val": 0.05, "test": 0.05},
        batch_size=4,
    )
    batches = list(batches)
    assert [b.num_rows for b in batches] == [4, 4, 2]
    assert pa.Table.from_batches(batches).equals(from_file)


def test_jsonl_bad_json_and_non_utf8_lines_are_quarantined_not_fatal(tmp_path: Path) -> None:
    good = json.dumps(record("1")).encode()
    path = write_lines(
        tmp_path / "r.jsonl",
        [good, b'{"image_id": "2", ', b'{"image_id": "caf\xe9"}', json.dumps(record("3")).encode()],
    )
    quarantine = Quarantine()
    table = read(path, quarantine)
    assert set(table.column("image_id").to_pylist()) == {"jsonl/1", "jsonl/3"}
    rejected = quarantine.to_table().to_pylist()
    assert [(r["rule"], r["record"]) for r in rejected] == [
        ("bad_json", "line 2"),
        ("not_utf8", "line 3"),
    ]
    for row in rejected:
        assert str(path) in row["message"] and row["record"] in row["message"]
    assert "column 19" in rejected[0]["message"]


def _without(rec: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k != key}


IMAGE_PROBLEMS = [
    (_without(record(), "image_id"), "'image_id'"),
    (record(image_id=123), "'image_id'"),
    (_without(record(), "image"), "'image'"),
    (record(width="64"), "'width'"),
    (record(height=True), "'height'"),
    (record(width=1.5), "'width'"),
    (_without(record(), "kind"), "'kind'"),
    (record(global_caption=7), "'global_caption'"),
    (record(regions={"id": "0"}), "'regions'"),
    ([1, 2], "not a JSON object"),
]


@pytest.mark.parametrize(("rec", "key"), IMAGE_PROBLEMS, ids=[k for _, k in IMAGE_PROBLEMS])
def test_jsonl_image_level_problem_quarantines_the_record(
    tmp_path: Path, rec: Any, key: str
) -> None:
    path = write_lines(
        tmp_path / "r.jsonl", [json.dumps(record("ok")).encode(), json.dumps(rec).encode()]
    )
    quarantine = Quarantine()
    assert read(path, quarantine).num_rows == 2
    [row] = quarantine.to_table().to_pylist()
    assert (row["rule"], row["record"]) == ("bad_record", "line 2")
    assert key in row["message"] and str(path) in row["message"] and "line 2" in row["message"]
    assert json.loads(row["payload"]) == rec


REGION_PROBLEMS = [
    ("id", None, "bad_record", "'id'"),
    ("id", 0, "bad_record", "'id'"),
    ("text", None, "bad_record", "'text'"),
    ("text_type", 3, "bad_record", "'text_type'"),
    ("text_is_target", "yes", "bad_record", "'text_is_target'"),
    ("box", None, "bad_bbox", "'box'"),
    ("box", [1, 2, 3], "bad_bbox", "'box'"),
    ("box", [1, 2, "3", 4], "bad_bbox", "'box'"),
]


@pytest.mark.parametrize(("key", "value", "rule", "named"), REGION_PROBLEMS)
def test_jsonl_region_problem_quarantines_only_that_region(
    tmp_path: Path, key: str, value: Any, rule: str, named: str
) -> None:
    rec = copy.deepcopy(record())
    if value is None:
        del rec["regions"][1][key]
    else:
        rec["regions"][1][key] = value
    path = write_lines(tmp_path / "r.jsonl", [json.dumps(rec).encode()])
    quarantine = Quarantine()
    table = read(path, quarantine)
    assert table.column("region_id").to_pylist() == ["jsonl/000123#0"]
    [row] = quarantine.to_table().to_pylist()
    assert row["rule"] == rule and row["record"].startswith("line 1 region")
    assert named in row["message"] and str(path) in row["message"]
    assert row["image_id"] == "jsonl/000123"


def test_jsonl_nan_box_passes_through_for_validation(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(record()).replace("19.5", "NaN") + "\n", encoding="utf-8")
    table = read(path, Quarantine())
    assert table.num_rows == 2 and table.column("x2").is_valid().to_pylist() == [True, True]
    assert str(table.column("x2")[0].as_py()) == "nan"


def test_jsonl_duplicate_image_and_region_ids_are_quarantined(tmp_path: Path) -> None:
    rec = record("1")
    rec["regions"].append(dict(rec["regions"][0]))
    path = write_lines(
        tmp_path / "r.jsonl", [json.dumps(rec).encode(), json.dumps(record("1")).encode()]
    )
    quarantine = Quarantine()
    assert read(path, quarantine).num_rows == 2
    got = [(r["rule"], r["record"]) for r in quarantine.to_table().to_pylist()]
    assert got == [("duplicate_region", "line 1 region id=0"), ("duplicate_image", "line 2")]


def test_map_jsonl_records_streams_a_batch_as_soon_as_it_is_full(tmp_path: Path) -> None:
    pulled: list[int] = []

    def records() -> Iterator[tuple[str, dict[str, Any]]]:
        for i in range(10):
            pulled.append(i)
            yield f"record {i}", record(str(i))  # 2 regions each

    batches = map_jsonl_records(
        records(),
        source="demo",
        images_dir=tmp_path,
        file_label="generated",
        quarantine=Quarantine(),
        split_fractions={"train": 1.0},
        batch_size=2,
    )
    first = next(batches)
    assert first.num_rows == 2 and pulled == [0]
    assert sum(b.num_rows for b in batches) == 18 and len(pulled) == 10
