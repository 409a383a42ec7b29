"""Run one GranViT stage in child processes and summarise it: what every training node does.

``run_stage`` builds the stage's validated ``TrainConfig`` (``params.train_config``), guards the
run directory (resume only the same run), launches the training processes
(``training.launcher``) and returns a small JSON-able summary that the next stage's node takes
as ``previous``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from granvit_pipeline.regions.shards import read_manifest
from granvit_pipeline.training.config import TrainConfig
from granvit_pipeline.training.granvit.params import CommonParams, StageParams, train_config
from granvit_pipeline.training.granvit.recipe import GranViTArgs
from granvit_pipeline.training.launcher import launch
from granvit_pipeline.training.run_dir import RunDir, last_metrics

logger = logging.getLogger(__name__)

# Settings that do not change what is trained: a changed value still resumes the old run.
VOLATILE_TRAIN_FIELDS = frozenset(
    {"stop_after_step", "resume_from", "log_every", "checkpoint_every", "keep_checkpoints"}
)


def run_inputs(args: GranViTArgs, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a stage starts from, by content: the data version, the tokenizer, the init."""
    tokenizer_json = args.tokenizer_dir / "tokenizer.json"
    return {
        "shards": read_manifest(args.shards_dir)["content_hash"],
        "tokenizer": hashlib.sha256(tokenizer_json.read_bytes()).hexdigest(),
        "init_from": None if previous is None else previous["weights_digest"],
    }


def fresh_unless_same_run(cfg: TrainConfig, inputs: dict[str, Any]) -> None:
    """Resume only a run of the same config and inputs; otherwise clear the output dir.

    The engine resumes from any compatible checkpoint in ``output_dir``; after new data, a new
    tokenizer or a retrained previous stage that would silently continue a stale run.
    """
    marker = RunDir(cfg.output_dir).inputs
    wanted = {"train": cfg.model_dump(mode="json", exclude=set(VOLATILE_TRAIN_FIELDS)),
              "inputs": inputs}  # fmt: skip
    if cfg.output_dir.exists() and (
        not marker.is_file() or json.loads(marker.read_text()) != wanted
    ):
        logger.info("%s holds another run (config or inputs changed): fresh start", cfg.output_dir)
        shutil.rmtree(cfg.output_dir)
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(wanted, indent=2, sort_keys=True) + "\n")


def run_stage(
    stage: str,
    common: CommonParams,
    params: StageParams,
    shards_dir: Path,
    tokenizer_dir: Path,
    previous: Mapping[str, Any] | None = None,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Train ``stage`` in ``<output_root>/<run_name or stage>/``, from ``previous``'s export
    (the summary of the stage it continues) if given; returns this stage's summary."""
    init_from = None if previous is None else Path(previous["export_dir"])
    cfg = train_config(stage, common, params, shards_dir, tokenizer_dir, init_from, run_name)
    args = cfg.recipe_args
    assert isinstance(args, GranViTArgs)  # train_config validated it
    args.check_inputs()  # clear errors before launching
    fresh_unless_same_run(cfg, run_inputs(args, previous))
    started = time.perf_counter()
    result = launch(cfg)
    final = last_metrics(Path(result.metrics_path))
    summary = {
        "stage": args.stage,
        "run_name": cfg.output_dir.name,
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
        args.stage, result.final_step, summary["wall_time_s"], result.world_size, parts or "-",
        result.export_dir,
    )  # fmt: skip
    return summary
