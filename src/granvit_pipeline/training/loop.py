"""The optimizer-step loop: gradient accumulation, metrics, NaN/OOM checks, checkpoints.

One optimizer step = `grad_accum_steps` micro-batches, each `engine.backward` + `engine.step`
(DeepSpeed steps the optimizer, clips and advances the LR schedule at the accumulation boundary).
Metrics of a step are averaged over micro-batches and ranks (one all-reduce per step); rank 0's
callbacks may stop the run, and every rank learns it the same step (one broadcast per step).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from granvit_pipeline.training import checkpoint
from granvit_pipeline.training.callbacks import (
    NonFiniteLossError,
    StopRequested,
    TrainCallback,
    TrainingStopped,
    is_out_of_memory,
    out_of_memory_error,
)
from granvit_pipeline.training.context import RunContext
from granvit_pipeline.training.recipes import Batch, recipe_after_step, recipe_extra_state
from granvit_pipeline.training.run_dir import read_metrics

logger = logging.getLogger(__name__)

ID_KEYS = ("ids", "region_id", "image_id")


def batch_ids(batch: Batch) -> list[Any]:
    """The sample ids a batch carries (first of ID_KEYS present), for error messages."""
    for key in ID_KEYS:
        if key in batch:
            value = batch[key]
            return value.tolist() if isinstance(value, torch.Tensor) else list(value)
    return []


# Float tensors that keep float32 under bf16: bf16 rounds pixel coordinates to 2-4 px.
FULL_PRECISION_KEYS = frozenset({"boxes_px"})


def to_device(batch: Batch, device: torch.device, float_dtype: torch.dtype) -> Batch:
    """Tensors to the engine's device; floating tensors (boxes excepted) to the compute dtype."""
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            cast = value.is_floating_point() and key not in FULL_PRECISION_KEYS
            dtype = float_dtype if cast else value.dtype
            value = value.to(device=device, dtype=dtype, non_blocking=True)
        moved[key] = value
    return moved


@contextmanager
def oom_guard(step: int, micro_batch_size: int):
    try:
        yield
    except RuntimeError as err:
        if is_out_of_memory(err):
            raise out_of_memory_error(err, step, micro_batch_size) from err
        raise


def _local_grad_norm(engine: Any) -> float:
    """Pre-clip global grad norm from `param.grad` (ZeRO 0: grads are all-reduced, unclipped)."""
    norms = [
        p.grad.detach().float().norm() for p in engine.module.parameters() if p.grad is not None
    ]
    return float(torch.stack(norms).norm()) if norms else 0.0


def _micro_step(ctx: RunContext, step: int, last: bool, manual_norm: bool) -> tuple[dict, Batch]:
    """Forward/backward/step on one micro-batch; returns detached losses and the raw batch."""
    engine = ctx.engine
    batch = next(ctx.data)
    dtype = torch.bfloat16 if engine.bfloat16_enabled() else torch.float32
    with oom_guard(step, ctx.cfg.micro_batch_size):
        losses = ctx.recipe.compute_loss(engine, to_device(batch, engine.device, dtype), step)
        engine.backward(losses["loss"])
        norm = _local_grad_norm(engine) if last and manual_norm else None
        engine.step()
    values = {k: v.detach().float() for k, v in losses.items()}
    if norm is not None:
        values["_grad_norm"] = torch.tensor(norm)
    return values, batch


def _reduce(ctx: RunContext, sums: dict[str, torch.Tensor], tokens: int) -> dict[str, float]:
    """Average loss parts over micro-batches and ranks; sum tokens; one all-reduce."""
    keys = sorted(sums)
    packed = torch.stack([sums[k].cpu() for k in keys] + [torch.tensor(float(tokens))])
    if ctx.world_size > 1:
        packed = packed.to(ctx.engine.device)
        dist.all_reduce(packed)
        packed = packed.cpu()
    scale = ctx.cfg.grad_accum_steps * ctx.world_size
    reduced = {k: float(v) / scale for k, v in zip(keys, packed[:-1], strict=True)}
    reduced["_tokens"] = float(packed[-1])
    return reduced


def train_step(ctx: RunContext, step: int) -> dict[str, float]:
    """One optimizer step; returns its metrics (same on every rank)."""
    started = time.perf_counter()
    engine = ctx.engine
    lr = float(engine.get_lr()[0])  # the lr this step uses
    manual_norm = not hasattr(engine.optimizer, "_global_grad_norm")
    sums: dict[str, torch.Tensor] = {}
    ids: list[Any] = []
    tokens = 0
    for micro in range(ctx.cfg.grad_accum_steps):
        last = micro == ctx.cfg.grad_accum_steps - 1
        values, batch = _micro_step(ctx, step, last, manual_norm)
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
        ids += batch_ids(batch)
        tokens += ctx.recipe.count_tokens(batch)
    reduced = _reduce(ctx, sums, tokens)
    losses = {k: v for k, v in reduced.items() if not k.startswith("_")}
    if not all(math.isfinite(v) for v in losses.values()):
        gathered: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(gathered, ids)
        raise NonFiniteLossError(step, losses, gathered)
    if manual_norm:
        grad_norm = reduced["_grad_norm"] * ctx.cfg.grad_accum_steps  # undo the mean
    else:
        grad_norm = engine.get_global_grad_norm()
    recipe_after_step(ctx.recipe, engine.module, step)
    seconds = time.perf_counter() - started
    samples = ctx.cfg.micro_batch_size * ctx.cfg.grad_accum_steps * ctx.world_size
    return {
        "step": step,
        **losses,
        "lr": lr,
        "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
        "samples_per_s": samples / seconds,
        "tokens_per_s": reduced["_tokens"] / seconds,
        "step_time_s": seconds,
        "elapsed_s": time.perf_counter() - ctx.started_at,
    }


