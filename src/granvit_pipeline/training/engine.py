"""`train(cfg)`: set up a DeepSpeed engine for a recipe, resume if a checkpoint exists, run.

Reads top to bottom: distributed setup, config resolution, seeds, model, DeepSpeed engine (with
the trainer's warmup + cosine schedule), data, resume; then `loop.run` takes the steps and
`_finish` exports. Works in-process (single process: MASTER_ADDR/PORT, RANK, WORLD_SIZE default
to a local one-process group) or under the `deepspeed` launcher (see `worker.entry`).

What it writes in `<output_dir>/` is listed in `training.run_dir`.
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
    TrainConfig,
    load_template,
    resolve_deepspeed_config,
    run_config_dict,
    write_run_config,
)
from granvit_pipeline.training.context import RunContext
from granvit_pipeline.training.recipes import Recipe, load_recipe, load_recipe_extra_state
from granvit_pipeline.training.run_dir import RunDir
from granvit_pipeline.training.schedule import make_scheduler

logger = logging.getLogger(__name__)


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
    run_dir = RunDir(cfg.output_dir)
    run_dir.root.mkdir(parents=True, exist_ok=True)
    for path in (run_dir.done, run_dir.result):
        path.unlink(missing_ok=True)
    write_run_config(run_dir.run_config, run_config)


def _build_engine(cfg: TrainConfig, recipe: Recipe, ds_config: dict) -> tuple[Any, dict]:
    model = recipe.build_model(cfg)
    params = [p for p in recipe.trainable_parameters(model) if p.requires_grad]
    if not params:
        raise TrainingError(f"recipe {cfg.recipe.__qualname__} returned no trainable parameters")
    meta = {
        "recipe": cfg.model_dump(mode="json", include={"recipe"})["recipe"],
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
    ckpt = checkpoint.find_resume_checkpoint(ctx.run_dir.checkpoints, ctx.cfg.resume_from)
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
    recipe = load_recipe(cfg)
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
    final, tmp = ctx.run_dir.export, ctx.run_dir.export_tmp
    with _full_weights(ctx.engine):
        if ctx.rank == 0:
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
        metrics_path=str(ctx.run_dir.metrics),
        last_checkpoint=str(last_ckpt) if last_ckpt else None,
        world_size=ctx.world_size,
        rank_weight_digests=digests,
    )
    if ctx.rank == 0:
        result.write(ctx.run_dir.result)
        ctx.run_dir.done.write_text(f"{ctx.cfg.steps}\n")  # last: marks completion
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
            final_loss, last_ckpt = loop.run(ctx, callbacks)
            result = _finish(ctx, final_loss, last_ckpt)
            for callback in callbacks:
                callback.on_train_end(result)
            return result
        finally:
            ctx.engine.destroy()
    finally:
        torch.nn.functional.linear = linear
