"""The DVC data versions a run records: one ``dvc.<path>`` tag per stage out of ``dvc.lock``
and the lock's digest; nothing without a lock."""

from __future__ import annotations

import hashlib
from pathlib import Path

from granvit_pipeline.tracking import dvc_lock_tags

LOCK = """schema: '2.0'
stages:
  shard:
    cmd: kedro run --pipelines shard
    deps:
    - path: data/03_primary/regions
      hash: md5
      md5: 0c1d.dir
    - path: src/granvit_pipeline/pipelines/shard
      hash: md5
      md5: aa11.dir
    outs:
    - path: data/05_model_input/shards
      hash: md5
      md5: 5ea7.dir
      size: 1234
      nfiles: 3
  evaluate:
    cmd: kedro run --pipelines evaluate
    outs:
    - path: data/08_reporting/run_report.html
      hash: md5
      md5: 4e90
    - path: data/08_reporting/report+v1.json
      hash: md5
      md5: 77aa
"""


def test_every_stage_out_and_the_lock_digest(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text(LOCK)
    assert dvc_lock_tags(tmp_path) == {
        "dvc.data/05_model_input/shards": "5ea7.dir",
        "dvc.data/08_reporting/run_report.html": "4e90",
        "dvc.data/08_reporting/report_v1.json": "77aa",  # a valid MLflow tag key
        "dvc.lock_sha256": hashlib.sha256(LOCK.encode()).hexdigest(),
    }  # code deps are in the commit; data deps are outs of earlier stages


def test_no_lock_no_tags_and_a_broken_lock_only_its_digest(tmp_path: Path) -> None:
    assert dvc_lock_tags(tmp_path) == {}
    (tmp_path / "dvc.lock").write_text("stages: [unclosed\n")
    assert set(dvc_lock_tags(tmp_path)) == {"dvc.lock_sha256"}
