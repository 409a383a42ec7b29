"""Visual Genome reader: image size from the header, ids, texts, missing images, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from granvit_pipeline.regions.quarantine import DataError, Quarantine
from granvit_pipeline.regions.readers import SourceConfig, read_source
from granvit_pipeline.regions.schema import REGION_SCHEMA, assign_split

SIZES = {1: (40, 30), 2: (21, 13)}


def region(region_id: int, x: Any, y: Any, w: Any, h: Any, phrase: Any = "a thing") -> dict:
    return {
        "region_id": region_id,
        "image_id": 0,
        "x": x,
        "y": y,
        "width": w,
        "height": h,
        "phrase": phrase,
    }


def vg_doc() -> list[dict[str, Any]]:
    return [
        {
            "id": 1,
            "regions": [
                region(11, 1, 2, 3, 4, "a cat"),
                region(12, 30, 25, 20, 10, "off the edge"),
            ],
        },
        {"id": 2, "regions": [region(21, 0.5, 0, 20.5, 13, "whole image")]},
        {"id": 5, "regions": []},  # no regions: no rows, not an error
    ]


def setup(tmp_path: Path, doc: Any) -> SourceConfig:
    images = tmp_path / "VG_100K"
    images.mkdir()
    for key, size in SIZES.items():
        Image.new("RGB", size, (key * 40, 0, 0)).save(images / f"{key}.jpg")
    path = tmp_path / "region_descriptions.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return SourceConfig(format="vg", annotations=path, images=images, source="vg1")


def read(cfg: SourceConfig, quarantine: Quarantine) -> pa.Table:
    return pa.Table.from_batches(list(read_source(cfg, quarantine)), schema=REGION_SCHEMA)


def test_vg_maps_regions_with_size_from_image_header(tmp_path: Path) -> None:
    doc = vg_doc()
    cfg = setup(tmp_path, doc)
    quarantine = Quarantine()
    rows = read(cfg, quarantine).to_pylist()
    assert len(quarantine) == 0
    assert [r["region_id"] for r in rows] == ["vg1/1#11", "vg1/1#12", "vg1/2#21"]
    regions = {f"vg1/{e['id']}#{r['region_id']}": (e["id"], r) for e in doc for r in e["regions"]}
    for row in rows:
        key, src = regions[row["region_id"]]
        expected = [src["x"], src["y"], src["x"] + src["width"], src["y"] + src["height"]]
        assert [row["x1"], row["y1"], row["x2"], row["y2"]] == np.float32(expected).tolist()
        assert (row["width"], row["height"]) == SIZES[key]
        assert row["image_id"] == f"vg1/{key}" and row["text"] == src["phrase"]
        assert row["image_path"] == str(cfg.images / f"{key}.jpg")
        assert row["split"] == assign_split(row["image_id"])
        assert (row["kind"], row["text_type"], row["global_caption"]) == (
            "natural",
            "caption",
            None,
        )
        assert (row["iscrowd"], row["text_is_target"]) == (False, True)


def test_vg_missing_or_unreadable_image_quarantines_its_regions(tmp_path: Path) -> None:
    doc = vg_doc()
    doc.append({"id": 3, "regions": [region(31, 1, 1, 2, 2), region(32, 2, 2, 2, 2)]})
    doc.append({"id": 4, "regions": [region(41, 1, 1, 2, 2)]})
    cfg = setup(tmp_path, doc)
    (cfg.images / "4.jpg").write_bytes(b"this is not a jpeg")
    quarantine = Quarantine()
    assert read(cfg, quarantine).num_rows == 3
    got = [(r["rule"], r["record"], r["region_id"]) for r in quarantine.to_table().to_pylist()]
    assert got == [
        ("image_missing", "image id=3 region id=31", "vg1/3#31"),
        ("image_missing", "image id=3 region id=32", "vg1/3#32"),
        ("image_unreadable", "image id=4 region id=41", "vg1/4#41"),
    ]
    message = quarantine.to_table().column("message")[0].as_py()
    assert str(cfg.annotations) in message and str(cfg.images / "3.jpg") in message


@pytest.mark.parametrize(
    ("entry", "rule", "record"),
    [
        ({"id": 1, "regions": [region(13, "1", 2, 3, 4)]}, "bad_bbox", "image id=1 region id=13"),
        (
            {"id": 1, "regions": [{"region_id": 13, "x": 1, "y": 2, "width": 3}]},
            "bad_bbox",
            "image id=1 region id=13",
        ),
        (
            {"id": 1, "regions": [region(13, 1, 2, 3, 4, phrase=None)]},
            "bad_record",
            "image id=1 region id=13",
        ),
        (
            {"id": 1, "regions": [region(11, 1, 2, 3, 4)]},
            "duplicate_region",
            "image id=1 region id=11",
        ),
        ({"regions": []}, "bad_record", "image index 0"),
        ({"id": 2, "regions": "none"}, "bad_record", "image id=2"),
    ],
)
def test_vg_quarantines_bad_records(tmp_path: Path, entry: dict, rule: str, record: str) -> None:
    doc = vg_doc()
    if entry.get("id") == 1:
        doc[0]["regions"] += entry["regions"]
    else:
        doc.insert(0, entry)
    cfg = setup(tmp_path, doc)
    quarantine = Quarantine()
    assert read(cfg, quarantine).num_rows == 3
    [row] = quarantine.to_table().to_pylist()
    assert (row["rule"], row["record"], row["stage"]) == (rule, record, "ingest")
    assert str(cfg.annotations) in row["message"] and record in row["message"]


def test_vg_duplicate_image_is_quarantined_once(tmp_path: Path) -> None:
    doc = [*vg_doc(), {"id": 1, "regions": [region(99, 1, 1, 1, 1)]}]
    quarantine = Quarantine()
    assert read(setup(tmp_path, doc), quarantine).num_rows == 3
    assert quarantine.counts() == {"duplicate_image": 1}


def test_vg_top_level_object_is_fatal(tmp_path: Path) -> None:
    cfg = setup(tmp_path, {"images": vg_doc()})
    with pytest.raises(DataError, match=r"top level: \[bad_structure\]"):
        read(cfg, Quarantine())
