"""Parameters of the training pipelines (``params:pretrain``, ``params:adapt``), validated once.

``pretrain.common`` holds what every stage shares (model preset, data, TrainConfig defaults);
each stage (``pretrain.lm_warmup``, ``pretrain.stage1``, ``pretrain.global_only``,
``adapt.stage2``) overrides TrainConfig fields under ``training`` and GranViT recipe fields
under ``recipe``. Both layers are checked against ``TrainConfig`` / ``GranViTArgs``
(``extra="forbid"``) as soon as the parameters are read, so a typo fails before any training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from granvit_pipeline.model.stages import stage_spec
from granvit_pipeline.training.config import TrainConfig
from granvit_pipeline.training.granvit.recipe import GranViTArgs, GranViTRecipe

_PLACEHOLDER = Path("<set at run time>")


class TokenizerParams(BaseModel):
    """``pretrain.tokenizer``: ``model.tokenizer.train_tokenizer`` settings."""

    model_config = ConfigDict(extra="forbid")

    vocab_size: int = Field(default=2048, gt=0)  # upper bound; the demo data fills ~600
    min_frequency: int = Field(default=2, gt=0)  # a word seen fewer times is spelled out


class CommonParams(BaseModel):
    """``pretrain.common``: shared by every stage of ``pretrain``, ``base_encoder``, ``adapt``."""

    model_config = ConfigDict(extra="forbid")

    output_root: Path = Path("data/06_models")  # each stage trains in <output_root>/<stage>/
    training: dict[str, Any] = Field(default_factory=dict)  # TrainConfig fields
    recipe: dict[str, Any] = Field(default_factory=dict)  # GranViTArgs fields


class StageParams(BaseModel):
    """One stage: overrides of ``common.training`` and ``common.recipe``."""

    model_config = ConfigDict(extra="forbid")

    training: dict[str, Any] = Field(default_factory=dict)
    recipe: dict[str, Any] = Field(default_factory=dict)


def project_relative(path: Path | str) -> Path:
    """``path`` relative to the working directory when inside it, else absolute.

    Run configs and ``*_result.json`` are DVC outs: pulled into another clone or worktree,
    absolute paths would name the machine that wrote them. ``kedro run`` (and so ``dvc
    repro``) runs in the project root, and the training processes inherit that working
    directory (``training.launcher``), so relative paths resolve wherever the project is.
    """
    resolved, cwd = Path(path).resolve(), Path.cwd().resolve()
    return resolved.relative_to(cwd) if resolved.is_relative_to(cwd) else resolved


def train_config(
    stage: str,
    common: CommonParams,
    params: StageParams,
    shards_dir: Path,
    tokenizer_dir: Path,
    init_from: Path | None,
    run_name: str | None = None,
) -> TrainConfig:
    """The validated TrainConfig of ``stage``, training in ``<output_root>/<run_name or
    stage>/``; its paths are relative to the project root (``project_relative``)."""
    recipe_args = {
        **common.recipe,
        **params.recipe,
        "stage": stage,
        "shards_dir": str(project_relative(shards_dir)),
        "tokenizer_dir": str(project_relative(tokenizer_dir)),
        "init_from": None if init_from is None else str(project_relative(init_from)),
    }
    values = {**common.training, **params.training}
    return TrainConfig.model_validate(
        {
            **values,
            "recipe": GranViTRecipe,
            "output_dir": project_relative(common.output_root / (run_name or stage)),
            "recipe_args": GranViTArgs.model_validate(recipe_args),  # errors name the field
        }
    )


def check_stage(stage: str, common: CommonParams, params: StageParams) -> None:
    """Validate a stage's parameters with placeholder paths (no file is touched)."""
    init = _PLACEHOLDER if stage_spec(stage).continues else None
    train_config(stage, common, params, _PLACEHOLDER, _PLACEHOLDER, init)


def global_only_params(stage1: StageParams, global_only: StageParams) -> StageParams:
    """The ablation trains as long as stage 1, with its schedule: stage 1's ``training``
    first, then the ablation's own overrides (its ``recipe`` is its own)."""
    training = {**stage1.training, **global_only.training}
    return StageParams(training=training, recipe=global_only.recipe)


class PretrainParams(BaseModel):
    """``params:pretrain`` (``conf/base/parameters_pretrain.yml``)."""

    model_config = ConfigDict(extra="forbid")

    common: CommonParams
    tokenizer: TokenizerParams = Field(default_factory=TokenizerParams)
    lm_warmup: StageParams
    stage1: StageParams
    global_only: StageParams  # ablation base encoder; trains on top of stage1's ``training``

    @model_validator(mode="after")
    def _check_stages(self) -> PretrainParams:
        check_stage("lm_warmup", self.common, self.lm_warmup)
        check_stage("stage1", self.common, self.stage1)
        check_stage("global_only", self.common, global_only_params(self.stage1, self.global_only))
        return self


class AdaptParams(BaseModel):
    """``params:adapt`` (``conf/base/parameters_adapt.yml``)."""

    model_config = ConfigDict(extra="forbid")

    stage2: StageParams

    def checked(self, common: CommonParams) -> AdaptParams:
        check_stage("stage2", common, self.stage2)
        return self
