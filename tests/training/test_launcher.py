"""Training in child processes: kill-and-resume equivalence, and a real 2-process run."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from granvit_pipeline.training.callbacks import TrainingStopped
from granvit_pipeline.training.engine import train
from granvit_pipeline.training.launcher import (
    TAIL_LINES,
    TrainingProcessError,
    build_command,
    launch,
    stream_process,
)


@pytest.mark.slow
def test_killed_then_resumed_run_equals_uninterrupted_run(
    tmp_path, toy_config, read_metrics, exported
):
    """A: 6 steps in one go. B: a process that exits after step 3 (its last checkpoint is step 2),
    then a fresh process that resumes. Final weights (and EMA teacher) must be bitwise equal."""
    common = {"steps": 6, "warmup_steps": 2, "checkpoint_every": 2, "keep_checkpoints": 2}
    uninterrupted = toy_config(tmp_path / "a", **common)
    train(uninterrupted)

    interrupted = toy_config(tmp_path / "b", stop_after_step=3, **common)
    with pytest.raises(TrainingStopped, match="stopped after step 3"):  # from the child's log
        launch(interrupted)
    out = interrupted.output_dir
    assert [p.name for p in sorted((out / "checkpoints").glob("step_*"))] == ["step_000002"]
    assert not (out / "DONE").exists() and not (out / "export").exists()
    assert [m["step"] for m in read_metrics(out)] == [1, 2, 3]

    result = launch(interrupted.model_copy(update={"stop_after_step": None}))
    assert result.resumed_from_step == 2 and result.final_step == 6
    assert (out / "DONE").is_file()
    metrics_a, metrics_b = read_metrics(uninterrupted.output_dir), read_metrics(out)
    assert [m["step"] for m in metrics_b] == list(range(1, 7))
    assert [m["loss"] for m in metrics_b] == [m["loss"] for m in metrics_a]
    assert [m["lr"] for m in metrics_b] == [m["lr"] for m in metrics_a]
    weights_a, weights_b = exported(uninterrupted.output_dir), exported(out)
    assert sorted(weights_a) == sorted(weights_b) and "ema.0.weight" in weights_a
    for name, value in weights_a.items():
        assert torch.equal(value, weights_b[name]), name


@pytest.mark.slow
def test_two_processes_through_the_deepspeed_launcher(tmp_path, toy_config, exported):
    """2 CPU ranks (gloo) x micro-batch 4 see the same samples as 1 rank x 8, so they must end
    at the same weights; the ranks must agree with each other exactly."""
    two = toy_config(tmp_path / "two", num_processes=2, micro_batch_size=4, checkpoint_every=4)
    assert "deepspeed.launcher.runner" in build_command(two, two.output_dir / "rc.json", 1234)
    result = launch(two)
    assert result.world_size == 2 and result.final_step == two.steps
    assert len(result.rank_weight_digests) == 2
    assert result.rank_weight_digests[0] == result.rank_weight_digests[1]
    ckpt = two.output_dir / "checkpoints" / "step_000004"
    for rank in (0, 1):
        assert (ckpt / f"trainer_state_rank{rank:03d}.pt").is_file()
        assert (ckpt / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").is_file()

    one = toy_config(tmp_path / "one", micro_batch_size=8)
    train(one)
    weights_two, weights_one = exported(two.output_dir), exported(one.output_dir)
    for name, value in weights_one.items():
        torch.testing.assert_close(weights_two[name], value, rtol=1e-4, atol=1e-5)


def test_failing_child_output_is_streamed_and_kept(tmp_path):
    script = "import sys\nfor i in range(100): print(f'line {i}')\nsys.exit(3)"
    log = tmp_path / "child.log"
    returncode, tail = stream_process([sys.executable, "-c", script], dict(os.environ), log)
    assert returncode == 3
    assert tail[-1] == "line 99" and len(tail) == TAIL_LINES
    assert log.read_text().splitlines() == [f"line {i}" for i in range(100)]
    message = str(TrainingProcessError(returncode, ["python", "-c", "..."], tail))
    assert "status 3" in message and "line 99" in message and "line 59" not in message
