"""The search space: draw a trial's values, apply them to stage parameters, write them back out.

A trial's values are keyed by the space's names (``stage1_lr``); each lands at its ``target``
inside the stage's parameters (``stage1.training.lr`` -> ``params["training"]["lr"]``). The same
mapping writes the best values as a Kedro parameters file (``pretrain.stage1.training.lr``,
``adapt.stage2.training.lr``) that a conf environment merges softly over base.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from granvit_pipeline.tuning.config import ParamSpec

# Where each stage's parameters live in the Kedro parameters (params:<pipeline>.<stage>).
STAGE_PIPELINE = {"stage1": "pretrain", "stage2": "adapt"}


def suggest(trial: Any, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Draw one value per searched parameter from an ``optuna.Trial``."""
    values: dict[str, Any] = {}
    for name, spec in space.items():
        if spec.type == "categorical":
            values[name] = trial.suggest_categorical(name, spec.choices)
        elif spec.type == "int":
            step = int(spec.step or 1)
            values[name] = trial.suggest_int(
                name, int(spec.low), int(spec.high), step=step, log=spec.log
            )
        else:
            values[name] = trial.suggest_float(
                name, spec.low, spec.high, step=spec.step, log=spec.log
            )
    return values


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"{dotted}: {key} is not a mapping")
    node[leaf] = value


def apply_values(
    stage: str,
    stage_params: Mapping[str, Any],
    values: Mapping[str, Any],
    space: Mapping[str, ParamSpec],
) -> dict[str, Any]:
    """A copy of one stage's parameters (``{training, recipe}``) with the trial's values set."""
    params = copy.deepcopy(dict(stage_params))
    for name, value in values.items():
        spec = space[name]
        if spec.stage == stage:
            _set_dotted(params, spec.target.split(".", 1)[1], value)
    return params


def tuned_parameters(values: Mapping[str, Any], space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """The values as a Kedro parameters tree (``{pretrain: {stage1: ...}, adapt: {...}}``),
    holding only the tuned keys: merged softly over base by a conf environment."""
    tree: dict[str, Any] = {}
    for name, value in values.items():
        spec = space[name]
        _set_dotted(tree, f"{STAGE_PIPELINE[spec.stage]}.{spec.target}", _plain(value))
    return tree


def _plain(value: Any) -> Any:
    """numpy scalars and the like as plain YAML types."""
    return value.item() if hasattr(value, "item") else value
