"""RefCOCO (MDETR format) reader: pairs grouped by physical image, texts, bad inputs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from granvit_pipeline.regions.quarantine import DataError, Quarantine
from granvit_pipeline.regions.readers import SourceConfig, read_source
from granvit_pipeline.regions.schema import REGION_SCHEMA, assign_split


def pair(pair_id: int, file_name: str, caption: str, original_id: int | None = None) -> dict:
    entry = {"id": pair_id, "file_name": file_name, "width": 640, "height": 480, "caption": caption}
    if original_id is not None:
        entry["original_id"] = original_id
    return entry


def ann(ann_id: int, pair_id: int, bbox: Any, iscrowd: int = 0) -> dict:
    return {"id": ann_id, "image_id": pair_id, "bbox": bbox, "category_id": 1, "iscrowd": iscrowd}


def refcoco_doc() -> dict[str, Any]:
    return {
        "images": [
            pair(100, "COCO_train2014_000000000042.jpg", "the man on the left", 42),
            pair(101, "COCO_train2014_000000000007.jpg", "red car", 7),
            pair(102, "COCO_train2014_000000000042.jpg", "woman in blue", 42),
            pair(103, "COCO_train2014_000000000055.jpg", "dog"),  # no original_id
        ],
        "annotations": [
            ann(1, 102, [300, 10, 50.5, 100]),
            ann(2, 101, [0, 0, 640, 480]),
            ann(3, 100, [10, 20, 30, 40]),
            ann(4, 103, [1, 2, 3, 4], iscrowd=1),
        ],
    }


def read(tmp_path: Path, doc: Any, quarantine: Quarantine) -> tuple[pa.Table, SourceConfig]:
    path = tmp_path / "final_refcoco_train.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    cfg = SourceConfig(format="refcoco", annotations=path, images=tmp_path / "train2014")
    batches = list(read_source(cfg, quarantine, batch_size=2))
    return pa.Table.from_batches(batches, schema=REGION_SCHEMA), cfg


def test_refcoco_groups_pairs_by_physical_image(tmp_path: Path) -> None:
    doc = refcoco_doc()
    quarantine = Quarantine()
    table, _ = read(tmp_path, doc, quarantine)
    assert len(quarantine) == 0
    rows = table.to_pylist()
    assert [(r["image_id"], r["region_id"], r["text"]) for r in rows] == [
        ("refcoco/42", "refcoco/42#3", "the man on the left"),
        ("refcoco/42", "refcoco/42#1", "woman in blue"),
        ("refcoco/7", "refcoco/7#2", "red car"),
        ("refcoco/COCO_train2014_000000000055", "refcoco/COCO_train2014_000000000055#4", "dog"),
    ]
    image_ids = [r["image_id"] for r in rows]
    runs = [key for key, _ in itertools.groupby(image_ids)]
    assert len(runs) == len(set(runs))
    by_id = {a["id"]: a for a in doc["annotations"]}
    files = {p["id"]: p["file_name"] for p in doc["images"]}
    for row in rows:
        a = by_id[int(row["region_id"].split("#")[1])]
        x, y, w, h = a["bbox"]
        assert [row["x1"], row["y1"], row["x2"], row["y2"]] == np.float32(
            [x, y, x + w, y + h]
        ).tolist()
        assert row["iscrowd"] == bool(a["iscrowd"])
        assert row["image_path"] == str(tmp_path / "train2014" / files[a["image_id"]])
        assert row["split"] == assign_split(row["image_id"])
        assert (row["text_type"], row["kind"], row["global_caption"]) == ("refexp", "natural", None)
        assert (row["width"], row["height"], row["text_is_target"]) == (640, 480, True)


@pytest.mark.parametrize(
    ("extra_pair", "extra_ann", "rule"),
    [
        (
            pair(104, "other_name.jpg", "a tree", 42),
            ann(5, 104, [1, 1, 1, 1]),
            "inconsistent_image",
        ),
        (
            {"id": 105, "file_name": "x.jpg", "width": 9, "height": 9},
            ann(5, 105, [1, 1, 1, 1]),
            "bad_image",
        ),
        (None, ann(5, 999, [1, 1, 1, 1]), "unknown_image"),
        (None, ann(5, 101, [1, 1, None, 1]), "bad_bbox"),
        (None, {"id": 5, "image_id": 101}, "bad_bbox"),
        (None, ann(3, 102, [1, 1, 1, 1]), "duplicate_region"),
    ],
)
def test_refcoco_quarantines_unmappable_annotations(
    tmp_path: Path, extra_pair: dict | None, extra_ann: dict, rule: str
) -> None:
    doc = refcoco_doc()
    if extra_pair is not None:
        doc["images"].append(extra_pair)
    doc["annotations"].append(extra_ann)
    quarantine = Quarantine()
    table, cfg = read(tmp_path, doc, quarantine)
    assert table.num_rows == 4
    rejected = [
        r for r in quarantine.to_table().to_pylist() if r["record"].startswith("annotation")
    ]
    assert [(r["rule"], r["record"]) for r in rejected] == [
        (rule, f"annotation id={extra_ann['id']}")
    ]
    assert str(cfg.annotations) in rejected[0]["message"]
    assert f"annotation id={extra_ann['id']}" in rejected[0]["message"]


def test_refcoco_pair_without_caption_is_a_bad_image(tmp_path: Path) -> None:
    doc = refcoco_doc()
    doc["images"].append({"id": 105, "file_name": "x.jpg", "width": 9, "height": 9})
    quarantine = Quarantine()
    read(tmp_path, doc, quarantine)
    [row] = quarantine.to_table().to_pylist()
    assert (row["rule"], row["record"]) == ("bad_image", "image id=105")
    assert "'caption'" in row["message"]


def test_refcoco_without_annotations_list_is_fatal(tmp_path: Path) -> None:
    doc = refcoco_doc()
    del doc["annotations"]
    with pytest.raises(DataError, match="bad_structure") as err:
        read(tmp_path, doc, Quarantine())
    assert "final_refcoco_train.json" in str(err.value) and "'annotations'" in str(err.value)
