"""Validation loss: token-weighted over examples, independent of batching, clear when empty."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from granvit_pipeline.evaluation.loading import TrainedModel
from granvit_pipeline.evaluation.loss import validation_loss
from granvit_pipeline.model import GranViT, PromptTemplates
from granvit_pipeline.model.data import Collator

TASKS = {"global": 1.0, "caption2bbox": 1.0}


@pytest.fixture
def trained(tiny_model: GranViT, tokenizer: Any, prompts: PromptTemplates) -> TrainedModel:
    return TrainedModel(tiny_model.eval(), tokenizer, prompts, box_precision=2)


def _loss_and_tokens(trained: TrainedModel, sample: dict[str, Any]) -> tuple[float, int]:
    """One example alone (no padding): its mean token loss and answer-token count."""
    collator = Collator(trained.tokenizer, trained.prompts, TASKS,
                        trained.model.config.vision.image_size, seed=0)  # fmt: skip
    example = collator.choose(sample)
    assert example is not None
    batch = collator.collate([(sample, example)])
    with torch.no_grad():
        out = trained.model(batch["input_ids"], batch["attention_mask"], batch["labels"],
                            pixel_values=batch["pixel_values"])  # fmt: skip
    return float(out.loss), int((batch["labels"] != -100).sum())


def test_validation_loss_is_the_token_weighted_mean_of_single_examples(
    trained: TrainedModel, samples: list[dict[str, Any]]
) -> None:
    singles = [_loss_and_tokens(trained, s) for s in samples]
    tokens = sum(n for _, n in singles)
    expected = sum(loss * n for loss, n in singles) / tokens

    batched = validation_loss(trained, samples, TASKS, batch_size=3)
    one_by_one = validation_loss(trained, samples, TASKS, batch_size=1)
    assert batched["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert one_by_one["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert batched["tokens"] == tokens and batched["examples"] == len(samples)


def test_validation_loss_without_examples_is_an_error(
    trained: TrainedModel, samples: list[dict[str, Any]]
) -> None:
    no_targets = [{**s, "regions": []} for s in samples]
    with pytest.raises(ValueError, match="no validation example"):
        validation_loss(trained, no_targets, {"caption2bbox": 1.0})
