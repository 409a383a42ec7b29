from __future__ import annotations

import copy

import torch

from granvit_pipeline.model.distill import DistillConfig, EMATeacher, crop_boxes, distill_loss
from granvit_pipeline.model.modeling import GranViT


def test_teacher_is_a_frozen_copy(tiny_model: GranViT) -> None:
    teacher = EMATeacher(tiny_model)
    assert not teacher.training and not teacher.encoder.training
    assert all(not p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.encoder.training
    s = dict(tiny_model.vision.named_parameters())
    for name, p in teacher.encoder.named_parameters():
        assert torch.equal(p, s[name]) and p.data_ptr() != s[name].data_ptr()


def test_ema_update_matches_hand_computation(tiny_model: GranViT) -> None:
    teacher = EMATeacher(tiny_model)
    before = {k: v.clone() for k, v in teacher.encoder.named_parameters()}
    with torch.no_grad():
        for p in tiny_model.vision.parameters():
            p.add_(torch.randn_like(p))
    student = {k: v.clone() for k, v in tiny_model.vision.named_parameters()}
    teacher.update(tiny_model, alpha=0.9)
    for name, p in teacher.encoder.named_parameters():
        torch.testing.assert_close(p, 0.9 * before[name] + 0.1 * student[name])
    teacher.update(tiny_model.vision, alpha=0.0)  # the bare encoder works too
    for name, p in teacher.encoder.named_parameters():
        torch.testing.assert_close(p, student[name])


def test_crop_of_full_box_is_the_image_and_half_box_upsamples() -> None:
    pixels = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    full = crop_boxes(pixels, torch.tensor([[0.0, 0, 8, 8]]), torch.tensor([1]), 8)
    torch.testing.assert_close(full[0], pixels[1])
    quarter = crop_boxes(pixels, torch.tensor([[4.0, 0, 8, 4]]), torch.tensor([0]), 4)
    torch.testing.assert_close(quarter[0], pixels[0, :, :4, 4:])  # same size: exact pixels
    ramp = torch.arange(8.0).expand(1, 3, 8, 8)  # value = column index (pixel centre x - 0.5)
    doubled = crop_boxes(ramp, torch.tensor([[0.0, 0, 4, 4]]), torch.tensor([0]), 8)
    expected = (torch.arange(8.0) + 0.5) / 2 - 0.5  # bilinear sample at each output centre
    torch.testing.assert_close(doubled[0, 0, 3, 1:7], expected[1:7])  # interior: no edge clamp


def test_distill_loss_zero_for_full_image_box_with_identical_teacher(tiny_model: GranViT) -> None:
    """Full-image box: crop == image, RoIAlign bins == avg-pooled cells -> both sides agree."""
    teacher = EMATeacher(tiny_model)
    s = tiny_model.image_size
    pixels = torch.randn(2, 3, s, s)
    feats = tiny_model.encode_image(pixels)
    box, index = torch.tensor([[0.0, 0, s, s]]), torch.tensor([1])
    loss = distill_loss(feats, teacher, pixels, box, index, DistillConfig(roi_output_size=2))
    assert float(loss.detach()) < 1e-10


def test_distill_loss_trains_the_student_only(tiny_model: GranViT) -> None:
    teacher = EMATeacher(tiny_model)
    s = tiny_model.image_size
    pixels = torch.randn(2, 3, s, s)
    boxes = torch.tensor([[0.0, 0, s / 2, s / 2], [8.0, 4, 24, 30]])
    cfg = DistillConfig(layer=-1)
    feats = tiny_model.encode_image(pixels, layer=cfg.layer)
    loss = distill_loss(feats, teacher, pixels, boxes, torch.tensor([0, 1]), cfg)
    assert float(loss.detach()) > 0
    loss.backward()
    assert tiny_model.vision.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    empty = distill_loss(feats, teacher, pixels, boxes[:0], torch.tensor([], dtype=torch.long), cfg)
    assert float(empty.detach()) == 0.0


def test_teacher_survives_deepcopy_and_state_dict(tiny_model: GranViT) -> None:
    teacher = EMATeacher(tiny_model)
    clone = copy.deepcopy(teacher)
    clone.load_state_dict(teacher.state_dict())
    pixels = torch.randn(1, 3, tiny_model.image_size, tiny_model.image_size)
    torch.testing.assert_close(clone.encode(pixels), teacher.encode(pixels))


def test_bf16_crop_uses_the_exact_float32_box() -> None:
    pixels = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(0))
    box, index = torch.tensor([[301.0, 141.0, 397.0, 203.0]]), torch.tensor([0])
    crop = crop_boxes(pixels.to(torch.bfloat16), box, index, size=16)
    exact = crop_boxes(pixels.to(torch.bfloat16).float(), box, index, size=16)
    torch.testing.assert_close(crop, exact.to(torch.bfloat16), rtol=0, atol=0)
