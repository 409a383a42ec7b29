"""GranViT training data: shard stream -> task examples -> micro-batches, resumable (no Kedro).

Pipeline of one rank: ``ShardDataset(loop=True)`` (its own slice of the split, shuffled by
``seed``) -> ``DataLoader(batch_size=B, num_workers=W, collate_fn=BatchBuilder)`` ->
:class:`ShardBatches`, the engine's ``ResumableData``.

**Exact resume.** The state is ``position``: loader batches taken so far. Resuming at ``p``
calls ``ShardDataset.resume(p, B)`` (every worker continues its stream where it stopped) and
restarts the builder's batch counter at ``p``. The task/region draw of a sample is seeded by
``(seed, batch index, image_id)`` (``Collator.set_epoch(batch index)``): it differs from one
pass over the data to the next, yet is a pure function of the position, so an interrupted and
resumed run sees exactly the batches of an uninterrupted one. The batch index is known inside
a DataLoader worker because the loader takes batch ``j`` from worker ``j % W`` (in order), as
``ShardDataset.resume`` also assumes.

A sample with no example for the stage's tasks (e.g. an OCR image, which has no global
caption, in ``global_only``) is dropped from its batch; a loader batch left with none is
skipped (and still counted in ``position``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, get_worker_info

from granvit_pipeline.model.box_codec import format_box
from granvit_pipeline.model.data import Collator, build_examples
from granvit_pipeline.model.modeling import IGNORE_INDEX
from granvit_pipeline.model.prompts import PromptTemplates
from granvit_pipeline.model.tasks import TASKS
from granvit_pipeline.model.tokenizer import train_tokenizer
from granvit_pipeline.regions.boxes import normalize_xyxy
from granvit_pipeline.regions.shards import ShardDataset

logger = logging.getLogger(__name__)

Batch = dict[str, Any]
IMAGE_KEYS = ("pixel_values", "boxes_px", "has_box")  # dropped from text-only batches


class BatchBuilder:
    """``collate_fn``: samples -> one batch (or ``None`` when no sample yields an example).

    Picklable (DataLoader workers get a copy). ``text_only`` drops the image tensors
    (``lm_warmup``: prompt + answer text, no image). ``loss_on_prompts`` labels every text
    token, not only the answers (a language-model loss for the warm-up).
    """

    def __init__(
        self, collator: Collator, text_only: bool = False, loss_on_prompts: bool = False
    ) -> None:
        self.collator, self.text_only, self.loss_on_prompts = collator, text_only, loss_on_prompts
        self.start, self.calls = 0, 0

    def restart(self, start: int) -> None:
        """The next batch built (by worker 0) is loader batch ``start``."""
        self.start, self.calls = start, 0

    def _batch_index(self) -> int:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        index = self.start + self.calls * workers + worker
        self.calls += 1
        return index

    def __call__(self, samples: list[Mapping[str, Any]]) -> Batch | None:
        self.collator.set_epoch(self._batch_index())
        pairs = [(s, turns) for s in samples if (turns := self.collator.choose_turns(s))]
        if not pairs:
            return None
        batch = self.collator.collate(pairs)
        batch["image_id"] = batch["image_ids"]  # the key the engine names samples by in errors
        if self.text_only:
            for key in IMAGE_KEYS:
                del batch[key]
        if self.loss_on_prompts:
            padding = batch["attention_mask"] == 0
            batch["labels"] = batch["input_ids"].masked_fill(padding, IGNORE_INDEX)
        return batch


class ShardBatches:
    """Endless micro-batches of one rank, resumable exactly (see the module docstring)."""

    def __init__(
        self, dataset: ShardDataset, builder: BatchBuilder, batch_size: int, num_workers: int
    ) -> None:
        self.dataset, self.builder = dataset, builder
        self.batch_size, self.num_workers = batch_size, num_workers
        self.position = 0
        self._batches: Iterator[Batch | None] | None = None
        if num_workers > 0:
            # Workers are forked after the tokenizer may have used its thread pool.
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def _start(self) -> Iterator[Batch | None]:
        self.dataset.resume(self.position, self.batch_size)
        self.builder.restart(self.position)
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=self.builder,
        )
        return iter(loader)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self._batches is None:
            self._batches = self._start()
        while True:
            batch = next(self._batches)
            self.position += 1
            if batch is not None:
                return batch
            logger.debug("loader batch %d had no usable sample; skipped", self.position - 1)

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])
        self._batches = None  # the next batch restarts the loader at the new position


def count_batch_tokens(batch: Batch, image_tokens_per_sample: int) -> int:
    """Answer tokens (labels != -100) plus image tokens of a batch."""
    answer = int((batch["labels"] != -100).sum())
    images = batch["pixel_values"].shape[0] if "pixel_values" in batch else 0
    return answer + images * image_tokens_per_sample


def training_texts(
    shards_dir: Path, split: str, prompts: PromptTemplates, precision: int
) -> Iterator[str]:
    """Every text of ``split`` a tokenizer must know (images are not decoded).

    Global captions, region texts (captions, refexps, OCR text, categories), the box string of
    every box, and every prompt/answer of every task (the templates filled in).
    """
    yield prompts.global_prompt()
    for sample in ShardDataset(Path(shards_dir), split, decode=False):
        if sample.get("global_caption"):
            yield str(sample["global_caption"])
        for region in sample.get("regions", []):
            yield str(region.get("text") or "")
            box = [region["x1"], region["y1"], region["x2"], region["y2"]]
            yield format_box(normalize_xyxy(box, sample["width"], sample["height"]), precision)
        for task in TASKS:
            for example in build_examples(sample, task, prompts, precision):
                yield example.prompt
                yield example.target


def fit_tokenizer(
    shards_dir: Path,
    split: str,
    prompts: PromptTemplates,
    vocab_size: int,
    min_frequency: int = 2,
    precision: int = 2,
) -> Any:
    """``train_tokenizer`` on every text of ``split`` (see :func:`training_texts`)."""
    texts = training_texts(Path(shards_dir), split, prompts, precision)
    return train_tokenizer(texts, vocab_size, min_frequency, precision)
