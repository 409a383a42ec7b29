"""Training recipes: what to train, on what data, with which loss. The engine is model-agnostic.

A recipe is a class with the methods of `Recipe` and an `Args` pydantic model. The TrainConfig
holds the class itself (`TrainConfig(recipe=ToyRecipe, ...)`), so a new recipe plugs in without
editing the engine. The class is instantiated with no arguments; its settings come from
`cfg.recipe_args`, already validated as its `Args`. Recipes: `training.toy.ToyRecipe` (tests,
smoke runs), `training.granvit.recipe.GranViTRecipe`.

Batches are dicts: tensors (moved to the device by the engine) plus metadata lists; a list under
"ids", "region_id" or "image_id" names the samples in error messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from pydantic import BaseModel
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

    Args: ClassVar[type[BaseModel]]  # the model of `cfg.recipe_args`

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


def load_recipe(cfg: TrainConfig) -> Recipe:
    """Instantiate ``cfg.recipe``, checking that it has the methods of `Recipe`."""
    recipe = cfg.recipe()
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(recipe, m, None))]
    if missing:
        raise TypeError(f"recipe {cfg.recipe.__qualname__} lacks {', '.join(sorted(missing))}")
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
