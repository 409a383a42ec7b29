from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from granvit_pipeline.model.box_codec import parse_box
from granvit_pipeline.model.data import Collator, build_examples, preprocess_image
from granvit_pipeline.model.prompts import PromptTemplates
from granvit_pipeline.regions.boxes import denormalize_xyxy

from .conftest import make_sample

ALL_TASKS = {"global": 1.0, "bbox2caption": 1.0, "caption2bbox": 1.0}


def test_box_maps_through_resize_and_pad_on_non_square_image() -> None:
    image = Image.new("RGB", (80, 48), (0, 0, 0))
    ImageDraw.Draw(image).rectangle([10, 5, 29, 24], fill=(255, 255, 255))  # box (10,5,30,25)
    pixels, tf = preprocess_image(image, 160)  # scale 2, 160x96 content, 32 px pad top/bottom
    enc = tf.boxes_to_encoder([10.0, 5.0, 30.0, 25.0])
    np.testing.assert_allclose(enc, [20.0, 42.0, 60.0, 82.0])
    x1, y1, x2, y2 = (int(v) for v in enc)
    assert torch.allclose(pixels[:, y1 + 2 : y2 - 2, x1 + 2 : x2 - 2], torch.tensor(1.0))
    assert torch.allclose(pixels[:, y1 + 2 : y2 - 2, x2 + 2 : x2 + 10], torch.tensor(-1.0))
    assert torch.equal(pixels[:, : tf.pad_y], torch.zeros(3, tf.pad_y, 160))  # pad = mean
    np.testing.assert_allclose(tf.boxes_to_original(enc), [10.0, 5.0, 30.0, 25.0])


def test_preprocess_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="RGB"):
        preprocess_image(Image.new("L", (8, 8)), 16)


def test_examples_per_task(prompts: PromptTemplates) -> None:
    sample = make_sample(0)
    sample["regions"] = [
        *sample["regions"],
        dict(sample["regions"][0], region_id="crowd", iscrowd=True, text="a crowd"),
        dict(sample["regions"][0], region_id="###", text_is_target=False, text="###"),
        dict(sample["regions"][1], region_id="dup"),
    ]
    b2c = build_examples(sample, "bbox2caption", prompts)
    assert [e.region_id for e in b2c] == ["img0#0", "img0#1", "dup"]
    c2b = build_examples(sample, "caption2bbox", prompts)
    assert [e.region_id for e in c2b] == ["img0#0"]  # img0#1's text is ambiguous (dup)
    region = sample["regions"][0]
    box = denormalize_xyxy(parse_box(c2b[0].target), sample["width"], sample["height"])
    np.testing.assert_allclose(box, [region[k] for k in ("x1", "y1", "x2", "y2")], atol=0.5)
    assert c2b[0].prompt == prompts.caption2bbox_prompt(region["text"])
    assert b2c[0].prompt.endswith(f"{c2b[0].target} in no more than 10 words.")
    assert build_examples(dict(sample, global_caption=None), "global", prompts) == []
    with pytest.raises(ValueError, match="unknown task"):
        build_examples(sample, "vqa", prompts)


