"""Training recipes: what to train, on what data, with which loss. The engine is model-agnostic.

A recipe is any object with the methods of `Recipe`. Recipes are named in the TrainConfig either
by a registered short name (`RECIPES`) or by an import path "package.module:ClassName", so a new
recipe plugs in without editing the engine. The class is instantiated with no arguments; its
settings come from `cfg.recipe_args`.

Batches are dicts: tensors (moved to the device by the engine) plus metadata lists; a list under
"ids", "region_id" or "image_id" names the samples in error messages.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import save_file
from torch import nn

from granvit_pipeline.training.config import TrainConfig

Batch = dict[str, Any]


@runtime_checkable
class ResumableData(Protocol):
    """An endless iterator of micro-batches that can resume exactly where it stopped."""

    def __iter__(self) -> Iterator[Batch]: ...

    def __next__(self) -> Batch: ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable position; at least {"position": micro-batches consumed}."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Recipe(Protocol):
    """The contract between the engine and a model/data/loss combination.

    `after_step`, `extra_state` and `load_extra_state` are optional.
    """

    def build_model(self, cfg: TrainConfig) -> nn.Module: ...

    def trainable_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]: ...

    def make_data(self, cfg: TrainConfig, rank: int, world_size: int) -> ResumableData: ...

    def compute_loss(self, model: nn.Module, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """{"loss": scalar to minimise, plus named parts (logged)}."""
        ...

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimizer step (e.g. an EMA teacher update)."""
        ...

    def extra_state(self) -> dict[str, Any]:
        """Recipe state outside the model/optimizer (e.g. EMA teacher); saved in checkpoints."""
        ...

    def load_extra_state(self, state: dict[str, Any]) -> None: ...

    def export(self, model: nn.Module, out_dir: Path) -> None:
        """Write the final artifact into `out_dir` (exists, empty)."""
        ...

    def count_tokens(self, batch: Batch) -> int: ...


# after_step, extra_state and load_extra_state are optional: see the recipe_* helpers below.
REQUIRED_METHODS = (
    "build_model",
    "trainable_parameters",
    "make_data",
    "compute_loss",
    "export",
    "count_tokens",
)

RECIPES: dict[str, str] = {
    "toy": "granvit_pipeline.training.recipes:ToyRecipe",
}


def load_recipe(name: str) -> Recipe:
    """Instantiate a recipe from a registered name or a "module:Class" import path."""
    path = RECIPES.get(name, name)
    if ":" not in path:
        raise ValueError(
            f"unknown recipe {name!r}: use one of {sorted(RECIPES)} or 'package.module:Class'"
        )
    module_name, _, attr = path.partition(":")
    try:
        recipe = getattr(importlib.import_module(module_name), attr)()
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load recipe {name!r} from {path!r}: {err}") from err
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(recipe, m, None))]
    if missing:
        raise TypeError(f"recipe {path!r} lacks {', '.join(sorted(missing))}")
    return recipe


def recipe_extra_state(recipe: Recipe) -> dict[str, Any]:
    """The recipe's extra state, or {} when it has no `extra_state` hook."""
    hook = getattr(recipe, "extra_state", None)
    return hook() if callable(hook) else {}


def load_recipe_extra_state(recipe: Recipe, state: dict[str, Any]) -> None:
    hook = getattr(recipe, "load_extra_state", None)
    if callable(hook):
        hook(state)
    elif state:
        raise ValueError(
            f"checkpoint carries recipe state but {type(recipe).__name__} cannot load it"
        )


def recipe_after_step(recipe: Recipe, model: nn.Module, step: int) -> None:
    hook = getattr(recipe, "after_step", None)
    if callable(hook):
        hook(model, step)


# --------------------------------------------------------------------------- toy recipe


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

    def __init__(self) -> None:
        self.args = ToyArgs()
        self.ema: dict[str, torch.Tensor] | None = None

    def build_model(self, cfg: TrainConfig) -> nn.Module:
        self.args = ToyArgs.model_validate(cfg.recipe_args)
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
