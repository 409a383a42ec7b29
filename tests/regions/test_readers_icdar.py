"""ICDAR reader: 2015 quads, 2013 boxes (both separators), BOM, ``###``, bad lines, images."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from granvit_pipeline.regions.quarantine import DataError, Quarantine
from granvit_pipeline.regions.readers import SourceConfig, read_source
from granvit_pipeline.regions.readers.icdar import parse_line
from granvit_pipeline.regions.schema import REGION_SCHEMA, assign_split

BOM = "\ufeff"
GT_2015 = (
    BOM
    + "377,117,463,117,465,130,378,130,Genaxis Theatre\r\n493,115,519,115,519,131,493,131,###\r\n"
)
GT_2013 = '38 43 920 215 "Tiredness"\n\n275 264 665 450 "kills,  \\"really\\""\n'
GT_2013_COMMA = '10, 20, 30, 40, "A, B"\n'


@pytest.mark.parametrize(
    ("line", "box", "text"),
    [
        ("1,2,9,1,10,8,2,9,hello, world,!", [1, 1, 10, 9], "hello, world,!"),
        ("-1.5,2,3,4,5,6,7,8,", [-1.5, 2, 7, 8], ""),
        ('38 43 920 215 "Tiredness"', [38, 43, 920, 215], "Tiredness"),
        ('38, 43, 920, 215, "a, b"', [38, 43, 920, 215], "a, b"),
        ('50 60 40 30 "flipped stays flipped"', [50, 60, 40, 30], "flipped stays flipped"),
    ],
)
def test_parse_line_accepts_both_icdar_forms(line: str, box: list[float], text: str) -> None:
    assert parse_line(line) == (box, text)


@pytest.mark.parametrize(
    "line",
    ["1,2,3,4,5,6,7,8", "1 2 3 Tiredness", "1 2 3 4 unquoted", "a,b,c,d,e,f,g,h,text", "1 2 3 4"],
)
def test_parse_line_rejects_other_lines(line: str) -> None:
    assert parse_line(line) is None


def make_dataset(tmp_path: Path) -> tuple[Path, Path]:
    gt, images = tmp_path / "gt", tmp_path / "images"
    gt.mkdir()
    images.mkdir()
    (gt / "gt_img_1.txt").write_text(GT_2015, encoding="utf-8", newline="")
    (gt / "gt_100.txt").write_text(GT_2013, encoding="utf-8")
    (gt / "gt_img_3.txt").write_text(GT_2013_COMMA, encoding="utf-8")
    (gt / "readme.txt").write_text("not ground truth", encoding="utf-8")
    Image.new("RGB", (1280, 720)).save(images / "img_1.jpg")
    Image.new("RGB", (1000, 500)).save(images / "100.jpg")
    Image.new("RGB", (64, 48)).save(images / "img_3.png")  # found through the .png fallback
    return gt, images


def read(cfg: SourceConfig, quarantine: Quarantine) -> pa.Table:
    return pa.Table.from_batches(
        list(read_source(cfg, quarantine, batch_size=2)), schema=REGION_SCHEMA
    )


def test_icdar_maps_lines_to_ocr_regions(tmp_path: Path) -> None:
    gt, images = make_dataset(tmp_path)
    quarantine = Quarantine()
    rows = read(SourceConfig(format="icdar", annotations=gt, images=images), quarantine).to_pylist()
    assert len(quarantine) == 0
    got = [
        (r["region_id"], [r["x1"], r["y1"], r["x2"], r["y2"]], r["text"], r["text_is_target"])
        for r in rows
    ]
    assert got == [
        ("icdar/100#1", [38, 43, 920, 215], "Tiredness", True),
        ("icdar/100#3", [275, 264, 665, 450], 'kills,  "really"', True),
        ("icdar/img_1#1", [377, 117, 465, 130], "Genaxis Theatre", True),
        ("icdar/img_1#2", [493, 115, 519, 131], "###", False),
        ("icdar/img_3#1", [10, 20, 30, 40], "A, B", True),
    ]
    sizes = {"icdar/100": (1000, 500), "icdar/img_1": (1280, 720), "icdar/img_3": (64, 48)}
    paths = {"icdar/100": "100.jpg", "icdar/img_1": "img_1.jpg", "icdar/img_3": "img_3.png"}
    for row in rows:
        assert (row["width"], row["height"]) == sizes[row["image_id"]]
        assert row["image_path"] == str(images / paths[row["image_id"]])
        assert row["split"] == assign_split(row["image_id"])
        assert (row["kind"], row["text_type"], row["global_caption"], row["iscrowd"]) == (
            "ocr",
            "ocr",
            None,
            False,
        )


def test_icdar_reads_a_single_file(tmp_path: Path) -> None:
    gt, images = make_dataset(tmp_path)
    cfg = SourceConfig(
        format="icdar", annotations=gt / "gt_img_1.txt", images=images, source="ic15"
    )
    table = read(cfg, Quarantine())
    assert table.column("region_id").to_pylist() == ["ic15/img_1#1", "ic15/img_1#2"]


def test_icdar_quarantines_bad_and_non_utf8_lines(tmp_path: Path) -> None:
    gt, images = make_dataset(tmp_path)
    bad = gt / "gt_img_1.txt"
    bad.write_bytes(
        GT_2015.encode() + b"1,2,3\n" + b"1,1,2,1,2,2,1,2,caf\xe9\n" + b"9,9,10,9,10,10,9,10,ok\n"
    )
    quarantine = Quarantine()
    table = read(SourceConfig(format="icdar", annotations=gt, images=images), quarantine)
    assert "icdar/img_1#5" in table.column("region_id").to_pylist()
    rejected = quarantine.to_table().to_pylist()
    assert [(r["rule"], r["record"], r["file"]) for r in rejected] == [
        ("bad_line", "line 3", str(bad)),
        ("not_utf8", "line 4", str(bad)),
    ]
    for row in rejected:
        assert str(bad) in row["message"] and row["record"] in row["message"]
    assert rejected[0]["payload"] == '"1,2,3"'
    file_offset = len(GT_2015.encode()) + len(b"1,2,3\n") + len(b"1,1,2,1,2,2,1,2,caf")
    assert f"file byte {file_offset}" in rejected[1]["message"]


def test_icdar_missing_image_quarantines_the_file_regions(tmp_path: Path) -> None:
    gt, images = make_dataset(tmp_path)
    (images / "100.jpg").unlink()
    quarantine = Quarantine()
    table = read(SourceConfig(format="icdar", annotations=gt, images=images), quarantine)
    assert not any(i == "icdar/100" for i in table.column("image_id").to_pylist())
    rejected = quarantine.to_table().to_pylist()
    assert [(r["rule"], r["region_id"]) for r in rejected] == [
        ("image_missing", "icdar/100#1"),
        ("image_missing", "icdar/100#3"),
    ]
    assert "100.png" in rejected[0]["message"] and str(gt / "gt_100.txt") in rejected[0]["message"]


def test_icdar_missing_or_empty_annotation_directory_is_fatal(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing_file"):
        read(
            SourceConfig(format="icdar", annotations=tmp_path / "nope", images=tmp_path),
            Quarantine(),
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"\[no_files\]") as err:
        read(
            SourceConfig(format="icdar", annotations=tmp_path / "empty", images=tmp_path),
            Quarantine(),
        )
    assert str(tmp_path / "empty") in str(err.value)
