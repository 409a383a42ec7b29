"""SourceConfig validation, the FORMATS registry and read_source dispatch/logging."""

from __future__ import annotations

import json
import logging
import typing
from pathlib import Path

import pydantic
import pytest

from granvit_pipeline.regions.quarantine import DataError, Quarantine
from granvit_pipeline.regions.readers import FORMATS, SourceConfig, read_source
from granvit_pipeline.regions.readers._rows import RecordProblem, RowBatcher, get_size


def test_formats_cover_every_configurable_format() -> None:
    literal = typing.get_args(SourceConfig.model_fields["format"].annotation)
    assert set(FORMATS) == set(literal) == {"coco", "vg", "icdar", "refcoco", "jsonl"}


def test_source_config_rejects_typos_and_misplaced_options(tmp_path: Path) -> None:
    base = {"format": "jsonl", "annotations": tmp_path / "a.jsonl", "images": tmp_path}
    assert SourceConfig(**base).source_name == "jsonl"
    assert SourceConfig(**base, source="mine").source_name == "mine"
    with pytest.raises(pydantic.ValidationError, match="annotaions"):
        SourceConfig(**base, annotaions=tmp_path)
    with pytest.raises(pydantic.ValidationError, match="only read for format 'coco'"):
        SourceConfig(**base, captions=tmp_path / "c.json")
    for bad in ("", "a/b", "a#b"):
        with pytest.raises(pydantic.ValidationError, match="source must be"):
            SourceConfig(**base, source=bad)
    with pytest.raises(pydantic.ValidationError):
        SourceConfig(**{**base, "format": "yolo"})


def test_read_source_rejects_bad_batch_size_at_call_time(tmp_path: Path) -> None:
    cfg = SourceConfig(format="jsonl", annotations=tmp_path / "a.jsonl", images=tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        read_source(cfg, Quarantine(), batch_size=0)


@pytest.mark.parametrize("fmt", ["coco", "refcoco", "vg", "jsonl"])
def test_missing_annotations_file_is_fatal_for_every_format(tmp_path: Path, fmt: str) -> None:
    cfg = SourceConfig(format=fmt, annotations=tmp_path / "missing.json", images=tmp_path)
    with pytest.raises(DataError) as err:
        list(read_source(cfg, Quarantine()))
    assert err.value.rule == "missing_file" and str(tmp_path / "missing.json") in str(err.value)


@pytest.mark.parametrize("fmt", ["coco", "refcoco", "vg"])
def test_json_formats_report_line_and_column_of_a_syntax_error(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "a.json"
    path.write_text('{\n  "images": [\n    {"id": 1,,}\n  ]\n}', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3 column 14: \[bad_json\]") as err:
        list(read_source(SourceConfig(format=fmt, annotations=path, images=tmp_path), Quarantine()))
    assert str(path) in str(err.value)


def test_read_source_logs_rows_and_new_rejections(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "a.jsonl"
    good = {
        "image_id": "1",
        "image": "1.png",
        "width": 4,
        "height": 4,
        "kind": "ocr",
        "regions": [],
    }
    good["regions"] = [{"id": "r", "box": [0, 0, 1, 1], "text": "t", "text_type": "ocr"}]
    path.write_text(json.dumps(good) + "\nnot json\n", encoding="utf-8")
    quarantine = Quarantine()
    quarantine.reject(stage="ingest", file="x", record="y", rule="old_rule", message="m")
    with caplog.at_level(logging.INFO, logger="granvit_pipeline.regions.readers"):
        list(
            read_source(SourceConfig(format="jsonl", annotations=path, images=tmp_path), quarantine)
        )
    summary = [
        r.getMessage() for r in caplog.records if r.name == "granvit_pipeline.regions.readers"
    ]
    assert summary == [f"source jsonl (jsonl, {path}): 1 rows; quarantined {{'bad_json': 1}}"]


def test_row_batcher_rejects_nonpositive_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        RowBatcher(0)


@pytest.mark.parametrize("value", [2**31, -(2**31) - 5, float("nan"), 3.5])
def test_image_sizes_must_fit_int32(value: float) -> None:
    with pytest.raises(RecordProblem, match="int32"):
        get_size({"width": value}, "width")