def test_labels_mask_everything_but_answer_and_eos(
    tokenizer: Any, prompts: PromptTemplates, samples: list[dict[str, Any]]
) -> None:
    batch = Collator(tokenizer, prompts, ALL_TASKS, image_size=32, seed=0)(samples)
    for i, target in enumerate(batch["targets"]):
        ids, labels, mask = batch["input_ids"][i], batch["labels"][i], batch["attention_mask"][i]
        answer = labels[labels != -100].tolist()
        assert answer[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(answer[:-1]) == target
        sep = ids.tolist().index(tokenizer.sep_token_id)
        assert (labels[: sep + 1] == -100).all() and (
            labels[sep + 1 : int(mask.sum())] != -100
        ).all()
        assert (labels[mask == 0] == -100).all() and ids[0] == tokenizer.bos_token_id
        assert tokenizer.decode(ids[1:sep]) == batch["prompts"][i]
    assert batch["pixel_values"].shape == (len(samples), 3, 32, 32)


def test_boxes_in_batch_are_encoder_pixels(
    tokenizer: Any, prompts: PromptTemplates, samples: list[dict[str, Any]]
) -> None:
    batch = Collator(tokenizer, prompts, ALL_TASKS, image_size=32, seed=3)(samples)
    assert set(batch["tasks"]) == set(ALL_TASKS)
    by_id = {r["region_id"]: r for s in samples for r in s["regions"]}
    for i, rid in enumerate(batch["region_ids"]):
        if rid is None:
            assert not batch["has_box"][i] and batch["boxes_px"][i].abs().sum() == 0
            continue
        assert batch["has_box"][i]
        _, tf = preprocess_image(samples[i]["image"], 32)
        expected = tf.boxes_to_encoder([by_id[rid][k] for k in ("x1", "y1", "x2", "y2")])
        np.testing.assert_allclose(batch["boxes_px"][i].numpy(), expected, rtol=1e-6)
    assert batch["image_sizes"].tolist() == [[80, 48]] * len(samples)


def test_collator_is_deterministic_and_seeded(
    tokenizer: Any, prompts: PromptTemplates, samples: list[dict[str, Any]]
) -> None:
    def draw(seed: int, epoch: int = 0) -> list[tuple[str, str | None]]:
        collator = Collator(tokenizer, prompts, ALL_TASKS, image_size=32, seed=seed)
        collator.set_epoch(epoch)
        batch = collator(samples)
        return list(zip(batch["tasks"], batch["region_ids"], strict=True))

    a, b = Collator(tokenizer, prompts, ALL_TASKS, 32, seed=0)(samples), None
    b = Collator(tokenizer, prompts, ALL_TASKS, 32, seed=0)(list(reversed(samples)))
    assert a["targets"] == list(reversed(b["targets"]))  # independent of batch composition
    assert torch.equal(
        a["input_ids"], Collator(tokenizer, prompts, ALL_TASKS, 32, seed=0)(samples)["input_ids"]
    )
    assert draw(0) != draw(1) or draw(0) != draw(0, epoch=1)


def test_task_weights_and_dropped_samples(
    tokenizer: Any, prompts: PromptTemplates, samples: list[dict[str, Any]]
) -> None:
    batch = Collator(tokenizer, prompts, {"global": 1.0, "caption2bbox": 0.0}, 32)(samples)
    assert set(batch["tasks"]) == {"global"}
    assert len(batch["tasks"]) == sum(s["global_caption"] is not None for s in samples)
    no_caption = [s for s in samples if s["global_caption"] is None]
    with pytest.raises(ValueError, match="yields an example"):
        Collator(tokenizer, prompts, {"global": 1.0}, 32)(no_caption)
    with pytest.raises(ValueError, match="tasks must map"):
        Collator(tokenizer, prompts, {"vqa": 1.0}, 32)


def test_generation_batch_is_left_padded_prompt(
    tokenizer: Any, prompts: PromptTemplates, samples: list[dict[str, Any]]
) -> None:
    collator = Collator(tokenizer, prompts, ALL_TASKS, 32)
    pairs = [
        (s, e)
        for s in samples[:3]
        for t in ("caption2bbox", "bbox2caption")
        for e in build_examples(s, t, prompts)
    ]
    batch = collator.collate(pairs, generation=True)
    assert "labels" not in batch
    assert (batch["input_ids"][:, -1] == tokenizer.sep_token_id).all()
    assert batch["attention_mask"][:, -1].all() and not batch["attention_mask"][:, 0].all()


def test_size_mismatch_raises(tokenizer: Any, prompts: PromptTemplates) -> None:
    sample = dict(make_sample(1), width=81)
    with pytest.raises(ValueError, match="80x48"):
        Collator(tokenizer, prompts, {"global": 1.0}, 32)([sample])


def _turn_answers(tokenizer: Any, ids: torch.Tensor, labels: torch.Tensor) -> list[str]:
    """Decoded labelled spans of one row (each answer up to and excluding its <eos>)."""
    answers, current = [], []
    for token, label in zip(ids.tolist(), labels.tolist(), strict=True):
        if label == -100:
            continue
        if token == tokenizer.eos_token_id:
            answers.append(tokenizer.decode(current))
            current = []
        else:
            current.append(token)
    return answers


@pytest.mark.parametrize("task", ["caption2bbox", "bbox2caption"])
def test_packed_rows_hold_every_region_as_turns(
    tokenizer: Any, prompts: PromptTemplates, samples: list[dict[str, Any]], task: str
) -> None:
    single = Collator(tokenizer, prompts, {task: 1.0}, 32, seed=5)(samples)
    packed = Collator(tokenizer, prompts, {task: 1.0}, 32, seed=5, pack=4)(samples)
    assert packed["targets"] == single["targets"]  # the first turn is the one pack=1 draws
    for i, sample in enumerate(samples):
        ids, labels = packed["input_ids"][i], packed["labels"][i]
        wanted = {e.target for e in build_examples(sample, task, prompts)}
        answers = _turn_answers(tokenizer, ids, labels)
        assert answers[0] == single["targets"][i] and set(answers) == wanted
        assert len(answers) == len(wanted) == ids.tolist().count(tokenizer.bos_token_id) == 2
        n = int(single["attention_mask"][i].sum())
        assert torch.equal(ids[:n], single["input_ids"][i][:n])  # same first turn, token-exact
        assert torch.equal(labels[:n], single["labels"][i][:n])


def test_packing_leaves_global_rows_alone_and_drops_turns_past_max_length(
    tokenizer: Any, prompts: PromptTemplates, samples: list[dict[str, Any]]
) -> None:
    kept = samples[:3]  # these have a global caption
    glob = Collator(tokenizer, prompts, {"global": 1.0}, 32, pack=4)(kept)
    assert torch.equal(glob["input_ids"], Collator(tokenizer, prompts, {"global": 1.0}, 32)(
        kept)["input_ids"])  # fmt: skip
    single = Collator(tokenizer, prompts, {"caption2bbox": 1.0}, 32)(kept)
    limit = int(single["attention_mask"].sum(1).max()) + 2  # room for one turn, not for two
    packed = Collator(tokenizer, prompts, {"caption2bbox": 1.0}, 32, max_length=limit, pack=4)
    batch = packed(kept)
    assert torch.equal(batch["input_ids"], single["input_ids"])
    with pytest.raises(ValueError, match="pack must be >= 1"):
        Collator(tokenizer, prompts, {"caption2bbox": 1.0}, 32, pack=0)
