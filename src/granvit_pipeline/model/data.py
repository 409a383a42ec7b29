"""Image preprocessing, task examples and batch collation for GranViT (no Kedro).

Samples come from the shard reader as dicts::

    {"image_id": str, "image": PIL RGB, "width": int, "height": int,
     "global_caption": str | None,
     "regions": [{"region_id", "x1", "y1", "x2", "y2", "text", "text_type", "iscrowd",
                  "text_is_target"}, ...]}

Boxes in samples are absolute-pixel xyxy of the original image; box *text* is normalised xyxy
of the original image (:mod:`granvit_pipeline.regions.boxes`). ``boxes_px`` in batches are in
**encoder-input** pixels (after the aspect-preserving resize + centred pad), for RoIAlign and
self-distillation.

Token layout of one row: ``<bos> prompt <sep> answer <eos>``; labels are -100 except on the
answer tokens and ``<eos>``. Training batches are right-padded, generation batches (prompt up
to and including ``<sep>``) left-padded. With ``Collator(pack=k)`` a training row holds up to
``k`` region examples of one image as consecutive turns, ``<bos> p1 <sep> a1 <eos> <bos> p2
<sep> a2 <eos> ...``, every answer labelled; the first turn is laid out exactly like a
one-example row, which is what generation (one turn) sees.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from granvit_pipeline.model.box_codec import format_box
from granvit_pipeline.model.modeling import IGNORE_INDEX
from granvit_pipeline.model.prompts import PromptTemplates
from granvit_pipeline.model.tasks import REGION_TASKS, TASKS
from granvit_pipeline.model.tokenizer import normalize_text
from granvit_pipeline.regions.boxes import normalize_xyxy

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ResizePad:
    """Original image -> square encoder input: scale each axis, then shift by the padding.

    ``x_enc = x * scale_x + pad_x`` (same for y). Pads are centred; the padded area is 0 after
    normalisation (the mean colour).
    """

    scale_x: float  # resized width / original width
    scale_y: float  # resized height / original height
    pad_x: int  # left padding, encoder pixels
    pad_y: int  # top padding, encoder pixels
    size: int  # encoder input side S

    def boxes_to_encoder(self, boxes_xyxy: np.ndarray | Sequence[float]) -> np.ndarray:
        """Absolute xyxy in original pixels ``(..., 4)`` -> encoder-input pixels."""
        b = np.asarray(boxes_xyxy, dtype=np.float64)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y])
        return b * scale + np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y])

    def boxes_to_original(self, boxes_xyxy: np.ndarray | Sequence[float]) -> np.ndarray:
        """Inverse of :meth:`boxes_to_encoder`."""
        b = np.asarray(boxes_xyxy, dtype=np.float64)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y])
        return (b - np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y])) / scale


def preprocess_image(
    image: Image.Image,
    size: int,
    mean: Sequence[float] = SIGLIP_MEAN,
    std: Sequence[float] = SIGLIP_STD,
) -> tuple[Tensor, ResizePad]:
    """Aspect-preserving resize (longer side -> ``size``, bicubic) + centred pad + normalise.

    Returns ``((3, size, size) float32, transform)``; raises for non-RGB images.
    """
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB PIL image, got mode {image.mode!r}")
    w, h = image.size
    scale = size / max(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
    pixels = (pixels - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    canvas = torch.zeros(3, size, size)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas[:, pad_y : pad_y + new_h, pad_x : pad_x + new_w] = pixels
    return canvas, ResizePad(new_w / w, new_h / h, pad_x, pad_y, size)


@dataclass(frozen=True)
class Example:
    """One prompt -> answer pair of one image."""

    image_id: str
    task: str  # one of TASKS
    prompt: str
    target: str  # answer text, whitespace-normalised (what exact match compares against)
    region_id: str | None = None  # None for the global task
    box_px: tuple[float, float, float, float] | None = None  # original-image xyxy pixels


def _region_box(region: Mapping[str, Any]) -> tuple[float, float, float, float]:
    return (float(region["x1"]), float(region["y1"]), float(region["x2"]), float(region["y2"]))


def _target_regions(sample: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Regions whose text may be a generation target: text_is_target, not crowd, non-empty."""
    return [
        r
        for r in sample.get("regions", [])
        if r.get("text_is_target", True) and not r.get("iscrowd", False)
        and normalize_text(str(r.get("text", "")))
    ]  # fmt: skip


def _box_text(sample: Mapping[str, Any], region: Mapping[str, Any], precision: int) -> str:
    norm = normalize_xyxy(_region_box(region), sample["width"], sample["height"])
    return format_box(norm.tolist(), precision)


