"""The training engine on the toy recipe, in-process, with real DeepSpeed steps on the CPU."""

from __future__ import annotations

import json
import math

import pytest
import torch

from granvit_pipeline.training.callbacks import (
    NonFiniteLossError,
    TrainingOOMError,
    TrainResult,
    is_out_of_memory,
    out_of_memory_error,
)
from granvit_pipeline.training.checkpoint import CheckpointError
from granvit_pipeline.training.engine import train
from granvit_pipeline.training.toy import ToyRecipe

STEPS, WARMUP, PEAK_LR, MIN_RATIO = 20, 5, 2e-2, 0.1


class Recorder:
    """A TrainCallback that keeps everything it is told."""

    def __init__(self):
        self.started, self.steps, self.checkpoints, self.ended = [], [], [], []

    def on_train_start(self, run_config):
        self.started.append(run_config)

    def on_step(self, step, metrics):
        self.steps.append((step, metrics))

    def on_checkpoint(self, step, path):
        self.checkpoints.append((step, path))

    def on_train_end(self, result):
        self.ended.append(result)


def initial_weights(cfg) -> dict[str, torch.Tensor]:
    torch.manual_seed(cfg.seed)
    return ToyRecipe().build_model(cfg).state_dict()


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, toy_config):
    """One 20-step run with warmup + cosine, checkpoints every 5 steps, keep 2."""
    out = tmp_path_factory.mktemp("toy_run")
    cfg = toy_config(
        out,
        steps=STEPS,
        warmup_steps=WARMUP,
        lr=PEAK_LR,
        min_lr_ratio=MIN_RATIO,
        micro_batch_size=16,
        checkpoint_every=5,
        keep_checkpoints=2,
    )
    recorder = Recorder()
    result = train(cfg, callbacks=[recorder])
    return cfg, result, recorder


@pytest.mark.slow
def test_loss_decreases(toy_run, read_metrics):
    cfg, _, _ = toy_run
    losses = [m["loss"] for m in read_metrics(cfg.output_dir)]
    assert len(losses) == STEPS
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, losses


@pytest.mark.slow
def test_lr_follows_warmup_then_cosine(toy_run, read_metrics):
    cfg, _, _ = toy_run
    logged = [m["lr"] for m in read_metrics(cfg.output_dir)]
    expected = []
    for step in range(1, STEPS + 1):
        if step <= WARMUP:
            expected.append(PEAK_LR * step / WARMUP)
        else:
            cos = 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / (STEPS - WARMUP)))
            expected.append(PEAK_LR * (MIN_RATIO + (1 - MIN_RATIO) * cos))
    assert logged == pytest.approx(expected, rel=1e-9)


@pytest.mark.slow
def test_metrics_and_callbacks_see_every_step(toy_run, read_metrics):
    cfg, result, recorder = toy_run
    metrics = read_metrics(cfg.output_dir)
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))
    assert [s for s, _ in recorder.steps] == list(range(1, STEPS + 1))
    assert [m for _, m in recorder.steps] == metrics
    wanted = {"loss", "loss_mse", "loss_activity", "lr", "grad_norm", "samples_per_s"}
    assert wanted | {"tokens_per_s", "elapsed_s"} <= set(metrics[0])
    assert all(m["grad_norm"] > 0 and math.isfinite(m["grad_norm"]) for m in metrics)
    assert all(m["tokens_per_s"] == pytest.approx(m["samples_per_s"] * 4) for m in metrics)
    assert len(recorder.started) == 1 and recorder.started[0]["train"]["steps"] == STEPS
    assert recorder.ended == [result]
    assert [s for s, _ in recorder.checkpoints] == [5, 10, 15, 20]


@pytest.mark.slow
def test_outputs_layout_and_checkpoint_retention(toy_run):
    cfg, result, _ = toy_run
    out = cfg.output_dir
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("step_*"))
    assert ckpts == ["step_000015", "step_000020"]
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_000020"
    for name in ("COMPLETE", "trainer_meta.json", "trainer_state_rank000.pt"):
        assert (out / "checkpoints" / "step_000020" / name).is_file()
    assert (out / "DONE").is_file() and not (out / "export.tmp").exists()
    assert TrainResult.read(out / "result.json") == result
    run_config = json.loads((out / "run_config.json").read_text())
    assert run_config["deepspeed"]["optimizer"]["params"]["lr"] == PEAK_LR
    assert run_config["train"]["steps"] == STEPS and run_config["world_size"] == 1


