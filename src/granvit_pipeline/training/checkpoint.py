"""Step-named checkpoints on top of `engine.save_checkpoint`, with exact resume.

Layout of `<output_dir>/checkpoints/`:

    latest                                   tag of the newest complete checkpoint (text)
    step_000040/
      mp_rank_00_model_states.pt             DeepSpeed, ZeRO 0-2: module weights + our
                                             client_state (step, recipe extra state), LR
                                             scheduler; written by rank 0 (ZeRO 0: optimizer too)
      zero_pp_rank_{R}_mp_rank_00_optim_states.pt
                                             DeepSpeed, ZeRO >= 1: rank R's optimizer partition
      zero_pp_rank_{R}_mp_rank_00_model_states.pt
                                             DeepSpeed, ZeRO 3 (instead of mp_rank_00_...):
                                             rank R's weight partition + client_state
      trainer_state_rank{R:03d}.pt           ours: rank R's RNG states and data position
      trainer_meta.json                      ours: step, recipe, world size, batch sizes, shapes
      COMPLETE                               ours: written last, after every rank has finished

    zero_to_fp32.py, zero_to_torch.py        DeepSpeed's consolidation scripts (copied by it)

A checkpoint without COMPLETE (a run killed while saving) is never resumed from. Resume needs
the same recipe, parameter shapes, world size, micro-batch size, accumulation and ZeRO stage
(`COMPATIBILITY_KEYS`); `steps` and the schedule may change (to extend a run).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

TAG_PREFIX = "step_"
COMPLETE = "COMPLETE"
META = "trainer_meta.json"
# Fields of trainer_meta.json that must match for a resume to be exact.
COMPATIBILITY_KEYS = (
    "recipe",
    "world_size",
    "micro_batch_size",
    "grad_accum_steps",
    "zero_stage",
    "parameters",
)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete, or does not match the run that wants it."""


def checkpoint_tag(step: int) -> str:
    return f"{TAG_PREFIX}{step:06d}"


def parameter_signature(model: nn.Module) -> dict[str, list[Any]]:
    """name -> [shape, trainable]; ZeRO-3 partitioned params report their full `ds_shape`."""
    return {
        name: [list(getattr(p, "ds_shape", p.shape)), p.requires_grad]
        for name, p in model.named_parameters()
    }


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states, as tensors/tuples (weights_only-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.copy()), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rank_file(ckpt_dir: Path, rank: int) -> Path:
    return ckpt_dir / f"trainer_state_rank{rank:03d}.pt"


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def save(
    engine: Any,
    root: Path,
    step: int,
    meta: dict[str, Any],
    data_state: dict[str, Any],
    recipe_state: dict[str, Any],
    keep: int,
) -> Path:
    """Save a checkpoint collectively (every rank calls this); returns its directory."""
    rank = dist.get_rank()
    tag = checkpoint_tag(step)
    ckpt_dir = root / tag
    client_state = {"step": step, "recipe_state": recipe_state}
    engine.save_checkpoint(str(root), tag=tag, client_state=client_state, save_latest=False)
    torch.save({"rng": capture_rng_state(), "data": data_state}, _rank_file(ckpt_dir, rank))
    dist.barrier()
    if rank == 0:
        (ckpt_dir / META).write_text(json.dumps({"step": step, **meta}, indent=2) + "\n")
        (ckpt_dir / COMPLETE).write_text("")
        _write_text_atomic(root / "latest", tag + "\n")
        prune(root, keep)
    dist.barrier()
    return ckpt_dir


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint directories under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob(f"{TAG_PREFIX}*") if (p / COMPLETE).is_file()]
    return sorted(found, key=lambda p: p.name)


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints, and incomplete older ones."""
    kept = complete_checkpoints(root)[-keep:]
    oldest_kept = kept[0].name if kept else ""
    for path in root.glob(f"{TAG_PREFIX}*"):
        if path not in kept and path.name < oldest_kept:
            shutil.rmtree(path, ignore_errors=True)


def find_resume_checkpoint(root: Path, resume_from: str) -> Path | None:
    """Which checkpoint to resume from: "auto" (newest complete, if any), "none", or a path."""
    if resume_from == "none":
        return None
    if resume_from == "auto":
        found = complete_checkpoints(root)
        return found[-1] if found else None
    path = Path(resume_from)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint requested for resume does not exist: {path}")
    if not (path / COMPLETE).is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete (no {COMPLETE} marker)")
    return path


def check_compatible(ckpt_dir: Path, meta_now: dict[str, Any]) -> None:
    """Raise a CheckpointError naming the checkpoint and the first mismatched field."""
    saved = json.loads((ckpt_dir / META).read_text())
    for key in COMPATIBILITY_KEYS:
        if saved.get(key) == meta_now.get(key):
            continue
        if key == "parameters":
            detail = _describe_shape_mismatch(saved.get(key) or {}, meta_now.get(key) or {})
        else:
            detail = f"{saved.get(key)!r} in the checkpoint vs {meta_now.get(key)!r} now"
        raise CheckpointError(f"checkpoint {ckpt_dir} does not match this run: {key}: {detail}")


def _describe_shape_mismatch(saved: dict, now: dict, limit: int = 4) -> str:
    def describe(entry: list | None) -> str:
        if entry is None:
            return "absent"
        shape, trainable = entry
        return f"{shape}{'' if trainable else ' (frozen)'}"

    names = [n for n in sorted(set(saved) | set(now)) if saved.get(n) != now.get(n)]
    parts = [
        f"{n} {describe(saved.get(n))} in the checkpoint vs {describe(now.get(n))} now"
        for n in names[:limit]
    ]
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return "; ".join(parts) + more


def load(engine: Any, ckpt_dir: Path) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Load a checkpoint into `engine` and restore RNG; returns (step, data, recipe state)."""
    load_path, client_state = engine.load_checkpoint(
        str(ckpt_dir.parent), tag=ckpt_dir.name, load_optimizer_states=True
    )
    if load_path is None or client_state is None:
        raise CheckpointError(f"DeepSpeed could not load checkpoint {ckpt_dir}")
    rank_state = torch.load(_rank_file(ckpt_dir, dist.get_rank()), weights_only=True)
    restore_rng_state(rank_state["rng"])
    return int(client_state["step"]), rank_state["data"], client_state["recipe_state"]
