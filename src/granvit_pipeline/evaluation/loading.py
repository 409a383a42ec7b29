"""A trained GranViT with what it was trained with: tokenizer, prompt templates, box precision.

Scoring a model with other prompts than its training prompts measures the prompts, not the
model, so the templates and box precision are read back from the training run's
``run_config.json`` (``train.recipe_args``, :class:`~granvit_pipeline.training.granvit.recipe.
GranViTArgs` fields ``prompts`` and ``box_precision``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from granvit_pipeline.model.export import load_full
from granvit_pipeline.model.modeling import GranViT
from granvit_pipeline.model.prompts import PromptTemplates
from granvit_pipeline.regions.shards import ShardDataset, read_manifest
from granvit_pipeline.training.config import read_run_config
from granvit_pipeline.training.granvit.recipe import GranViTArgs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedModel:
    """A model ready for evaluation (eval mode, on its device)."""

    model: GranViT
    tokenizer: Any  # the tokenizer exported with the model
    prompts: PromptTemplates  # the templates it was trained with
    box_precision: int  # decimals of box coordinates in its prompts and answers


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; any other value as ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_trained(
    export_dir: str | Path, run_config: str | Path | None = None, device: str = "cpu"
) -> TrainedModel:
    """Load an ``export_full`` folder and the prompts of the run that trained it.

    Args:
        export_dir: a stage's ``export/`` (written by :func:`~granvit_pipeline.model.export.
            export_full`, with its tokenizer).
        run_config: that run's ``run_config.json``; None: the paper's prompts and the
            recipe's default box precision.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``, ...
    """
    model, tokenizer = load_full(export_dir)
    if tokenizer is None:
        raise FileNotFoundError(f"{export_dir} has no tokenizer/: cannot decode generations")
    prompts = PromptTemplates()
    precision: int = GranViTArgs.model_fields["box_precision"].default
    if run_config is not None:
        args = read_run_config(Path(run_config)).recipe_args
        assert isinstance(args, GranViTArgs), f"{run_config} is not a GranViT run"
        prompts, precision = args.prompts, args.box_precision
    target = resolve_device(device)
    model = model.to(target).eval()
    logger.info("loaded %s on %s (box precision %d)", export_dir, target, precision)
    return TrainedModel(model, tokenizer, prompts, precision)


def split_samples(shards_dir: Path, split: str, limit: int | None) -> Iterator[dict[str, Any]]:
    """The split's samples in shard order (at most ``limit``); an empty split is an error."""
    if read_manifest(shards_dir)["splits"].get(split, {}).get("images", 0) == 0:
        raise ValueError(f"split {split!r} of {shards_dir} has no images to evaluate on")
    return islice(ShardDataset(shards_dir, split), limit)
