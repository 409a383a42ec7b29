"""Checkpoint bookkeeping: which checkpoints count, which are kept, and what may resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from granvit_pipeline.training import checkpoint
from granvit_pipeline.training.checkpoint import CheckpointError


def make(root: Path, step: int, complete: bool = True, **meta) -> Path:
    path = root / checkpoint.checkpoint_tag(step)
    path.mkdir(parents=True)
    (path / checkpoint.META).write_text(json.dumps({"step": step, **meta}))
    if complete:
        (path / checkpoint.COMPLETE).write_text("")
    return path


def test_only_complete_checkpoints_count_oldest_first(tmp_path: Path) -> None:
    make(tmp_path, 20)
    make(tmp_path, 10)
    make(tmp_path, 30, complete=False)  # killed while saving
    assert [p.name for p in checkpoint.complete_checkpoints(tmp_path)] == [
        "step_000010",
        "step_000020",
    ]
    assert checkpoint.complete_checkpoints(tmp_path / "missing") == []


def test_prune_keeps_the_newest_and_a_newer_incomplete_one(tmp_path: Path) -> None:
    for step in (10, 20, 30):
        make(tmp_path, step)
    make(tmp_path, 5, complete=False)
    make(tmp_path, 40, complete=False)  # may be the save in progress
    checkpoint.prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step_000020",
        "step_000030",
        "step_000040",
    ]


def test_resume_choice(tmp_path: Path) -> None:
    assert checkpoint.find_resume_checkpoint(tmp_path, "auto") is None
    make(tmp_path, 10)
    newest = make(tmp_path, 20)
    make(tmp_path, 30, complete=False)
    assert checkpoint.find_resume_checkpoint(tmp_path, "auto") == newest
    assert checkpoint.find_resume_checkpoint(tmp_path, "none") is None
    assert checkpoint.find_resume_checkpoint(tmp_path, str(newest)) == newest
    with pytest.raises(CheckpointError, match="incomplete"):
        checkpoint.find_resume_checkpoint(tmp_path, str(tmp_path / "step_000030"))
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.find_resume_checkpoint(tmp_path, str(tmp_path / "step_000099"))


def test_an_incompatible_checkpoint_names_itself_and_the_field(tmp_path: Path) -> None:
    shapes = {"w": [[4, 4], True], "b": [[4], True]}
    meta = {"recipe": "r", "world_size": 1, "micro_batch_size": 8, "grad_accum_steps": 1,
            "zero_stage": 2, "parameters": shapes}  # fmt: skip
    ckpt = make(tmp_path, 10, **meta)
    checkpoint.check_compatible(ckpt, meta)
    with pytest.raises(CheckpointError, match=r"step_000010 .*micro_batch_size: 8 .* vs 4 now"):
        checkpoint.check_compatible(ckpt, {**meta, "micro_batch_size": 4})
    wider = {**meta, "parameters": {**shapes, "w": [[4, 8], False]}}
    with pytest.raises(
        CheckpointError, match=r"w \[4, 4\] in the checkpoint vs \[4, 8\] \(frozen\)"
    ):
        checkpoint.check_compatible(ckpt, wider)


def test_rng_state_round_trips() -> None:
    state = checkpoint.capture_rng_state()
    expected = torch.rand(3)
    torch.rand(5)  # move on
    checkpoint.restore_rng_state(state)
    assert torch.equal(torch.rand(3), expected)
