"""Pretrain nodes: fit the tokenizer, then train the GranViT stages through ``training.launch``.

Each training node builds a ``TrainConfig`` from the parameters, launches the training entry
point in child process(es) (``deepspeed`` launcher when ``num_processes > 1``), and returns a
small JSON-able result that the next stage's node takes as input. The engine writes
``<output_root>/<stage>/`` (run_config.json, metrics.jsonl, checkpoints/, export/, train.log).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from granvit_pipeline.datasets import ShardSet
from granvit_pipeline.pipelines.pretrain.params import (
    VOLATILE_TRAIN_FIELDS,
    CommonParams,
    PretrainParams,
    StageParams,
    global_only_params,
    train_config,
)
from granvit_pipeline.training.config import TrainConfig
from granvit_pipeline.training.granvit_data import fit_tokenizer
from granvit_pipeline.training.granvit_recipe import GranViTArgs
from granvit_pipeline.training.launcher import launch

logger = logging.getLogger(__name__)

INPUTS_FILE = "inputs.json"  # what the run in an output dir was started from (resume guard)


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


def _fingerprint(cfg: TrainConfig, inputs: dict[str, Any]) -> dict[str, Any]:
    train = cfg.model_dump(mode="json", exclude=set(VOLATILE_TRAIN_FIELDS))
    return {"train": train, "inputs": inputs}


def _fresh_unless_same_run(cfg: TrainConfig, inputs: dict[str, Any]) -> None:
    """Resume only a run of the same config and inputs; otherwise clear the output dir.

    The engine resumes from any compatible checkpoint in ``output_dir``; after new data, a new
    tokenizer or a retrained previous stage that would silently continue a stale run.
    """
    marker = cfg.output_dir / INPUTS_FILE
    wanted = _fingerprint(cfg, inputs)
    if cfg.output_dir.exists() and (
        not marker.is_file() or json.loads(marker.read_text()) != wanted
    ):
        logger.info("%s holds another run (config or inputs changed): fresh start", cfg.output_dir)
        shutil.rmtree(cfg.output_dir)
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")


def _last_metrics(path: Path) -> dict[str, Any]:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []
    return json.loads(lines[-1]) if lines else {}


def run_stage(
    stage: str,
    shards: ShardSet,
    tokenizer_dir: Path,
    previous: Mapping[str, Any] | None,
    common: CommonParams,
    params: StageParams,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Train one stage (starting from ``previous``'s export, if given) in
    ``<output_root>/<run_name or stage>/``; returns its result."""
    init_from = None if previous is None else Path(previous["export_dir"])
    cfg = train_config(stage, common, params, shards.path, tokenizer_dir, init_from, run_name)
    GranViTArgs.model_validate(cfg.recipe_args).check_inputs()  # clear errors before launching
    tokenizer_json = Path(tokenizer_dir) / "tokenizer.json"
    inputs = {
        "shards": shards.manifest["content_hash"],
        "tokenizer": hashlib.sha256(tokenizer_json.read_bytes()).hexdigest(),
        "init_from": None if previous is None else previous["weights_digest"],
    }
    _fresh_unless_same_run(cfg, inputs)
    started = time.perf_counter()
    result = launch(cfg)
    final = _last_metrics(Path(result.metrics_path))
    summary = {
        "stage": stage,
        "run_name": run_name or stage,
        "export_dir": result.export_dir,
        "output_dir": result.output_dir,
        "steps": result.final_step,
        "resumed_from_step": result.resumed_from_step,
        "final_metrics": final,
        "wall_time_s": round(time.perf_counter() - started, 3),
        "world_size": result.world_size,
        "weights_digest": result.rank_weight_digests[0],
    }
    parts = ", ".join(f"{k} {v:.4g}" for k, v in final.items() if k.startswith("loss"))
    logger.info(
        "%s: %d steps in %.1f s (%d process(es)); last step %s; export %s",
        stage, result.final_step, summary["wall_time_s"], result.world_size, parts or "-",
        result.export_dir,
    )  # fmt: skip
    return summary


def train_lm_warmup(
    shards: ShardSet, tokenizer: Path, common: Mapping[str, Any], params: Mapping[str, Any]
) -> dict[str, Any]:
    """Text-only warm-up of the randomly initialised LLM (prompt -> answer, no image)."""
    return run_stage(
        "lm_warmup", shards, tokenizer, None, CommonParams(**common), StageParams(**params)
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
        "stage1", shards, tokenizer, lm_warmup_result, CommonParams(**common), StageParams(**params)
    )


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
        "global_only", shards, tokenizer, lm_warmup_result, CommonParams(**common), merged
    )
