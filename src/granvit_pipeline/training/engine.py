"""`train(cfg)`: set up a DeepSpeed engine for a recipe, resume if a checkpoint exists, run.

Reads top to bottom: distributed setup, config resolution, seeds, model, DeepSpeed engine (with
the trainer's warmup + cosine schedule), data, resume; then `loop.run` takes the steps and
`_finish` exports. Works in-process (single process: MASTER_ADDR/PORT, RANK, WORLD_SIZE default
to a local one-process group) or under the `deepspeed` launcher (see `training.entry`).

Output layout of `<output_dir>/`:
    run_config.json   TrainConfig + resolved DeepSpeed config (+ world size, device, precision)
    metrics.jsonl     one JSON object per optimizer step
    checkpoints/      see `training.checkpoint`
    export/           the recipe's final artifact (written to export.tmp, then renamed)
    result.json       `TrainResult`, written after the export
    DONE              written last: the run finished and everything above is final
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
import socket
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import deepspeed
import numpy as np
import torch
import torch.distributed as dist
from deepspeed.accelerator import get_accelerator

from granvit_pipeline.training import checkpoint, loop
from granvit_pipeline.training.callbacks import TrainCallback, TrainingError, TrainResult
from granvit_pipeline.training.config import (
    RUN_CONFIG,
    TrainConfig,
    load_template,
    resolve_deepspeed_config,
    run_config_dict,
    write_run_config,
)
from granvit_pipeline.training.recipes import Recipe, load_recipe, load_recipe_extra_state
from granvit_pipeline.training.schedule import make_scheduler

logger = logging.getLogger(__name__)

DONE = "DONE"
RESULT = "result.json"
METRICS = "metrics.jsonl"


@dataclass
class RunContext:
    """Everything the loop needs, built once by `setup`."""

    cfg: TrainConfig
    rank: int
    world_size: int
    device: str
    run_config: dict[str, Any]
    recipe: Recipe
    engine: Any  # deepspeed.DeepSpeedEngine
    data: Any  # ResumableData
    meta: dict[str, Any]  # checkpoint compatibility fields
    start_step: int
    resumed_from: Path | None
    started_at: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_distributed() -> str:
    """Join (or create) the process group; returns the device type ("cuda" or "cpu")."""
    device = get_accelerator().device_name()
    if not dist.is_initialized():
        # In-process use: a one-process group, unless a launcher set the variables.
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
        deepspeed.init_distributed(dist_backend="nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _prepare_output_dir(cfg: TrainConfig, run_config: dict[str, Any]) -> None:
    """Rank 0: forget any earlier DONE/result (this run will write its own) and record config."""
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    for name in (DONE, RESULT):
        (cfg.output_dir / name).unlink(missing_ok=True)
    write_run_config(cfg.output_dir / RUN_CONFIG, run_config)


def _build_engine(cfg: TrainConfig, recipe: Recipe, ds_config: dict) -> tuple[Any, dict]:
    model = recipe.build_model(cfg)
    params = [p for p in recipe.trainable_parameters(model) if p.requires_grad]
    if not params:
        raise TrainingError(f"recipe {cfg.recipe!r} returned no trainable parameters")
    meta = {
        "recipe": cfg.recipe,
        "micro_batch_size": cfg.micro_batch_size,
        "grad_accum_steps": cfg.grad_accum_steps,
        "zero_stage": cfg.zero_stage,
        "parameters": checkpoint.parameter_signature(model),
    }
    scheduler = partial(
        make_scheduler,
        steps=cfg.steps,
        warmup_steps=cfg.warmup_steps,
        min_lr_ratio=cfg.min_lr_ratio,
    )
    engine, _, _, _ = deepspeed.initialize(
        model=model, model_parameters=params, config=ds_config, lr_scheduler=scheduler
    )
    return engine, meta


def _resume(ctx: RunContext) -> None:
    """Load the checkpoint chosen by `cfg.resume_from`, if any, into the context."""
    root = ctx.cfg.output_dir / "checkpoints"
    ckpt = checkpoint.find_resume_checkpoint(root, ctx.cfg.resume_from)
    if ckpt is None:
        return
    checkpoint.check_compatible(ckpt, ctx.meta)
    step, data_state, recipe_state = checkpoint.load(ctx.engine, ckpt)
    ctx.data.load_state_dict(data_state)
    load_recipe_extra_state(ctx.recipe, recipe_state)
    # The optimizer's lr must be the one the restored schedule gives for the next step.
    for group, lr in zip(
        ctx.engine.optimizer.param_groups, ctx.engine.lr_scheduler.get_last_lr(), strict=True
    ):
        group["lr"] = lr
    ctx.start_step, ctx.resumed_from = step, ckpt
    if ctx.rank == 0:
        logger.info("resumed from %s at step %d", ckpt, step)


def setup(cfg: TrainConfig) -> RunContext:
    """Process group, resolved config, model + DeepSpeed engine, data, and resume."""
    started_at = time.perf_counter()
    device = init_distributed()
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if world_size != cfg.num_processes:
        raise TrainingError(
            f"num_processes is {cfg.num_processes} but {world_size} processes were launched"
        )
    template = load_template(cfg.deepspeed_config)
    ds_config = resolve_deepspeed_config(template, cfg, world_size, device)
    run_config = run_config_dict(cfg, ds_config, world_size, device)
    if rank == 0:
        _prepare_output_dir(cfg, run_config)
    seed_everything(cfg.seed)  # same init on every rank
    recipe = load_recipe(cfg.recipe)
    engine, meta = _build_engine(cfg, recipe, ds_config)
    meta["world_size"] = world_size
    seed_everything(cfg.seed + 1_000 * rank + 1)  # distinct streams per rank for the loop
    data = recipe.make_data(cfg, rank, world_size)
    ctx = RunContext(
        cfg, rank, world_size, device, run_config, recipe, engine, data, meta, 0, None, started_at
    )
    try:
        _resume(ctx)
    except BaseException:
        engine.destroy()
        raise
    return ctx


def _full_weights(engine: Any):
    """Context in which `engine.module` holds full weights (ZeRO-3 gathers its partitions)."""
    if engine.zero_optimization_stage() == 3:
        return deepspeed.zero.GatheredParameters(list(engine.module.parameters()))
    return nullcontext()


def weight_digests(engine: Any) -> list[str]:
    """sha256 of this rank's module weights, gathered from every rank (collective)."""
    digest = hashlib.sha256()
    with _full_weights(engine):
        for name, value in sorted(engine.module.state_dict().items()):
            digest.update(name.encode())
            digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, digest.hexdigest())
    return gathered


