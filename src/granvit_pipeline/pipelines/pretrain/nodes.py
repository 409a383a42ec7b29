"""Pretrain nodes: fit the tokenizer, then train the GranViT stages (``training.granvit``).

Each training node validates its parameters once (``training.granvit.params``) and hands them
to ``training.granvit.stages.run_stage``, which trains in child process(es) and returns the
small JSON-able summary that the next stage's node takes as input.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from granvit_pipeline.datasets import ShardSet
from granvit_pipeline.training.granvit.data import fit_tokenizer
from granvit_pipeline.training.granvit.params import (
    CommonParams,
    PretrainParams,
    StageParams,
    global_only_params,
)
from granvit_pipeline.training.granvit.recipe import GranViTArgs
from granvit_pipeline.training.granvit.stages import run_stage

logger = logging.getLogger(__name__)


def train_tokenizer(shards: ShardSet, params: Mapping[str, Any]) -> dict[str, bytes]:
    """Fit the tokenizer on the training split's texts; returns its save_pretrained files.

    Also validates every pretrain parameter, so a typo fails here, before any training.
    """
    cfg = PretrainParams.model_validate(params)
    args = GranViTArgs.model_validate(
        {**cfg.common.recipe, "stage": "lm_warmup", "shards_dir": shards.path, "tokenizer_dir": "."}
    )
    tokenizer = fit_tokenizer(
        shards.path, args.split, args.prompts, cfg.tokenizer.vocab_size,
        cfg.tokenizer.min_frequency, args.box_precision,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
    logger.info("tokenizer: %d tokens from split %r of %s", len(tokenizer), args.split, shards.path)
    return files


def train_lm_warmup(
    shards: ShardSet, tokenizer: Path, common: Mapping[str, Any], params: Mapping[str, Any]
) -> dict[str, Any]:
    """Text-only warm-up of the randomly initialised LLM (prompt -> answer, no image)."""
    return run_stage(
        "lm_warmup", CommonParams(**common), StageParams(**params), shards.path, tokenizer
    )


def train_stage1(
    shards: ShardSet,
    tokenizer: Path,
    lm_warmup_result: Mapping[str, Any],
    common: Mapping[str, Any],
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """Stage 1: global caption + Bbox2Caption + self-distillation; LLM frozen."""
    return run_stage(
        "stage1", CommonParams(**common), StageParams(**params), shards.path, tokenizer,
        lm_warmup_result,
    )  # fmt: skip


def train_global_only(
    shards: ShardSet,
    tokenizer: Path,
    lm_warmup_result: Mapping[str, Any],
    common: Mapping[str, Any],
    stage1_params: Mapping[str, Any],
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """Ablation base encoder: global captions only, from stage 1's start with its schedule
    (``pretrain.stage1.training``, then ``pretrain.global_only.training`` on top)."""
    merged = global_only_params(StageParams(**stage1_params), StageParams(**params))
    return run_stage(
        "global_only", CommonParams(**common), merged, shards.path, tokenizer, lm_warmup_result
    )
