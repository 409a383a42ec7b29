"""JSONDataset / TextDataset: round trips, atomic replace, clear errors."""

from __future__ import annotations

import pytest
from kedro.io import DatasetError

from granvit_pipeline.datasets import JSONDataset, TextDataset


def test_json_round_trip_with_save_args(tmp_path):
    ds = JSONDataset(
        str(tmp_path / "sub" / "report.json"), save_args={"indent": 2, "sort_keys": True}
    )
    ds.save({"b": 1, "a": [1.5, "x"]})
    assert ds.load() == {"a": [1.5, "x"], "b": 1}
    assert (tmp_path / "sub" / "report.json").read_text().startswith('{\n  "a"')


def test_json_failed_save_keeps_the_previous_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "report.json"
    ds = JSONDataset(str(path))
    ds.save({"ok": True})
    with pytest.raises(DatasetError):
        ds.save({"bad": object()})  # not JSON-serialisable: fails before anything is written
    assert ds.load() == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_json_load_of_a_broken_file_names_it(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(DatasetError, match=r"broken\.json"):
        JSONDataset(str(path)).load()


def test_text_round_trip_utf8(tmp_path):
    ds = TextDataset(str(tmp_path / "r.html"))
    assert not ds.exists()
    ds.save("<p>Ünïcode ✓</p>")
    assert ds.exists() and ds.load() == "<p>Ünïcode ✓</p>"
