"""Per-stage training losses: the function the training engine calls once per step.

``stage_loss`` goes through ``model(...)`` only (one call, encoder pass shared between the
caption loss and self-distillation), so it works the same on a bare :class:`GranViT` and on a
wrapper that forwards ``__call__`` (e.g. a DeepSpeed engine). :class:`StageObjective` packages
model + teacher + settings as an ``nn.Module`` whose ``forward(batch)`` returns the loss dict.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from granvit_pipeline.model.distill import LAMBDA_DISTILL, DistillConfig, EMATeacher, distill_loss
from granvit_pipeline.model.stages import stage_spec


def stage_loss(
    model: nn.Module,
    batch: dict[str, Any],
    stage: str,
    teacher: EMATeacher | None = None,
    distill_cfg: DistillConfig | None = None,
    lambda_distill: float = LAMBDA_DISTILL,
) -> dict[str, Tensor]:
    """Loss of one batch for ``stage`` (a name of ``model.stages.STAGES``).

    Returns ``{"loss", "loss_caption", "loss_distill"}`` (``()`` tensors):
    ``loss = loss_caption + lambda_distill * loss_distill``. A text-only stage (``lm_warmup``)
    sees no image. Self-distillation runs in a stage that distills (``stage1``) when a teacher
    is given, ``lambda_distill > 0`` and the batch has boxes (``has_box``); otherwise
    ``loss_distill`` is 0. A batch with ``image_features`` (a :class:`FeatureCache`'s) skips the
    encoder.
    """
    spec = stage_spec(stage)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    if spec.text_only:
        out = model(ids, mask, labels)
        return {"loss": out.loss, "loss_caption": out.loss, "loss_distill": out.loss.new_zeros(())}
    cfg = distill_cfg or DistillConfig()
    has_box = batch["has_box"].to(torch.bool)
    distill = spec.distills and teacher is not None and lambda_distill > 0 and bool(has_box.any())
    pixels = batch["pixel_values"]
    features = batch.get("image_features")  # from a FeatureCache (stage 2: frozen encoder)
    if features is not None:
        if distill:
            raise ValueError("self-distillation needs the encoder pass: no image_features")
        out = model(ids, mask, labels, image_features=features)
    else:
        out = model(
            ids, mask, labels, pixel_values=pixels, return_features=distill, feature_layer=cfg.layer
        )
    if not distill:
        zero = out.loss.new_zeros(())
        return {"loss": out.loss, "loss_caption": out.loss, "loss_distill": zero}
    index = torch.nonzero(has_box.to(pixels.device)).squeeze(1)
    boxes = batch["boxes_px"].to(pixels.device)[index]
    assert teacher is not None  # for the type checker: guarded by `distill`
    loss_distill = distill_loss(out.image_features, teacher, pixels, boxes, index, cfg)
    loss = out.loss + lambda_distill * loss_distill
    return {"loss": loss, "loss_caption": out.loss, "loss_distill": loss_distill}


class FeatureCache:
    """``image_id`` -> patch features ``(N, C_vision)`` of a frozen encoder (stage 2).

    Why: stage 2 freezes the encoder, so an image's features never change, yet every pass
    over the data encodes it again (the saving: ``benchmarks/RESULTS.md``). Each image
    missing from the cache is encoded alone, so its features do not depend on the batch that
    first brought it: a resumed run, which starts with an empty cache, gets the same bits. At most
    ``max_images`` are kept (later ones are encoded, not stored), on the batch's device: each
    costs ``N * C`` values.
    """

    def __init__(self, max_images: int) -> None:
        if max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}")
        self.max_images = max_images
        self._features: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return len(self._features)

    @torch.no_grad()
    def features(self, model: nn.Module, pixel_values: Tensor, image_ids: list[str]) -> Tensor:
        """``(B, 3, S, S)`` pixels of ``image_ids`` -> ``(B, N, C_vision)`` encoder features."""
        rows = []
        for i, image_id in enumerate(image_ids):
            cached = self._features.get(image_id)
            if cached is None:
                cached = model.encode_image(pixel_values[i : i + 1])[0]
                if len(self._features) < self.max_images:
                    self._features[image_id] = cached
            rows.append(cached)
        return torch.stack(rows)


class StageObjective(nn.Module):
    """``forward(batch) -> dict of losses`` for the training engine.

    Holds the model and (stage 1 with distillation) the EMA teacher as submodules, so one
    ``state_dict`` checkpoints both (resume keeps the teacher). Call :meth:`ema_update` after
    each optimizer step.
    """

    def __init__(
        self,
        model: nn.Module,
        stage: str,
        teacher: EMATeacher | None = None,
        distill_cfg: DistillConfig | None = None,
        lambda_distill: float = LAMBDA_DISTILL,
    ) -> None:
        super().__init__()
        self.model, self.teacher, self.stage = model, teacher, stage
        self.distill_cfg = distill_cfg or DistillConfig()
        self.lambda_distill = lambda_distill
        model.set_trainable(stage)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        return stage_loss(
            self.model, batch, self.stage, self.teacher, self.distill_cfg, self.lambda_distill
        )

    def ema_update(self) -> None:
        """EMA step of the teacher towards the student encoder (no-op without a teacher)."""
        if self.teacher is not None:
            self.teacher.update(self.model, self.distill_cfg.ema_alpha)
