"""Small GranViT inputs without Kedro: demo shards for smoke runs, tests and benchmarks.

The project's real path is ``kedro run --pipeline data`` (ingest -> validate -> shard) and the
``pretrain`` pipeline's tokenizer node; this module builds the same artefacts straight from the
libraries (no validation step) for smoke runs that must start in a second::

    shards = write_demo_shards(tmp / "shards", n_images=24)
    tokenizer = data.fit_tokenizer(shards, "train", PromptTemplates(), vocab_size=1024)
    tokenizer.save_pretrained(tmp / "tokenizer")
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from granvit_pipeline.regions.demo import DemoConfig, generate_demo
from granvit_pipeline.regions.quarantine import Quarantine
from granvit_pipeline.regions.readers import map_jsonl_records
from granvit_pipeline.regions.shards import ShardConfig, plan_shards, write_shards

logger = logging.getLogger(__name__)


def write_demo_shards(
    out_dir: Path,
    n_images: int,
    seed: int = 0,
    max_images_per_shard: int = 8,
    split_fractions: dict[str, float] | None = None,
    **demo: Any,
) -> Path:
    """Generate ``n_images`` demo images (all in the train split unless ``split_fractions``
    says otherwise) and shard them into ``out_dir``.

    The rendered PNGs go to ``<out_dir>.images/``; ``demo`` overrides other ``DemoConfig`` fields.
    """
    out_dir = Path(out_dir)
    images_dir = out_dir.with_name(out_dir.name + ".images")
    records = []
    for item in generate_demo(DemoConfig(seed=seed, n_images=n_images, **demo)):
        path = images_dir / item.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.png)
        records.append((f"image {len(records)}", item.record))
    batches = map_jsonl_records(
        records, source="demo", images_dir=images_dir, file_label="demo",
        quarantine=Quarantine(),
        split_fractions=split_fractions or {"train": 1.0, "val": 0.0, "test": 0.0},
    )  # fmt: skip
    cfg = ShardConfig(max_images_per_shard=max_images_per_shard, workers=1)
    write_shards(plan_shards(batches, cfg), out_dir, cfg)
    return out_dir
