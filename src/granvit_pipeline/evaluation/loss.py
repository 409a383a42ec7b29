"""Validation loss: a trained GranViT's answer-token cross-entropy on held-out samples.

The examples are the training collator's (one per sample, the task drawn by the same weights,
seeded by image id), so two models scored on the same samples see the same prompts and answers:
the numbers compare. Only the caption loss counts (no self-distillation term: that is a training
regulariser, and its weight is one of the things being tuned).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

import torch

from granvit_pipeline.evaluation.loading import TrainedModel
from granvit_pipeline.model.data import Collator


@torch.no_grad()
def validation_loss(
    trained: TrainedModel,
    samples: Iterable[Mapping[str, Any]],
    tasks: Mapping[str, float],
    batch_size: int = 32,
    seed: int = 0,
) -> dict[str, float]:
    """Mean cross-entropy per answer token over ``samples`` (shard-reader dicts).

    Returns ``{"val_loss", "tokens", "examples"}``. ``tasks`` maps task name to mixing weight
    (e.g. ``{"global": 1, "caption2bbox": 1}``, the stage's training mix).
    """
    model = trained.model
    device = next(model.parameters()).device
    collator = Collator(
        trained.tokenizer, trained.prompts, tasks, model.config.vision.image_size,
        seed=seed, precision=trained.box_precision,
    )  # fmt: skip
    total, tokens, examples = 0.0, 0, 0
    stream = iter(samples)
    while chunk := list(islice(stream, batch_size)):  # itertools.batched is Python 3.12+
        pairs = [(s, ex) for s in chunk if (ex := collator.choose(s)) is not None]
        if not pairs:
            continue
        batch = collator.collate(pairs)
        labels = batch["labels"].to(device)
        out = model(
            batch["input_ids"].to(device), batch["attention_mask"].to(device), labels,
            pixel_values=batch["pixel_values"].to(device),
        )  # fmt: skip
        n = int((labels != -100).sum())  # the loss is a mean over these tokens
        total += float(out.loss) * n
        tokens, examples = tokens + n, examples + len(pairs)
    if tokens == 0:
        raise ValueError(f"no validation example for tasks {sorted(tasks)} in the samples given")
    return {"val_loss": total / tokens, "tokens": float(tokens), "examples": float(examples)}
