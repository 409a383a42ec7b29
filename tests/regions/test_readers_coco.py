"""COCO reader: mapping on a small fixture, every bad-input class, and the real coco128 data."""

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

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
COCO128 = SHARED / "data" / "coco128"


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def read_table(cfg: SourceConfig, quarantine: Quarantine, **kwargs: Any) -> pa.Table:
    batches = list(read_source(cfg, quarantine, **kwargs))
    assert all(b.schema == REGION_SCHEMA for b in batches)
    return pa.Table.from_batches(batches, schema=REGION_SCHEMA)


def assert_contiguous(image_ids: list[str]) -> None:
    runs = [key for key, _ in itertools.groupby(image_ids)]
    assert len(runs) == len(set(runs)), f"rows of an image are split: {runs}"


def coco_doc() -> dict[str, Any]:
    return {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "sub/b.jpg", "width": 50, "height": 60},
            {"id": 3, "file_name": "c.jpg", "width": 10, "height": 10},  # no annotations
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "traffic light"}],
        "annotations": [  # interleaved on purpose: output must group them by image
            {"id": 10, "image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 2, "bbox": [10.5, 20, 30, 40], "iscrowd": 1},
            {"id": 12, "image_id": 2, "category_id": 2, "bbox": [5.25, 5, 10, 10], "iscrowd": 0},
            # outside the image and negative size: passed through, validation rejects it
            {"id": 13, "image_id": 1, "category_id": 1, "bbox": [90, 70, 20, -5]},
        ],
    }


def coco_cfg(tmp_path: Path, doc: Any, **kwargs: Any) -> SourceConfig:
    ann = write_json(tmp_path / "instances.json", doc)
    return SourceConfig(format="coco", annotations=ann, images=tmp_path / "imgs", **kwargs)


def test_coco_maps_ids_boxes_texts_and_flags(tmp_path: Path) -> None:
    doc = coco_doc()
    quarantine = Quarantine()
    table = read_table(coco_cfg(tmp_path, doc, source="toy"), quarantine)
    assert len(quarantine) == 0
    rows = table.to_pylist()
    assert [r["region_id"] for r in rows] == ["toy/1#11", "toy/1#13", "toy/2#10", "toy/2#12"]
    by_id = {a["id"]: a for a in doc["annotations"]}
    names = {c["id"]: c["name"] for c in doc["categories"]}
    sizes = {i["id"]: (i["width"], i["height"], i["file_name"]) for i in doc["images"]}
    for row in rows:
        ann = by_id[int(row["region_id"].split("#")[1])]
        x, y, w, h = ann["bbox"]
        expected = np.float32([x, y, x + w, y + h])
        assert np.array_equal(np.float32([row[k] for k in ("x1", "y1", "x2", "y2")]), expected)
        assert row["image_id"] == f"toy/{ann['image_id']}"
        assert row["text"] == names[ann["category_id"]]
        assert row["iscrowd"] == bool(ann.get("iscrowd", 0))
        width, height, file_name = sizes[ann["image_id"]]
        assert (row["width"], row["height"]) == (width, height)
        assert row["image_path"] == str(tmp_path / "imgs" / file_name)
        assert row["split"] == assign_split(row["image_id"])
        assert (row["source"], row["kind"], row["text_type"]) == ("toy", "natural", "category")
        assert row["text_is_target"] is True
        assert row["global_caption"] is None


def test_coco_default_source_is_format_name_and_splits_follow_fractions(tmp_path: Path) -> None:
    cfg = coco_cfg(tmp_path, coco_doc())
    table = read_table(cfg, Quarantine(), split_fractions={"val": 1.0})
    assert set(table.column("split").to_pylist()) == {"val"}
    assert all(i.startswith("coco/") for i in table.column("image_id").to_pylist())
    first, again = read_table(cfg, Quarantine()), read_table(cfg, Quarantine())
    assert first.equals(again)


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_coco_batches_have_size_and_keep_images_contiguous(tmp_path: Path, batch_size: int) -> None:
    cfg = coco_cfg(tmp_path, coco_doc())
    batches = list(read_source(cfg, Quarantine(), batch_size=batch_size))
    assert all(b.num_rows == batch_size for b in batches[:-1])
    assert 0 < batches[-1].num_rows <= batch_size
    table = pa.Table.from_batches(batches)
    assert table.equals(read_table(cfg, Quarantine()))
    assert_contiguous(table.column("image_id").to_pylist())