def build_examples(
    sample: Mapping[str, Any], task: str, prompts: PromptTemplates, precision: int = 2
) -> list[Example]:
    """All examples of ``task`` for one sample (possibly none).

    ``global``: one, unless ``global_caption`` is null/empty. ``bbox2caption``: every target
    region. ``caption2bbox``: every target region whose text is unique in the image (a text
    shared by several boxes has no single right answer).
    """
    image_id = str(sample["image_id"])
    if task == "global":
        caption = normalize_text(str(sample.get("global_caption") or ""))
        return [Example(image_id, task, prompts.global_prompt(), caption)] if caption else []
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    regions = _target_regions(sample)
    out = []
    texts = [normalize_text(str(r["text"])) for r in regions]
    for region, text in zip(regions, texts, strict=True):
        box_text = _box_text(sample, region, precision)
        if task == "bbox2caption":
            prompt, target = prompts.bbox2caption_prompt(box_text), text
        elif texts.count(text) == 1:
            prompt, target = prompts.caption2bbox_prompt(text), box_text
        else:
            continue
        rid = str(region["region_id"])
        out.append(Example(image_id, task, prompt, target, rid, _region_box(region)))
    return out


def _check_sample(sample: Mapping[str, Any]) -> None:
    image = sample["image"]
    if (image.width, image.height) != (int(sample["width"]), int(sample["height"])):
        raise ValueError(
            f"sample {sample['image_id']}: image is {image.width}x{image.height} but the record "
            f"says {sample['width']}x{sample['height']}"
        )


Turns = tuple[Example, ...]  # the examples of one row, in order (one unless packed)


