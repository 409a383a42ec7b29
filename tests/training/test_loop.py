from __future__ import annotations

import torch

from granvit_pipeline.training.loop import to_device


def test_to_device_casts_model_inputs_but_keeps_box_pixels_float32() -> None:
    batch = {
        "pixel_values": torch.rand(2, 3, 8, 8),
        "boxes_px": torch.tensor([[301.0, 141.0, 397.0, 203.0]] * 2),
        "input_ids": torch.ones(2, 5, dtype=torch.long),
        "tasks": ["caption2bbox"] * 2,
    }
    moved = to_device(batch, torch.device("cpu"), torch.bfloat16)
    assert moved["pixel_values"].dtype == torch.bfloat16
    assert moved["input_ids"].dtype == torch.long
    assert moved["boxes_px"].dtype == torch.float32
    torch.testing.assert_close(moved["boxes_px"], batch["boxes_px"], rtol=0, atol=0)
    assert moved["tasks"] == batch["tasks"]
