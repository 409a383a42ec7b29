"""Self-distillation (GranViT stage 1): an EMA teacher encoder and the region-feature MSE.

The student encodes the full image; RoIAlign of a box on its patch map gives region features
``(K, C, r, r)``. The teacher (EMA copy of the student encoder, no gradients) encodes the
*crop* of the box resized to the full encoder input ``S x S``, giving its own ``h x w`` patch map
of the box alone. ``L_distill = MSE(student_roi, teacher_pooled)``.

Grid matching (left open by the paper; our choice): the teacher's whole ``h x w`` map covers
exactly the box, so adaptive average pooling it to ``r x r`` gives, in bin ``(i, j)``, the
average over the same relative sub-rectangle of the box as the student's RoIAlign bin
``(i, j)``: both sides describe the same ``r x r`` partition of the box. ``r`` (``roi_output_size``)
defaults to 2: demo boxes span only ~2-5 cells of the 8 x 8 student grid, so larger ``r`` would
mostly interpolate; at paper scale (32 x 32 grid) 2-4 is reasonable. The feature layer is
configurable (default: the last hidden state after SigLIP's post-LayerNorm, which is what the
projector reads).
"""

from __future__ import annotations

import copy
import logging
import math

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from granvit_pipeline.model.roi import check_boxes, patches_to_map, roi_align_fp32, roi_features

logger = logging.getLogger(__name__)


LAMBDA_DISTILL = 1.0  # the paper's weight of L_distill in stage 1 (DESIGN.md section 2)


class DistillConfig(BaseModel):
    """Self-distillation settings."""

    model_config = ConfigDict(extra="forbid")

    layer: int | None = None  # None = last hidden state (post-LN); int indexes hidden_states
    roi_output_size: int = Field(default=2, gt=0)  # r: RoIAlign output side = teacher pool side
    roi_sampling_ratio: int = 2  # bilinear samples per RoIAlign bin side (see roi.py)
    ema_alpha: float = Field(default=0.9, ge=0.0, le=1.0)  # theta_t = a*theta_t + (1-a)*theta_s


def _encoder_of(module: nn.Module) -> nn.Module:
    """The vision encoder of a GranViT (``.vision``) or the encoder itself."""
    return getattr(module, "vision", module)


class EMATeacher(nn.Module):
    """Frozen EMA copy of the student's vision encoder (always in eval mode, no gradients)."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(_encoder_of(student))
        self.encoder.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> EMATeacher:
        """The teacher never switches to train mode."""
        super().train(False)
        return self

    @torch.no_grad()
    def update(self, student: nn.Module, alpha: float = 0.9) -> None:
        """``theta_t = alpha * theta_t + (1 - alpha) * theta_s`` for every parameter;
        buffers are copied from the student."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"EMA alpha must be in [0, 1], got {alpha}")
        source = _encoder_of(student)
        s_params = dict(source.named_parameters())
        t_params = dict(self.encoder.named_parameters())
        if s_params.keys() != t_params.keys():
            raise ValueError("student and teacher encoders have different parameters")
        for name, t in t_params.items():
            t.mul_(alpha).add_(s_params[name].detach().to(t.dtype), alpha=1.0 - alpha)
        s_buffers = dict(source.named_buffers())
        for name, buf in self.encoder.named_buffers():
            buf.copy_(s_buffers[name])

    @torch.no_grad()
    def encode(self, pixel_values: Tensor, layer: int | None = None) -> Tensor:
        """``(K, 3, S, S)`` -> ``(K, N, C)`` patch features of the chosen layer."""
        out = self.encoder(pixel_values=pixel_values, output_hidden_states=layer is not None)
        return out.last_hidden_state if layer is None else out.hidden_states[layer]


def crop_boxes(
    pixel_values: Tensor, boxes_px: Tensor, batch_index: Tensor, size: int, sampling_ratio: int = 0
) -> Tensor:
    """Crop each box and resize it to ``size x size`` (bilinear RoIAlign on the pixels).

    Args:
        pixel_values: ``(B, 3, S, S)`` normalised encoder input.
        boxes_px: ``(K, 4)`` absolute xyxy in encoder-input pixels.
        batch_index: ``(K,)`` image of each box.
        sampling_ratio: samples per output pixel side; 0 = adaptive (averages when shrinking).
    Returns:
        ``(K, 3, size, size)`` crops.
    """
    check_boxes(boxes_px, batch_index, pixel_values.shape[0])
    return roi_align_fp32(pixel_values, boxes_px, batch_index, size, 1.0, sampling_ratio)


def distill_loss(
    student_patch_feats: Tensor,
    teacher: EMATeacher,
    pixel_values: Tensor,
    boxes: Tensor,
    batch_index: Tensor,
    cfg: DistillConfig,
) -> Tensor:
    """MSE between student RoI features and teacher crop features (see module docstring).

    Args:
        student_patch_feats: ``(B, N, C)`` student features of layer ``cfg.layer``.
        pixel_values: ``(B, 3, S, S)`` the student's input.
        boxes: ``(K, 4)`` xyxy encoder-input pixels; ``batch_index``: ``(K,)``.
    Returns:
        ``()`` scalar; 0 (with a graph) when ``K == 0``.
    """
    if boxes.shape[0] == 0:
        return student_patch_feats.sum() * 0.0
    size = pixel_values.shape[-1]
    n = student_patch_feats.shape[1]
    side = math.isqrt(n)  # square encoder input -> square grid (patches_to_map checks)
    r = cfg.roi_output_size
    crops = crop_boxes(pixel_values, boxes, batch_index, size)
    with torch.no_grad():
        t_map = patches_to_map(teacher.encode(crops, cfg.layer), (side, side))
        target = F.adaptive_avg_pool2d(t_map.float(), r)
    student = roi_features(
        student_patch_feats, boxes, batch_index, (side, side), size, r, cfg.roi_sampling_ratio
    )
    return F.mse_loss(student.float(), target)
