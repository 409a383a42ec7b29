"""``kedro models reproduce`` without training: what a version's tags say, the comparison of
metrics and identities, and the git worktree it runs in (``registry.reproduce``, ``.checkout``).
The round trip through real pipelines is in tests/pipelines/test_reproduce_pipeline.py."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from granvit_pipeline.registry import checkout
from granvit_pipeline.registry.checkout import ReproduceError
from granvit_pipeline.registry.reproduce import (
    compare_identity,
    compare_metrics,
    failures,
    format_table,
    origin_from_tags,
)

METRICS = {"caption2bbox/acc@0.5": 0.25, "bbox2caption/rouge_l": 0.5}


def test_origin_needs_a_commit_and_metrics() -> None:
    tags = {"git.commit": "c0ffee", "git.dirty": "true", "kedro.env": "tiny",
            "eval.metrics": json.dumps(METRICS)}  # fmt: skip
    origin = origin_from_tags("3", tags)
    assert (origin.commit, origin.dirty, origin.kedro_env, origin.metrics) == (
        "c0ffee", True, "tiny", METRICS)  # fmt: skip
    with pytest.raises(ReproduceError, match=r"no git\.commit tag"):
        origin_from_tags("3", {"eval.metrics": json.dumps(METRICS)})
    with pytest.raises(ReproduceError, match=r"no eval\.metrics tag"):
        origin_from_tags("3", {"git.commit": "c0ffee"})


def test_metrics_must_match_within_the_tolerance() -> None:
    assert failures(compare_metrics(METRICS, dict(METRICS))) == []
    nudged = {**METRICS, "bbox2caption/rouge_l": 0.5 + 1e-9}
    assert [c.name for c in failures(compare_metrics(METRICS, nudged))] == [
        "bbox2caption/rouge_l"]  # fmt: skip
    assert failures(compare_metrics(METRICS, nudged, tolerance=1e-6)) == []
    missing = compare_metrics(METRICS, {"caption2bbox/acc@0.5": 0.25, "new/metric": 1.0})
    assert {c.name for c in failures(missing)} == {"bbox2caption/rouge_l", "new/metric"}
    assert failures(compare_metrics({"m": math.nan}, {"m": math.nan})) == []
    speed = compare_metrics({"probe/regions_per_s": 500.0}, {"probe/regions_per_s": 800.0})
    assert failures(speed) == [] and "differs" in format_table(speed)  # the machine, not the model


def test_identity_rows_data_and_params_required_weights_shown() -> None:
    tags = {"data.version": "d1", "model.weights_digest": "w1", "params.digest": "p1"}
    report = {"data_version": "d2", "model": {"weights_digest": "w2"}}
    checks = compare_identity(tags, report, params_now="p1")
    assert [(c.name, c.ok) for c in checks] == [
        ("data.version", False),
        ("params.digest", True),
        ("model.weights_digest", False),
    ]
    assert [c.name for c in failures(checks)] == ["data.version"]  # weights: not across GPUs
    table = format_table(compare_metrics(METRICS, METRICS) + checks)
    assert "MISMATCH" in table and "differs" in table and table.count(" ok") == 3


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout


def test_worktree_at_a_commit_is_removed_afterwards(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one\n")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-q", "-m", "one")
    first = _git(tmp_path, "rev-parse", "HEAD").strip()
    (tmp_path / "a.txt").write_text("two\n")
    _git(tmp_path, "commit", "-q", "-am", "two")

    checkout.check_commit(tmp_path, first)
    with pytest.raises(ReproduceError, match="not in the git repository"):
        checkout.check_commit(tmp_path, "0" * 40)
    with checkout.worktree(tmp_path, first) as tree:
        assert (tree / "a.txt").read_text() == "one\n"
        (tree / "untracked.bin").write_text("pulled data")
    assert not tree.exists()
    assert len(_git(tmp_path, "worktree", "list").splitlines()) == 1
    assert (tmp_path / "a.txt").read_text() == "two\n"  # the user's checkout is untouched