def test_coco_global_caption_is_the_caption_with_smallest_id(tmp_path: Path) -> None:
    captions = {
        "annotations": [
            {"id": 5, "image_id": 1, "caption": "a later caption"},
            {"id": 3, "image_id": 1, "caption": " The first caption.\n"},
            {"id": 4, "image_id": 1, "caption": "neither first in file nor smallest id"},
            {"id": 7, "image_id": 2, "caption": "two"},
            {"id": 8, "image_id": 2},  # no caption text
        ]
    }
    cap_path = write_json(tmp_path / "captions.json", captions)
    quarantine = Quarantine()
    table = read_table(coco_cfg(tmp_path, coco_doc(), captions=cap_path), quarantine)
    by_image = dict(
        zip(
            table.column("image_id").to_pylist(),
            table.column("global_caption").to_pylist(),
            strict=True,
        )
    )
    assert by_image == {"coco/1": "The first caption.", "coco/2": "two"}
    rejected = quarantine.to_table().to_pylist()
    assert [(r["rule"], r["record"]) for r in rejected] == [("bad_caption", "caption id=8")]
    assert str(cap_path) in rejected[0]["message"] and "'caption'" in rejected[0]["message"]


BAD_ANNOTATIONS = [
    ({"id": 20, "image_id": 1, "category_id": 99, "bbox": [1, 1, 2, 2]}, "unknown_category"),
    ({"id": 21, "image_id": 42, "category_id": 1, "bbox": [1, 1, 2, 2]}, "unknown_image"),
    ({"id": 22, "image_id": 1, "category_id": 1}, "bad_bbox"),
    ({"id": 23, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3]}, "bad_bbox"),
    ({"id": 24, "image_id": 1, "category_id": 1, "bbox": ["1", 2, 3, 4]}, "bad_bbox"),
    ({"id": 25, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, True]}, "bad_bbox"),
    ({"id": 26, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "iscrowd": 2}, "bad_record"),
    ({"id": 27, "image_id": 9, "category_id": 1, "bbox": [1, 2, 3, 4]}, "bad_image"),
    ({"id": 11, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}, "duplicate_region"),
]


@pytest.mark.parametrize(
    ("annotation", "rule"), BAD_ANNOTATIONS, ids=[r for _, r in BAD_ANNOTATIONS]
)
def test_coco_quarantines_unmappable_annotation(
    tmp_path: Path, annotation: dict, rule: str
) -> None:
    doc = coco_doc()
    doc["images"].append({"id": 9, "file_name": "no_size.jpg"})  # invalid: no width/height
    doc["annotations"].append(annotation)
    quarantine = Quarantine()
    cfg = coco_cfg(tmp_path, doc)
    table = read_table(cfg, quarantine)
    assert table.num_rows == 4  # the good annotations are all still there
    rejected = [
        r for r in quarantine.to_table().to_pylist() if r["record"].startswith("annotation")
    ]
    assert [(r["rule"], r["record"], r["stage"]) for r in rejected] == [
        (rule, f"annotation id={annotation['id']}", "ingest")
    ]
    assert str(cfg.annotations) in rejected[0]["message"]
    assert f"annotation id={annotation['id']}" in rejected[0]["message"]
    assert json.loads(rejected[0]["payload"]) == annotation


def test_coco_quarantines_bad_and_duplicate_image_entries(tmp_path: Path) -> None:
    doc = coco_doc()
    doc["images"] += [
        {"id": 9, "file_name": "x.jpg", "width": "wide", "height": 3},
        dict(doc["images"][0]),
    ]
    doc["annotations"].append({"id": 30})  # no image_id
    quarantine = Quarantine()
    read_table(coco_cfg(tmp_path, doc), quarantine)
    got = [(r["rule"], r["record"]) for r in quarantine.to_table().to_pylist()]
    assert got == [
        ("bad_image", "image id=9"),
        ("duplicate_image", "image id=1"),
        ("bad_record", "annotation id=30"),
    ]
    assert "'width'" in quarantine.to_table().column("message")[0].as_py()


