"""ZeRO stages 0 and 3 against stage 2: same metrics, same weights, exact in-process resume."""

from __future__ import annotations

import pytest
import torch

from granvit_pipeline.training.callbacks import TrainingStopped
from granvit_pipeline.training.engine import train

TEMPLATES = {0: "zero0.json", 2: "zero2_cpu.json", 3: "zero3.json"}


def _cfg(toy_config, deepspeed_conf, out, stage, **overrides):
    values = {"steps": 4, "grad_clip": 0.1, "checkpoint_every": 2, "zero_stage": stage}
    values.update(overrides)
    return toy_config(out, deepspeed_config=deepspeed_conf / TEMPLATES[stage], **values)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 3])
def test_stage_matches_zero2_and_resumes_exactly(
    tmp_path, toy_config, deepspeed_conf, read_metrics, exported, stage
):
    reference = _cfg(toy_config, deepspeed_conf, tmp_path / "zero2", 2)
    full = _cfg(toy_config, deepspeed_conf, tmp_path / "full", stage)
    train(reference)
    train(full)
    ref_metrics, metrics = read_metrics(reference.output_dir), read_metrics(full.output_dir)
    for ours, ref in zip(metrics, ref_metrics, strict=True):
        assert ours["loss"] == pytest.approx(ref["loss"], rel=1e-6)
        assert ours["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-5)  # pre-clip
    weights, ref_weights = exported(full.output_dir), exported(reference.output_dir)
    for name, value in ref_weights.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-5, atol=1e-6)

    interrupted = _cfg(toy_config, deepspeed_conf, tmp_path / "resumed", stage, stop_after_step=3)
    with pytest.raises(TrainingStopped):
        train(interrupted)
    result = train(interrupted.model_copy(update={"stop_after_step": None}))
    assert result.resumed_from_step == 2
    resumed = exported(interrupted.output_dir)
    for name, value in weights.items():
        assert torch.equal(resumed[name], value), name