class MetricsWriter:
    """Appends one JSON line per step to metrics.jsonl (rank 0), flushed every step.

    On resume, lines for steps after the checkpoint (run, then lost, by the killed process) are
    dropped, so the file holds each step exactly once.
    """

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        if path.exists():
            kept = [row for row in read_metrics(path) if row["step"] <= resume_step]
            path.write_text("".join(json.dumps(row) + "\n" for row in kept))
        self.file = path.open("a")

    def write(self, metrics: dict[str, float]) -> None:
        self.file.write(json.dumps(metrics) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _checkpoint(ctx: RunContext, step: int) -> Path:
    if ctx.rank == 0:
        logger.info("saving checkpoint at step %d", step)
    return checkpoint.save(
        ctx.engine,
        ctx.run_dir.checkpoints,
        step,
        ctx.meta,
        ctx.data.state_dict(),
        recipe_extra_state(ctx.recipe),
        ctx.cfg.keep_checkpoints,
    )


def _progress(ctx: RunContext) -> tqdm:
    interactive = sys.stderr.isatty()
    return tqdm(
        total=ctx.cfg.steps,
        initial=ctx.start_step,
        disable=ctx.rank != 0,
        desc="train",
        unit="step",
        mininterval=1.0 if interactive else 30.0,
        dynamic_ncols=interactive,
    )


def _report(
    ctx, step, metrics, writer, bar, callbacks: list[TrainCallback]
) -> StopRequested | None:
    """Rank 0: metrics file, progress bar, log line, callbacks; a callback's stop request is
    returned (not raised) so that every rank can learn of it first."""
    if ctx.rank != 0:
        return None
    writer.write(metrics)
    bar.update(1)
    bar.set_postfix(loss=f"{metrics['loss']:.4g}", lr=f"{metrics['lr']:.3g}", refresh=False)
    if step % ctx.cfg.log_every == 0 or step == ctx.cfg.steps:
        logger.info(
            "step %d/%d loss %.5g lr %.3g grad_norm %.3g %.1f samples/s",
            step,
            ctx.cfg.steps,
            metrics["loss"],
            metrics["lr"],
            metrics["grad_norm"],
            metrics["samples_per_s"],
        )
    try:
        for callback in callbacks:
            callback.on_step(step, metrics)
    except StopRequested as stop:
        return stop
    return None


def agree_on_stop(ctx: RunContext, step: int, stop: StopRequested | None) -> StopRequested | None:
    """Rank 0's stop decision on every rank (a broadcast each step; collective on all ranks).

    Without it, rank 0 leaving alone would strand the others in the next step's collectives
    until the launcher kills them. Other ranks get a ``StopRequested`` with rank 0's exit code.
    """
    if ctx.world_size == 1:
        return stop
    code = torch.tensor([stop.exit_code if stop else 0], dtype=torch.int64, device=ctx.device)
    dist.broadcast(code, src=0)
    if ctx.rank == 0 or not code.item():
        return stop
    remote = StopRequested(step, f"rank 0 stopped the run after step {step}")
    remote.exit_code = int(code.item())
    return remote


def run(ctx: RunContext, callbacks: list[TrainCallback]):
    """Steps start_step+1 .. cfg.steps; returns (last loss or None, last checkpoint or None)."""
    cfg = ctx.cfg
    writer = MetricsWriter(ctx.run_dir.metrics, ctx.start_step) if ctx.rank == 0 else None
    bar = _progress(ctx)
    final_loss, last_ckpt = None, ctx.resumed_from
    try:
        for step in range(ctx.start_step + 1, cfg.steps + 1):
            metrics = train_step(ctx, step)
            final_loss = metrics["loss"]
            stop = agree_on_stop(ctx, step, _report(ctx, step, metrics, writer, bar, callbacks))
            if stop is not None:
                raise stop
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                last_ckpt = _checkpoint(ctx, step)
                for callback in callbacks:
                    callback.on_checkpoint(step, last_ckpt)
            if cfg.stop_after_step == step and step < cfg.steps:
                raise TrainingStopped(f"stopped after step {step} (stop_after_step)")
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return final_loss, last_ckpt