@pytest.mark.parametrize(
    ("content", "rule", "position"),
    [
        (b'{"images": [}', "bad_json", "line 1 column 13"),
        (b'{"images": [],\n "x": \xff}', "not_utf8", "byte 21"),
        (b'{"annotations": [], "categories": []}', "bad_structure", "key 'images'"),
        (b"[1, 2]", "bad_structure", "top level"),
    ],
)
def test_coco_fatal_file_problems_raise_data_error(
    tmp_path: Path, content: bytes, rule: str, position: str
) -> None:
    path = tmp_path / "instances.json"
    path.write_bytes(content)
    cfg = SourceConfig(format="coco", annotations=path, images=tmp_path)
    with pytest.raises(DataError) as err:
        read_table(cfg, Quarantine())
    assert (err.value.rule, err.value.record) == (rule, position)
    assert str(path) in str(err.value) and position in str(err.value)


def test_coco_missing_annotations_or_captions_file_is_fatal(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(DataError, match="missing_file") as err:
        read_table(SourceConfig(format="coco", annotations=missing, images=tmp_path), Quarantine())
    assert str(missing) in str(err.value)
    with pytest.raises(DataError, match="captions file does not exist"):
        read_table(coco_cfg(tmp_path, coco_doc(), captions=missing), Quarantine())


@pytest.fixture(scope="module")
def coco128() -> tuple[dict[str, Any], pa.Table, Quarantine]:
    ann_path = COCO128 / "annotations" / "instances_train2017.json"
    if not ann_path.is_file():
        pytest.skip(f"shared coco128 data not found at {ann_path.resolve()}")
    cfg = SourceConfig(
        format="coco", annotations=ann_path, images=COCO128 / "train2017", source="coco128"
    )
    quarantine = Quarantine()
    table = read_table(cfg, quarantine)
    return json.loads(ann_path.read_text(encoding="utf-8")), table, quarantine


def test_coco128_every_annotation_is_exactly_one_row(
    coco128: tuple[dict, pa.Table, Quarantine],
) -> None:
    doc, table, quarantine = coco128
    assert (len(doc["images"]), len(doc["annotations"]), len(doc["categories"])) == (128, 939, 80)
    assert len(quarantine) == 0
    assert table.num_rows == 939
    region_ids = table.column("region_id").to_pylist()
    assert sorted(region_ids) == sorted(
        f"coco128/{a['image_id']}#{a['id']}" for a in doc["annotations"]
    )
    assert len(set(region_ids)) == 939
    with_annotations = {a["image_id"] for a in doc["annotations"]}
    assert set(table.column("image_id").to_pylist()) == {f"coco128/{i}" for i in with_annotations}
    assert_contiguous(table.column("image_id").to_pylist())
    names = {c["id"]: c["name"] for c in doc["categories"]}
    assert set(table.column("text").to_pylist()) == {
        names[a["category_id"]] for a in doc["annotations"]
    }
    assert sum(table.column("iscrowd").to_pylist()) == sum(a["iscrowd"] for a in doc["annotations"])


def test_coco128_boxes_sizes_and_paths_match_the_source(
    coco128: tuple[dict, pa.Table, Quarantine],
) -> None:
    doc, table, _ = coco128
    rows = {r["region_id"]: r for r in table.to_pylist()}
    images = {i["id"]: i for i in doc["images"]}
    for ann in doc["annotations"][::97]:
        row = rows[f"coco128/{ann['image_id']}#{ann['id']}"]
        x, y, w, h = ann["bbox"]
        assert [row["x1"], row["y1"], row["x2"], row["y2"]] == np.float32(
            [x, y, x + w, y + h]
        ).tolist()
        image = images[ann["image_id"]]
        assert (row["width"], row["height"]) == (image["width"], image["height"])
        assert Path(row["image_path"]).is_file()
