"""predict() and evaluate_regions() on the tiny preset."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from granvit_pipeline.evaluation import eligible_pairs, evaluate_regions, predict
from granvit_pipeline.model import Collator, GranViT, PromptTemplates, fit_vocab, get_preset

STEPS, LR = 150, 3e-3  # enough for the tiny model to memorise 8 answers


def test_one_row_per_eligible_region(tiny_model: GranViT, tokenizer: Any, samples: list) -> None:
    c2b = predict(tiny_model, tokenizer, samples, "caption2bbox", batch_size=2)
    b2c = predict(tiny_model, tokenizer, samples, "bbox2caption", batch_size=2)
    assert [r["region_id"] for r in c2b] == ["a2", "b0", "c0"]
    assert [r["region_id"] for r in b2c] == ["a0", "a1", "a2", "b0", "c0"]
    assert c2b[0]["target"] == "[0.10, 0.47, 0.52, 0.94]"  # (5, 15, 25, 30) in a 48 x 32 image
    assert c2b[2]["gt_box_norm"] == pytest.approx((8 / 64, 4 / 48, 40 / 64, 28 / 48))
    assert b2c[1]["target"] == "the red shape"
    assert all(set(r) >= {"region_id", "prompt", "target", "prediction"} for r in c2b + b2c)


@pytest.fixture(scope="module")
def trained_tiny(tokenizer: Any, samples: list, prompts: PromptTemplates) -> GranViT:
    """The tiny model overfitted on every eligible region of both tasks (one batch)."""
    torch.manual_seed(0)
    model = GranViT(fit_vocab(get_preset("tiny"), len(tokenizer)))
    tasks = ("bbox2caption", "caption2bbox")
    collator = Collator(tokenizer, prompts, dict.fromkeys(tasks, 1.0), model.image_size)
    batch = collator.collate([p for t in tasks for p in eligible_pairs(samples, t, prompts)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    for _ in range(STEPS):
        out = model(
            batch["input_ids"], batch["attention_mask"], batch["labels"], batch["pixel_values"]
        )
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    return model.eval()


def test_a_model_that_memorised_the_answers_scores_perfectly(
    trained_tiny: GranViT, tokenizer: Any, samples: list
) -> None:
    m = evaluate_regions(trained_tiny, tokenizer, samples)
    assert m["bbox2caption/exact_match"] == 1.0
    assert m["bbox2caption/rouge_l"] == pytest.approx(1.0)
    assert m["caption2bbox/acc@0.5"] == 1.0
    assert (m["caption2bbox/any_object@0.5"], m["caption2bbox/wrong_object@0.5"]) == (1.0, 0.0)
    assert m["caption2bbox/unparseable_rate"] == 0.0
    assert m["caption2bbox/mean_iou"] > 0.9


def test_predictions_are_deterministic_and_independent_of_batching(
    trained_tiny: GranViT, tokenizer: Any, samples: list
) -> None:
    for task in ("bbox2caption", "caption2bbox"):
        rows = [predict(trained_tiny, tokenizer, samples, task, batch_size=b) for b in (1, 2, 64)]
        assert rows[0] == rows[1] == rows[2]
        assert all(r["prediction"] == r["target"] for r in rows[0])  # not trivially equal


def _greedy_without_cache(model: GranViT, batch: dict, eos: int, steps: int) -> list[int]:
    """Reference decoder: full forward pass per step, one unpadded prompt."""
    ids, out = batch["input_ids"], []
    for _ in range(steps):
        logits = model(ids, torch.ones_like(ids), pixel_values=batch["pixel_values"],
                       return_logits=True).logits  # fmt: skip
        nxt = int(logits[0, -1].argmax())
        if nxt == eos:
            break
        out.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out


@pytest.mark.parametrize("trained", [False, True])
def test_prediction_is_the_models_greedy_answer(
    trained: bool,
    tiny_model: GranViT,
    trained_tiny: GranViT,
    tokenizer: Any,
    samples: list,
    prompts: PromptTemplates,
) -> None:
    model = trained_tiny if trained else tiny_model.eval()
    rows = predict(model, tokenizer, samples, "caption2bbox", max_new_tokens=6)
    collator = Collator(tokenizer, prompts, {"caption2bbox": 1.0}, model.image_size)
    for row, pair in zip(rows, eligible_pairs(samples, "caption2bbox", prompts), strict=True):
        batch = collator.collate([pair], generation=True)
        with torch.no_grad():
            ref = _greedy_without_cache(model, batch, tokenizer.eos_token_id, 6)
        assert row["prediction"] == tokenizer.decode(ref, skip_special_tokens=True).strip()


def test_predict_restores_training_mode_and_checks_arguments(
    tiny_model: GranViT, tokenizer: Any, samples: list
) -> None:
    tiny_model.train()
    predict(tiny_model, tokenizer, samples[:1], "caption2bbox")
    assert tiny_model.training
    with pytest.raises(ValueError, match="task"):
        predict(tiny_model, tokenizer, samples, "global")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        predict(tiny_model, tokenizer, samples, "caption2bbox", batch_size=0)


def test_evaluate_regions_reports_both_tasks(
    tiny_model: GranViT, tokenizer: Any, samples: list
) -> None:
    m = evaluate_regions(tiny_model, tokenizer, iter(samples), batch_size=4)
    assert m["caption2bbox/n"] == 3 and m["bbox2caption/n"] == 5
    assert 0.0 <= m["caption2bbox/acc@0.5"] <= m["caption2bbox/mean_iou"] * 2 + 1e-9
    assert m["bbox2caption/exact_match_chance"] == pytest.approx(2 / 5)  # "the red shape" x2
    assert m["caption2bbox/regions_per_s"] > 0
    assert {"bbox2caption/rouge_l", "bbox2caption/cider", "bbox2caption/bleu4"} <= set(m)
    assert m["ocr/n"] == 0 and m["ocr/anls"] == 0.0  # no OCR regions in these samples
    only = evaluate_regions(tiny_model, tokenizer, samples, tasks=("bbox2caption",))
    assert set(only) == {k for k in m if k.startswith(("bbox2caption/", "ocr/"))}


def test_ocr_regions_are_scored_as_transcriptions(
    trained_tiny: GranViT, tokenizer: Any, samples: list
) -> None:
    as_ocr = {"a2", "c0"}  # same images and texts; only the region type changes
    relabelled = [
        {**s, "regions": [{**r, "text_type": "ocr"} if r["region_id"] in as_ocr else r
                          for r in s["regions"]]}
        for s in samples
    ]  # fmt: skip
    rows = predict(trained_tiny, tokenizer, relabelled, "bbox2caption")
    assert [r["text_type"] for r in rows] == ["refexp", "refexp", "ocr", "refexp", "ocr"]
    m = evaluate_regions(trained_tiny, tokenizer, relabelled, tasks=("bbox2caption",))
    assert m["ocr/n"] == 2
    assert m["ocr/exact_match"] == 1.0 and m["ocr/anls"] == pytest.approx(1.0)
    assert m["bbox2caption/n"] == 5  # OCR regions stay in the Bbox2Caption scores
