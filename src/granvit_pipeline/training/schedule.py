"""Learning-rate schedule: linear warmup, then cosine decay to `min_lr_ratio * lr`.

We use a torch `LambdaLR` handed to `deepspeed.initialize` rather than DeepSpeed's
`WarmupCosineLR`: the latter runs the first step at `warmup_min_ratio * lr` (0 by default) and
forces at least 2 warmup steps. DeepSpeed checkpoints the client scheduler's `state_dict()`, so
resume is exact.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR


def lr_ratio(step: int, steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak lr used by optimizer step `step` (1-based).

    Warmup: `step / warmup_steps` for `step <= warmup_steps`. Then cosine from 1 at the end of
    warmup down to `min_lr_ratio` at `step == steps`.
    """
    if step <= warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _lambda(last_epoch: int, steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    # LambdaLR's `last_epoch` counts completed steps, so the next step is last_epoch + 1.
    return lr_ratio(last_epoch + 1, steps, warmup_steps, min_lr_ratio)


def make_scheduler(
    optimizer: torch.optim.Optimizer, steps: int, warmup_steps: int, min_lr_ratio: float
) -> LambdaLR:
    """Build the warmup + cosine scheduler (pass a `partial` of it to deepspeed.initialize)."""
    fn = partial(_lambda, steps=steps, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio)
    return LambdaLR(optimizer, fn)
