"""The toy recipe: a per-token MLP regressing a fixed random function; every hook of `Recipe`.

Fast enough for the engine's tests and smoke runs (``TrainConfig(recipe=ToyRecipe, ...)``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import save_file
from torch import nn

from granvit_pipeline.training.config import TrainConfig
from granvit_pipeline.training.recipes import Batch


class ToyArgs(BaseModel):
    """`recipe_args` of the toy recipe: a per-token MLP regressing a fixed random function."""

    model_config = ConfigDict(extra="forbid")

    dim: int = Field(default=8, gt=0)  # input/output features per token
    hidden: int = Field(default=32, gt=0)  # MLP width
    tokens: int = Field(default=4, gt=0)  # tokens per sample
    frozen_input: bool = True  # a frozen input projection (requires_grad=False)
    ema_decay: float | None = Field(default=0.9, ge=0, lt=1)  # EMA copy of the MLP; None: off
    nan_sample_ids: list[int] = Field(default_factory=list)  # samples whose inputs are NaN


class ToyModel(nn.Module):
    def __init__(self, args: ToyArgs):
        super().__init__()
        self.input_proj = nn.Linear(args.dim, args.dim)
        self.input_proj.requires_grad_(not args.frozen_input)
        self.mlp = nn.Sequential(
            nn.Linear(args.dim, args.hidden), nn.GELU(), nn.Linear(args.hidden, args.dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.input_proj(x))


class ToyData:
    """Seeded synthetic samples; sample i of the global stream is a pure function of (seed, i).

    Rank r reads global samples r, r + W, r + 2W, ...; micro-batch k of a rank holds that rank's
    samples [k * B, (k + 1) * B), so state is just the number of micro-batches consumed.
    """

    def __init__(self, args: ToyArgs, seed: int, batch_size: int, rank: int, world_size: int):
        self.args, self.seed, self.batch_size = args, seed, batch_size
        self.rank, self.world_size, self.position = rank, world_size, 0
        target = np.random.default_rng([seed, 1_000_003])
        self._w1 = target.standard_normal((args.dim, args.dim)) / np.sqrt(args.dim)
        self._w2 = target.standard_normal((args.dim, args.dim)) / np.sqrt(args.dim)

    def _sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.random.default_rng([self.seed, index]).standard_normal(
            (self.args.tokens, self.args.dim)
        )
        if index in self.args.nan_sample_ids:
            x[:] = np.nan
        return x, np.tanh(x @ self._w1) @ self._w2

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        first = self.position * self.batch_size
        ids = [(first + i) * self.world_size + self.rank for i in range(self.batch_size)]
        xs, ys = zip(*(self._sample(i) for i in ids), strict=True)
        self.position += 1
        return {
            "x": torch.from_numpy(np.stack(xs)).float(),
            "y": torch.from_numpy(np.stack(ys)).float(),
            "ids": ids,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])


class ToyRecipe:
    """Tiny recipe for tests and smoke runs; exercises every hook of the `Recipe` protocol."""

    Args = ToyArgs

    def __init__(self) -> None:
        self.args = ToyArgs()
        self.ema: dict[str, torch.Tensor] | None = None

    def build_model(self, cfg: TrainConfig) -> nn.Module:
        assert isinstance(cfg.recipe_args, ToyArgs)  # TrainConfig validated it as `Args`
        self.args = cfg.recipe_args
        model = ToyModel(self.args)
        if self.args.ema_decay is not None:
            self.ema = {k: v.detach().clone() for k, v in model.mlp.state_dict().items()}
        return model

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def make_data(self, cfg: TrainConfig, rank: int, world_size: int) -> ToyData:
        return ToyData(self.args, cfg.seed, cfg.micro_batch_size, rank, world_size)

    def compute_loss(self, model: nn.Module, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        pred = model(batch["x"])
        mse = torch.nn.functional.mse_loss(pred.float(), batch["y"].float())
        activity = 1e-3 * pred.float().pow(2).mean()
        return {"loss": mse + activity, "loss_mse": mse, "loss_activity": activity}

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int) -> None:
        if self.ema is None:
            return
        decay = self.args.ema_decay
        for name, value in model.mlp.state_dict().items():
            self.ema[name].mul_(decay).add_(value.detach().to(self.ema[name]), alpha=1 - decay)

    def extra_state(self) -> dict[str, Any]:
        return {"ema": None if self.ema is None else {k: v.cpu() for k, v in self.ema.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("ema") is not None:
            self.ema = {k: v.clone() for k, v in state["ema"].items()}

    def export(self, model: nn.Module, out_dir: Path) -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        for name, value in (self.ema or {}).items():
            tensors[f"ema.{name}"] = value.cpu().contiguous()
        save_file(tensors, str(out_dir / "model.safetensors"))
        (out_dir / "config.json").write_text(json.dumps(self.args.model_dump(), indent=2))

    def count_tokens(self, batch: Batch) -> int:
        return int(batch["x"].shape[0] * batch["x"].shape[1])
