from __future__ import annotations

from typing import Any

import pytest
import torch

from granvit_pipeline.model.data import Collator
from granvit_pipeline.model.distill import DistillConfig, EMATeacher
from granvit_pipeline.model.modeling import GranViT
from granvit_pipeline.model.objectives import StageObjective, stage_loss
from granvit_pipeline.model.prompts import PromptTemplates

TASKS = {"global": 1.0, "bbox2caption": 1.0, "caption2bbox": 1.0}
TRAINED = {
    "lm_warmup": {"llm"},
    "stage1": {"vision", "projector"},
    "global_only": {"vision", "projector"},
    "stage2": {"projector", "llm"},
}


@pytest.fixture
def batch(tokenizer: Any, prompts: PromptTemplates, samples: list[dict[str, Any]]) -> dict:
    return Collator(tokenizer, prompts, TASKS, image_size=32, seed=0)(samples)


def _snapshot(model: GranViT) -> dict[str, dict[str, torch.Tensor]]:
    parts = {"vision": model.vision, "projector": model.projector, "llm": model.llm}
    return {k: {n: p.detach().clone() for n, p in m.named_parameters()} for k, m in parts.items()}


@pytest.mark.parametrize("stage", sorted(TRAINED))
def test_frozen_parts_get_no_gradient_and_do_not_move(
    tiny_model: GranViT, batch: dict, stage: str
) -> None:
    tiny_model.set_trainable(stage)
    before = _snapshot(tiny_model)
    optimizer = torch.optim.SGD([p for p in tiny_model.parameters() if p.requires_grad], lr=0.1)
    losses = stage_loss(tiny_model, batch, stage)
    losses["loss"].backward()
    optimizer.step()
    after = _snapshot(tiny_model)
    parts = {"vision": tiny_model.vision, "projector": tiny_model.projector, "llm": tiny_model.llm}
    for part, module in parts.items():
        moved = [not torch.equal(before[part][n], after[part][n]) for n in before[part]]
        if part in TRAINED[stage]:
            assert all(p.grad is not None for p in module.parameters()), part
            assert sum(moved) > 0.9 * len(moved), part
        else:
            assert all(p.grad is None for p in module.parameters()), part
            assert not any(moved), part


def test_stage1_gradient_flows_through_frozen_llm(tiny_model: GranViT, batch: dict) -> None:
    tiny_model.set_trainable("stage1")
    stage_loss(tiny_model, batch, "stage1")["loss"].backward()
    assert tiny_model.projector[0].weight.grad.abs().sum() > 0
    assert tiny_model.vision.embeddings.patch_embedding.weight.grad.abs().sum() > 0


def test_lm_warmup_ignores_the_image(tiny_model: GranViT, batch: dict) -> None:
    loss = stage_loss(tiny_model, batch, "lm_warmup")
    other = stage_loss(
        tiny_model, dict(batch, pixel_values=torch.randn_like(batch["pixel_values"])), "lm_warmup"
    )
    torch.testing.assert_close(loss["loss"], other["loss"])
    assert float(loss["loss_distill"]) == 0.0
    with_image = stage_loss(tiny_model, batch, "stage2")["loss"]
    assert not torch.allclose(with_image, loss["loss"])


def test_distillation_term(tiny_model: GranViT, batch: dict) -> None:
    teacher = EMATeacher(tiny_model)
    with torch.no_grad():  # make the teacher differ so the distill term is clearly non-zero
        for p in teacher.parameters():
            p.add_(0.1 * torch.randn_like(p))
    cfg = DistillConfig()
    out = stage_loss(tiny_model, batch, "stage1", teacher, cfg, lambda_distill=0.5)
    assert float(out["loss_distill"].detach()) > 0
    torch.testing.assert_close(out["loss"], out["loss_caption"] + 0.5 * out["loss_distill"])
    off = stage_loss(tiny_model, batch, "stage1", teacher, cfg, lambda_distill=0.0)
    assert float(off["loss_distill"]) == 0.0
    torch.testing.assert_close(off["loss"], out["loss_caption"])
    assert float(stage_loss(tiny_model, batch, "stage2", teacher, cfg)["loss_distill"]) == 0.0
    no_boxes = dict(batch, has_box=torch.zeros_like(batch["has_box"]))
    assert float(stage_loss(tiny_model, no_boxes, "stage1", teacher, cfg)["loss_distill"]) == 0.0
    with pytest.raises(ValueError, match="unknown stage"):
        stage_loss(tiny_model, batch, "stage9")


def test_stage_objective_trains_and_updates_teacher(tiny_model: GranViT, batch: dict) -> None:
    teacher = EMATeacher(tiny_model)
    objective = StageObjective(tiny_model, "stage1", teacher, DistillConfig(ema_alpha=0.5))
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for _ in range(15):
        losses = objective(batch)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        objective.ema_update()
        first = first if first is not None else float(losses["loss"].detach())
    assert float(losses["loss"].detach()) < first
    t = teacher.encoder.embeddings.patch_embedding.weight
    s = tiny_model.vision.embeddings.patch_embedding.weight
    assert not torch.equal(t, s)
    assert set(objective.state_dict()) >= {
        f"teacher.encoder.{k}" for k in teacher.encoder.state_dict()
    }


def test_feature_cache_encodes_each_image_once_and_alone(tiny_model: GranViT, batch: dict) -> None:
    from granvit_pipeline.model.objectives import FeatureCache

    pixels, ids = batch["pixel_values"], batch["image_ids"]
    cache = FeatureCache(max_images=2)
    first = cache.features(tiny_model, pixels, ids)
    with torch.no_grad():
        alone = [tiny_model.encode_image(pixels[i : i + 1])[0] for i in range(len(ids))]
        together = tiny_model.encode_image(pixels)
    assert all(torch.equal(first[i], alone[i]) for i in range(len(ids)))  # batch-independent
    torch.testing.assert_close(first, together)
    assert len(cache) == 2  # the cap: later images are encoded, not kept
    # A kept image is not encoded again: other pixels under the same id give the kept features.
    again = cache.features(tiny_model, torch.zeros_like(pixels[:2]), ids[:2])
    assert torch.equal(again, first[:2])
    with pytest.raises(ValueError, match="max_images"):
        FeatureCache(0)


def test_stage2_loss_on_cached_features_is_the_pixel_loss(tiny_model: GranViT, batch: dict) -> None:
    from granvit_pipeline.model.objectives import FeatureCache

    tiny_model.set_trainable("stage2")
    from_pixels = stage_loss(tiny_model, batch, "stage2")["loss"]
    features = FeatureCache(8).features(tiny_model, batch["pixel_values"], batch["image_ids"])
    cached = {**batch, "image_features": features}
    torch.testing.assert_close(stage_loss(tiny_model, cached, "stage2")["loss"], from_pixels)
    teacher = EMATeacher(tiny_model)
    with pytest.raises(ValueError, match="self-distillation needs the encoder pass"):
        stage_loss(tiny_model, cached, "stage1", teacher)
