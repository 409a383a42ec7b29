"""TrainConfig validation and DeepSpeed template resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from granvit_pipeline.training.config import (
    DeepSpeedConfigError,
    load_template,
    resolve_deepspeed_config,
)

DEEPSPEED_CONF = Path(__file__).resolve().parents[2] / "conf" / "base" / "deepspeed"


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, node


def test_resolve_fills_every_auto(toy_config, tmp_path):
    cfg = toy_config(tmp_path, micro_batch_size=3, grad_accum_steps=4, lr=2e-3, grad_clip=0.5)
    template = load_template(DEEPSPEED_CONF / "zero2_cpu.json")
    assert "auto" in json.dumps(template)
    resolved = resolve_deepspeed_config(template, cfg, world_size=2, device="cpu")
    assert [k for k, v in _leaves(resolved) if v == "auto"] == []
    assert resolved["train_micro_batch_size_per_gpu"] == 3
    assert resolved["gradient_accumulation_steps"] == 4
    assert resolved["train_batch_size"] == 3 * 4 * 2
    assert resolved["gradient_clipping"] == 0.5
    assert resolved["optimizer"]["params"]["lr"] == 2e-3
    assert resolved["optimizer"]["params"]["betas"] == [0.9, 0.999]
    assert resolved["optimizer"]["params"]["torch_adam"] is True
    assert resolved["bf16"]["enabled"] is False
    assert resolved["zero_optimization"]["stage"] == 2
    assert template["optimizer"]["params"]["lr"] == "auto"  # the template is not modified


def test_precision_auto_is_bf16_on_cuda_only(toy_config, tmp_path):
    cfg = toy_config(tmp_path, precision="auto")
    template = load_template(DEEPSPEED_CONF / "zero2_bf16.json")
    on_gpu = resolve_deepspeed_config(template, cfg, world_size=8, device="cuda")
    on_cpu = resolve_deepspeed_config(template, cfg, world_size=1, device="cpu")
    assert on_gpu["bf16"]["enabled"] is True
    assert "torch_adam" not in on_gpu["optimizer"]["params"]
    assert on_cpu["bf16"]["enabled"] is False


@pytest.mark.parametrize("path", sorted(DEEPSPEED_CONF.glob("*.json")), ids=lambda p: p.name)
def test_every_shipped_template_resolves(toy_config, tmp_path, path):
    stage = int(path.name[len("zero")]) if path.name[len("zero")].isdigit() else 2
    cfg = toy_config(tmp_path, deepspeed_config=path, zero_stage=stage)
    resolved = resolve_deepspeed_config(load_template(path), cfg, world_size=1, device="cpu")
    assert resolved["zero_optimization"]["stage"] == stage


def test_contradiction_names_key_values_and_file(toy_config, tmp_path):
    template = load_template(DEEPSPEED_CONF / "zero2_cpu.json")
    template["optimizer"]["params"]["lr"] = 1e-3
    cfg = toy_config(tmp_path, lr=2e-3)
    with pytest.raises(DeepSpeedConfigError) as err:
        resolve_deepspeed_config(template, cfg, world_size=1, device="cpu")
    message = str(err.value)
    assert "optimizer.params.lr" in message
    assert "0.001" in message and "0.002" in message
    assert "zero2_cpu.json" in message


def test_consistent_concrete_value_is_accepted(toy_config, tmp_path):
    template = {"train_micro_batch_size_per_gpu": 8, "zero_optimization": {"stage": 2}}
    resolved = resolve_deepspeed_config(template, toy_config(tmp_path), 1, "cpu")
    assert resolved["train_batch_size"] == 8


def test_zero_stage_contradiction(toy_config, tmp_path):
    template = {"zero_optimization": {"stage": 3}}
    with pytest.raises(DeepSpeedConfigError, match=r"zero_optimization\.stage.*3.*2"):
        resolve_deepspeed_config(template, toy_config(tmp_path, zero_stage=2), 1, "cpu")


def test_scheduler_block_and_unknown_auto_are_rejected(toy_config, tmp_path):
    cfg = toy_config(tmp_path)
    with pytest.raises(DeepSpeedConfigError, match="scheduler"):
        resolve_deepspeed_config({"scheduler": {"type": "WarmupLR"}}, cfg, 1, "cpu")
    with pytest.raises(DeepSpeedConfigError, match=r"zero_optimization\.reduce_bucket_size"):
        template = {"zero_optimization": {"stage": "auto", "reduce_bucket_size": "auto"}}
        resolve_deepspeed_config(template, cfg, 1, "cpu")


def test_missing_template_is_a_clear_error(tmp_path):
    with pytest.raises(DeepSpeedConfigError, match="not found"):
        load_template(tmp_path / "nope.json")


def test_train_config_forbids_unknown_keys_and_checks_ranges(toy_config, tmp_path):
    with pytest.raises(ValidationError, match="learning_rate"):
        toy_config(tmp_path, learning_rate=1e-3)
    with pytest.raises(ValidationError, match="warmup_steps"):
        toy_config(tmp_path, steps=4, warmup_steps=5)
