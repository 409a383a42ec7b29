"""Registry and promotion settings (``params:register``), validated once (``extra="forbid"``).

Metric names are the evaluation report's keys (``caption2bbox/acc@0.5``, ``bbox2caption/rouge_l``,
``probe/shape/accuracy``...), exactly as in ``data/08_reporting/evaluation_report.json``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Floor(BaseModel):
    """An absolute gate: ``min <= metric`` and/or ``metric <= max``."""

    model_config = ConfigDict(extra="forbid")

    metric: str  # evaluation report key
    min: float | None = None  # the metric must be at least this
    max: float | None = None  # the metric must be at most this (rates of failure)

    @model_validator(mode="after")
    def _one_bound(self) -> Floor:
        if self.min is None and self.max is None:
            raise ValueError(f"floor on {self.metric!r} needs `min` or `max`")
        return self


class NoRegression(BaseModel):
    """A relative gate: the challenger may be at most ``margin`` worse than the champion."""

    model_config = ConfigDict(extra="forbid")

    metric: str  # evaluation report key
    margin: float = Field(default=0.0, ge=0)  # absolute slack, in the metric's units
    higher_is_better: bool = True  # False for rates of failure (e.g. unparseable_rate)


class PromotionConfig(BaseModel):
    """When a new version replaces the champion (see ``registry.gates.decide``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True  # False: register and tag challengers, never move the champion
    floors: list[Floor] = Field(default_factory=list)
    no_regression: list[NoRegression] = Field(default_factory=list)
    # True: besides not regressing, at least one `no_regression` metric must beat the champion
    # by more than `min_improvement`; an identical model (a tie) is then not promoted.
    # False: a challenger within every margin is promoted, ties included. (Without any
    # `no_regression` metric there is nothing to compare: the floors decide.)
    require_improvement: bool = True
    min_improvement: float = Field(default=0.0, ge=0)
    # The champion was evaluated on another evaluation set (data version, split, number of
    # images or evaluate parameters differ), so its numbers cannot be compared: `reject` keeps
    # the champion; `floors_only` decides on the floors alone.
    on_eval_set_mismatch: Literal["reject", "floors_only"] = "reject"


class RegisterParams(BaseModel):
    """``params:register`` (``conf/base/parameters_register.yml``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True  # False: the register and promote nodes do nothing
    model_name: str = Field(default="granvit-encoder", min_length=1)  # registered model
    artifact_name: str = Field(default="encoder", min_length=1)  # the logged model's name
    champion_alias: str = Field(default="champion", pattern=r"^[\w\-]+$")
    challenger_alias: str = Field(default="challenger", pattern=r"^[\w\-]+$")
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)

    @model_validator(mode="after")
    def _distinct_aliases(self) -> RegisterParams:
        if self.champion_alias == self.challenger_alias:
            raise ValueError("champion_alias and challenger_alias must differ")
        return self
