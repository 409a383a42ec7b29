"""RegionTableDataset / FileFolderDataset / JSONLinesDataset: round trips and atomicity."""

from __future__ import annotations

import pyarrow as pa
import pytest
from kedro.io import DatasetError

from granvit_pipeline.datasets import (
    FileFolderDataset,
    JSONLinesDataset,
    RegionStream,
    RegionTableDataset,
)
from granvit_pipeline.regions.quarantine import Quarantine
from granvit_pipeline.regions.schema import REGION_SCHEMA, region_batch


def _rows(n: int, offset: int = 0) -> list[dict]:
    return [
        {
            "image_id": f"t/{(i + offset) // 3}",
            "source": "t",
            "kind": "natural",
            "width": 100,
            "height": 80,
            "region_id": f"t/{(i + offset) // 3}#{i + offset}",
            "x1": 1.0,
            "y1": 2.0,
            "x2": 30.0 + i,
            "y2": 40.0,
            "text": f"thing {i}",
            "text_type": "caption",
            "global_caption": None,
            "split": "train",
            "image_path": "x.png",
            "iscrowd": False,
            "text_is_target": True,
        }
        for i in range(n)
    ]


def test_region_table_round_trip_in_parts(tmp_path):
    quarantine = Quarantine()
    quarantine.reject(stage="ingest", file="f.json", record="line 3", rule="bad_json", message="x")
    batches = [region_batch(_rows(5)), region_batch(_rows(4, offset=5))]
    ds = RegionTableDataset(str(tmp_path / "table"), rows_per_part=5)
    ds.save(RegionStream(iter(batches), quarantine=quarantine.to_table, summary=lambda: {"a": 1}))

    table = ds.load()
    assert sorted(p.name for p in (tmp_path / "table" / "regions").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    got = pa.Table.from_batches(list(table.batches()), schema=REGION_SCHEMA)
    assert got.to_pylist() == pa.Table.from_batches(batches).to_pylist()
    assert table.summary == {"a": 1, "rows": 9}
    assert table.quarantine().column("rule").to_pylist() == ["bad_json"]


def test_failed_save_leaves_previous_table_untouched(tmp_path):
    path = tmp_path / "table"
    ds = RegionTableDataset(str(path))
    ds.save(RegionStream(iter([region_batch(_rows(2))])))

    def exploding():
        yield region_batch(_rows(3))
        raise RuntimeError("source broke mid-stream")

    with pytest.raises(DatasetError, match="source broke"):
        ds.save(RegionStream(exploding()))
    assert ds.load().num_rows == 2
    assert [p.name for p in tmp_path.iterdir()] == ["table"], "temporary folder left behind"


def test_empty_stream_gives_an_empty_table_with_schema(tmp_path):
    ds = RegionTableDataset(str(tmp_path / "t"))
    ds.save(RegionStream(iter([])))
    assert ds.load().dataset().to_table().schema == REGION_SCHEMA


def test_file_folder_refuses_escaping_names(tmp_path):
    ds = FileFolderDataset(str(tmp_path / "imgs"))
    ds.save({"images/a.png": b"1"})
    assert (tmp_path / "imgs" / "images" / "a.png").read_bytes() == b"1"
    with pytest.raises(DatasetError, match="escapes"):
        ds.save({"../evil.png": b"x"})
    assert (tmp_path / "imgs" / "images" / "a.png").exists()
    assert not (tmp_path / "evil.png").exists()


def test_jsonlines_round_trip_and_bad_line_named(tmp_path):
    ds = JSONLinesDataset(str(tmp_path / "a.jsonl"))
    ds.save([{"b": 1}, {"a": "é"}])
    assert ds.load() == [{"b": 1}, {"a": "é"}]
    (tmp_path / "a.jsonl").write_text('{"b": 1}\n\n{oops\n')
    with pytest.raises(DatasetError, match=r"a.jsonl line 3: not JSON"):
        ds.load()
