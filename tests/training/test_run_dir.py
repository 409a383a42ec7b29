"""The run directory's metrics reader tolerates a torn last line, and names what it skips."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from granvit_pipeline.training.run_dir import RunDir, last_metrics, read_metrics


def test_rows_in_order_and_a_torn_last_line_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = RunDir(tmp_path).metrics
    rows = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3, "lo')
    with caplog.at_level(logging.WARNING):
        assert read_metrics(path) == rows
    assert f"{path}:3" in caplog.text
    assert last_metrics(path) == rows[-1]


def test_missing_or_empty_file_has_no_rows(tmp_path: Path) -> None:
    assert read_metrics(tmp_path / "missing.jsonl") == []
    (tmp_path / "empty.jsonl").write_text("\n")
    assert last_metrics(tmp_path / "empty.jsonl") == {}


def test_every_path_lies_in_the_run_directory(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path)
    names = {"run_config", "inputs", "metrics", "train_log", "checkpoints", "export",
             "export_tmp", "result", "done"}  # fmt: skip
    paths = {getattr(run_dir, name) for name in names}
    assert len(paths) == len(names) and all(p.parent == tmp_path for p in paths)