def _export(ctx: RunContext) -> Path:
    """Rank 0 writes the recipe's artifact to export.tmp, then renames it to export."""
    final = ctx.cfg.output_dir / "export"
    with _full_weights(ctx.engine):
        if ctx.rank == 0:
            tmp = ctx.cfg.output_dir / "export.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            ctx.recipe.export(ctx.engine.module, tmp)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
    return final


def _finish(ctx: RunContext, final_loss: float | None, last_ckpt: Path | None) -> TrainResult:
    digests = weight_digests(ctx.engine)
    if len(set(digests)) > 1:
        raise TrainingError(f"ranks ended with different weights: {digests}")
    export_dir = _export(ctx)
    result = TrainResult(
        output_dir=str(ctx.cfg.output_dir),
        final_step=ctx.cfg.steps,
        resumed_from_step=ctx.start_step if ctx.resumed_from else None,
        final_loss=final_loss,
        elapsed_s=time.perf_counter() - ctx.started_at,
        export_dir=str(export_dir),
        metrics_path=str(ctx.cfg.output_dir / METRICS),
        last_checkpoint=str(last_ckpt) if last_ckpt else None,
        world_size=ctx.world_size,
        rank_weight_digests=digests,
    )
    if ctx.rank == 0:
        result.write(ctx.cfg.output_dir / RESULT)
        (ctx.cfg.output_dir / DONE).write_text(f"{ctx.cfg.steps}\n")  # last: marks completion
    dist.barrier()
    return result


def train(cfg: TrainConfig, callbacks: Sequence[TrainCallback] = ()) -> TrainResult:
    """Train `cfg.recipe` for `cfg.steps` optimizer steps, resuming if a checkpoint exists.

    Collective: every rank calls it. Callbacks run on rank 0. Raises `TrainingError`
    (`NonFiniteLossError`, `TrainingOOMError`, `TrainingStopped`) or `CheckpointError`;
    on error nothing is exported and no DONE marker is written.
    """
    # ZeRO-3 replaces torch.nn.functional.linear process-wide with its own autograd function
    # ("persists unless manually reset", DeepSpeed): its backward rounds differently, so a later
    # run in this process (a Kedro session, a test) would not match a fresh process bit for bit.
    linear = torch.nn.functional.linear
    try:
        ctx = setup(cfg)
        try:
            callbacks = list(callbacks) if ctx.rank == 0 else []
            for callback in callbacks:
                callback.on_train_start(ctx.run_config)
            final_loss, last_ckpt = loop.run(ctx, callbacks, ctx.cfg.output_dir / METRICS)
            result = _finish(ctx, final_loss, last_ckpt)
            for callback in callbacks:
                callback.on_train_end(result)
            return result
        finally:
            ctx.engine.destroy()
    finally:
        torch.nn.functional.linear = linear