class Collator:
    """List of samples -> one training batch (one row per sample, task drawn by weight).

    ``tasks`` maps task name -> mixing weight. Per sample, a task is drawn among those with a
    positive weight that have an example for it (weights renormalised), then one example of
    that task at random; samples with no possible example are dropped. Draws use
    ``random.Random(f"{seed}:{epoch}:{image_id}")``: deterministic given seed and epoch and
    independent of batch composition or data-loader workers (``set_epoch`` varies them).

    ``pack > 1``: a sample drawn for a region task also gets up to ``pack - 1`` more of its
    examples of that task, in random order, as further turns of the same row (the first turn is
    the one ``pack=1`` draws). Every region of the image then teaches for one pass over its
    image tokens, at the cost of longer rows (measured on the demo: ``benchmarks/RESULTS.md``).
    """

    def __init__(
        self,
        tokenizer: Any,
        prompts: PromptTemplates,
        tasks: Mapping[str, float],
        image_size: int,
        seed: int = 0,
        precision: int = 2,
        max_length: int | None = None,
        pack: int = 1,
    ) -> None:
        if pack < 1:
            raise ValueError(f"pack must be >= 1 (examples per row), got {pack}")
        unknown = set(tasks) - set(TASKS)
        if unknown or not any(w > 0 for w in tasks.values()) or min(tasks.values()) < 0:
            raise ValueError(f"tasks must map {TASKS} to weights >= 0, some > 0; got {tasks}")
        ids = (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
        if None in (*ids, tokenizer.sep_token_id):
            raise ValueError("tokenizer needs pad, bos, eos and sep tokens (train_tokenizer)")
        self.tokenizer, self.prompts, self.tasks = tokenizer, prompts, dict(tasks)
        self.image_size, self.seed, self.precision = image_size, seed, precision
        self.max_length, self.pack, self.epoch = max_length, pack, 0

    def set_epoch(self, epoch: int) -> None:
        """Change the task/region draws for a new epoch."""
        self.epoch = epoch

    def choose_turns(self, sample: Mapping[str, Any]) -> Turns:
        """The row this collator makes from ``sample``: 1 to ``pack`` examples (none: ``()``)."""
        rng = random.Random(f"{self.seed}:{self.epoch}:{sample['image_id']}")
        options = {t: build_examples(sample, t, self.prompts, self.precision) for t in self.tasks}
        names = [t for t, w in self.tasks.items() if w > 0 and options[t]]
        if not names:
            return ()
        task = rng.choices(names, weights=[self.tasks[t] for t in names])[0]
        first = rng.choice(options[task])
        if self.pack == 1 or task not in REGION_TASKS:
            return (first,)
        rest = [ex for ex in options[task] if ex is not first]
        rng.shuffle(rest)
        return (first, *rest[: self.pack - 1])

    def choose(self, sample: Mapping[str, Any]) -> Example | None:
        """The (first) example this collator makes from ``sample`` (None when it has none)."""
        turns = self.choose_turns(sample)
        return turns[0] if turns else None

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        pairs = [(s, turns) for s in samples if (turns := self.choose_turns(s))]
        if not pairs:
            raise ValueError(
                f"none of the {len(samples)} samples yields an example for {self.tasks}"
            )
        return self.collate(pairs)

    def _turn(self, example: Example, generation: bool) -> tuple[list[int], list[int]]:
        """One example -> (ids, labels) of ``<bos> prompt <sep> [answer <eos>]``."""
        tok = self.tokenizer
        prompt = tok(example.prompt, add_special_tokens=False)["input_ids"]
        head = [tok.bos_token_id, *prompt, tok.sep_token_id]
        if generation:
            return head, [IGNORE_INDEX] * len(head)
        tail = [*tok(example.target, add_special_tokens=False)["input_ids"], tok.eos_token_id]
        if self.max_length is not None and len(head) + len(tail) > self.max_length:
            if len(head) >= self.max_length:
                raise ValueError(f"prompt of {len(head)} tokens exceeds max_length")
            tail = [*tail[: self.max_length - len(head) - 1], tok.eos_token_id]
        return head + tail, [IGNORE_INDEX] * len(head) + tail

    def _token_rows(
        self, rows: Sequence[Turns], generation: bool
    ) -> list[tuple[list[int], list[int]]]:
        """Per row: (ids, labels); further turns that would pass ``max_length`` are left out."""
        out = []
        for turns in rows:
            ids, labels = self._turn(turns[0], generation)
            further = () if generation else turns[1:]  # generation asks the first turn only
            for example in further:
                more_ids, more_labels = self._turn(example, generation)
                if self.max_length is not None and len(ids) + len(more_ids) > self.max_length:
                    break
                ids, labels = ids + more_ids, labels + more_labels
            out.append((ids, labels))
        return out

    def _pad(self, rows: list[tuple[list[int], list[int]]], left: bool) -> dict[str, Tensor]:
        length = max(len(ids) for ids, _ in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        for i, (ids, row_labels) in enumerate(rows):
            offset = length - len(ids) if left else 0
            input_ids[i, offset : offset + len(ids)] = torch.tensor(ids)
            mask[i, offset : offset + len(ids)] = 1
            labels[i, offset : offset + len(ids)] = torch.tensor(row_labels, dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}

    def collate(
        self,
        pairs: Sequence[tuple[Mapping[str, Any], Example | Turns]],
        generation: bool = False,
    ) -> dict[str, Any]:
        """(sample, example or turns) pairs -> batch dict, one row per pair.

        Keys: ``pixel_values`` (B, 3, S, S) float32; ``input_ids``, ``attention_mask`` (B, T)
        int64; ``labels`` (B, T) int64, -100 except answer + eos (training only);
        ``boxes_px`` (B, 4) float32 xyxy in encoder-input pixels (zeros where ``has_box`` (B,)
        bool is False); ``image_sizes`` (B, 2) int64 original (width, height); lists
        ``tasks``, ``image_ids``, ``region_ids``, ``targets``, ``prompts``.
        ``generation=True``: prompts only (ending with ``<sep>``), left-padded, no labels.
        Per-row fields (``boxes_px``, ``targets``, ...) describe a packed row's first turn.
        """
        rows = [(turns,) if isinstance(turns, Example) else tuple(turns) for _, turns in pairs]
        examples = [turns[0] for turns in rows]
        pixels, boxes, has_box, cache = [], torch.zeros(len(pairs), 4), [], {}
        for i, ((sample, _), ex) in enumerate(zip(pairs, examples, strict=True)):
            if sample["image_id"] not in cache:
                _check_sample(sample)
                cache[sample["image_id"]] = preprocess_image(sample["image"], self.image_size)
            tensor, transform = cache[sample["image_id"]]
            pixels.append(tensor)
            has_box.append(ex.box_px is not None)
            if ex.box_px is not None:
                boxes[i] = torch.from_numpy(transform.boxes_to_encoder(ex.box_px)).float()
        batch: dict[str, Any] = self._pad(self._token_rows(rows, generation), left=generation)
        if generation:
            del batch["labels"]
        batch |= {
            "pixel_values": torch.stack(pixels),
            "boxes_px": boxes,
            "has_box": torch.tensor(has_box, dtype=torch.bool),
            "image_sizes": torch.tensor([[int(s["width"]), int(s["height"])] for s, _ in pairs]),
            "tasks": [e.task for e in examples],
            "image_ids": [e.image_id for e in examples],
            "region_ids": [e.region_id for e in examples],
            "targets": [e.target for e in examples],
            "prompts": [e.prompt for e in examples],
        }
        return batch