@pytest.mark.slow
def test_frozen_parameters_unchanged_trainable_ones_moved(toy_run, exported):
    cfg, _, _ = toy_run
    before, after = initial_weights(cfg), exported(cfg.output_dir)
    for name in ("input_proj.weight", "input_proj.bias"):
        assert torch.equal(before[name], after[name])
    for name in ("mlp.0.weight", "mlp.2.weight"):
        assert not torch.allclose(before[name], after[name])
    # The EMA teacher (after_step hook) trails the student.
    assert not torch.equal(after["ema.0.weight"], after["mlp.0.weight"])


@pytest.mark.slow
def test_gradient_accumulation_matches_one_big_batch(tmp_path, toy_config, read_metrics, exported):
    accumulated = toy_config(tmp_path / "acc", micro_batch_size=4, grad_accum_steps=2, steps=3)
    big = toy_config(tmp_path / "big", micro_batch_size=8, grad_accum_steps=1, steps=3)
    train(accumulated)
    train(big)
    acc_metrics, big_metrics = read_metrics(accumulated.output_dir), read_metrics(big.output_dir)
    for a, b in zip(acc_metrics, big_metrics, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    acc_w, big_w = exported(accumulated.output_dir), exported(big.output_dir)
    for name in acc_w:
        torch.testing.assert_close(acc_w[name], big_w[name], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_gradient_clipping_bounds_the_update(tmp_path, toy_config, read_metrics, exported):
    """First AdamW step: update_i = lr * g_i / (|g_i| + eps), so |update| <= lr * |g| / eps.

    Clipping the global norm to 1e-9 (< eps = 1e-8) bounds the update norm by lr / 10; the
    unclipped update has a norm near lr * sqrt(#params). grad_norm is logged before clipping.
    """
    common = {"steps": 1, "min_lr_ratio": 1.0, "eps": 1e-8}
    clipped = toy_config(tmp_path / "clip", grad_clip=1e-9, **common)
    free = toy_config(tmp_path / "free", grad_clip=0.0, **common)
    train(clipped)
    train(free)
    norm_clipped = read_metrics(clipped.output_dir)[0]["grad_norm"]
    norm_free = read_metrics(free.output_dir)[0]["grad_norm"]
    assert norm_clipped == pytest.approx(norm_free, rel=1e-6) and norm_clipped > 1e-3
    before = initial_weights(clipped)

    def update_norm(cfg):
        after = exported(cfg.output_dir)
        deltas = [(after[k] - before[k]).flatten() for k in before if k.startswith("mlp.")]
        return float(torch.cat(deltas).norm())

    lr = clipped.lr
    assert update_norm(clipped) <= lr * 1e-9 / 1e-8 * 1.001
    assert update_norm(free) > 10 * lr


@pytest.mark.slow
def test_nan_loss_stops_with_step_and_batch_ids(tmp_path, toy_config, read_metrics):
    cfg = toy_config(tmp_path, steps=5, micro_batch_size=4, recipe_args={"nan_sample_ids": [9]})
    with pytest.raises(NonFiniteLossError, match="step 3") as err:
        train(cfg)
    assert err.value.step == 3
    assert err.value.ids_by_rank == [[8, 9, 10, 11]]
    assert "9" in str(err.value)
    assert [m["step"] for m in read_metrics(tmp_path)] == [1, 2]
    for name in ("DONE", "result.json", "export", "export.tmp"):
        assert not (tmp_path / name).exists()


@pytest.mark.slow
def test_mismatched_checkpoint_is_a_clear_error(tmp_path, toy_config):
    train(toy_config(tmp_path, steps=2, checkpoint_every=2))
    wider = toy_config(tmp_path, steps=4, checkpoint_every=2, recipe_args={"hidden": 16})
    with pytest.raises(CheckpointError) as err:
        train(wider)
    message = str(err.value)
    assert "step_000002" in message and "mlp.0.weight" in message
    assert "[32, 8]" in message and "[16, 8]" in message
    assert not (tmp_path / "DONE").exists()


def test_missing_explicit_checkpoint_is_a_clear_error(tmp_path, toy_config):
    missing = tmp_path / "checkpoints" / "step_000007"
    with pytest.raises(CheckpointError, match=r"does not exist: .*step_000007"):
        train(toy_config(tmp_path, resume_from=str(missing)))


def test_out_of_memory_error_names_micro_batch_size():
    try:
        torch.empty(2**62, dtype=torch.uint8)  # a real allocator failure on the CPU
    except RuntimeError as real:
        assert is_out_of_memory(real)
        converted = out_of_memory_error(real, step=7, micro_batch_size=32)
    else:
        pytest.fail("allocating 4 EiB succeeded")
    assert isinstance(converted, TrainingOOMError)
    assert "step 7" in str(converted) and "micro_batch_size=32" in str(converted)
    assert "grad_accum_steps" in str(converted)
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
