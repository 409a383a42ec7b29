"""``params:tune``: the search space, the study (storage, pruner, sampler) and the trial budget.

Validated once at the edge (pydantic, ``extra="forbid"``: a typo is an error). Each searched
parameter names the stage parameter it overrides by a dotted ``target`` inside that stage's
``StageParams`` (``stage1.training.lr``, ``stage1.recipe.distill.ema_alpha``, ...).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TunedStage = Literal["stage1", "stage2"]  # the stages a trial trains (model.stages has them all)
TUNED_STAGES: tuple[TunedStage, ...] = ("stage1", "stage2")


class ParamSpec(BaseModel):
    """One searched hyperparameter."""

    model_config = ConfigDict(extra="forbid")

    target: str  # "<stage>.<training|recipe>.<key>[.<key>...]", e.g. stage1.training.lr
    type: Literal["float", "int", "categorical"] = "float"
    low: float | None = None  # float/int: inclusive range
    high: float | None = None
    log: bool = False  # sample on a log scale (float/int)
    step: float | None = None  # optional discretisation (float/int, not with log)
    choices: list[Any] | None = None  # categorical only

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        stage, _, rest = self.target.partition(".")
        section = rest.partition(".")[0]
        if stage not in TUNED_STAGES or section not in ("training", "recipe") or "." not in rest:
            raise ValueError(
                f"target {self.target!r}: write <stage>.<training|recipe>.<key> with stage in "
                f"{TUNED_STAGES}"
            )
        if self.type == "categorical":
            if not self.choices:
                raise ValueError(f"{self.target}: categorical needs `choices`")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"{self.target}: {self.type} needs low <= high")
        elif self.log and self.low <= 0:
            raise ValueError(f"{self.target}: log scale needs low > 0")
        return self

    @property
    def stage(self) -> str:
        return self.target.split(".", 1)[0]


class PrunerConfig(BaseModel):
    """Optuna pruner; ``none`` keeps every trial to the end (the benchmark's baseline)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["median", "hyperband", "none"] = "median"
    n_startup_trials: int = Field(default=3, ge=0)  # median: trials never pruned
    n_warmup_steps: int = Field(default=0, ge=0)  # median: steps before pruning starts
    min_resource: int | None = Field(default=None, gt=0)  # hyperband, in steps (None: auto)
    reduction_factor: int = Field(default=3, ge=2)  # hyperband


class StudyConfig(BaseModel):
    """Where the study lives and how trials are drawn."""

    model_config = ConfigDict(extra="forbid")

    name: str = "granvit"
    # sqlite:///path (one machine), postgresql://user@host/db (workers on several machines),
    # or journal:///path/to/file.log (JournalStorage on a shared filesystem, no database).
    storage: str = "sqlite:///data/07_model_output/optuna.db"
    direction: Literal["minimize", "maximize"] = "minimize"
    sampler_seed: int | None = None  # TPE seed (None: each worker draws its own)
    # RDB storages: a worker writes a heartbeat every `heartbeat_interval_s`; a RUNNING trial
    # without one for `grace_period_s` (its worker was killed) is failed and re-queued
    # (`max_retry` times) when any worker asks for its next trial.
    heartbeat_interval_s: int = Field(default=30, gt=0)
    grace_period_s: int = Field(default=120, gt=0)
    max_retry: int = Field(default=1, ge=0)


# Trial scores on the validation split and the direction each one is optimised in.
SCORE_DIRECTIONS = {
    "val_loss": "minimize",  # answer-token cross-entropy of the last stage's tasks
    "caption2bbox/acc@0.5": "maximize",  # needs stage2 (the model that outputs boxes)
    "caption2bbox/mean_iou": "maximize",
}


class ScoreConfig(BaseModel):
    """How a finished trial is scored: its last stage's export on held-out data."""

    model_config = ConfigDict(extra="forbid")

    metric: Literal["val_loss", "caption2bbox/acc@0.5", "caption2bbox/mean_iou"] = "val_loss"
    split: Literal["train", "val", "test"] = "val"
    max_images: int | None = Field(default=128, gt=0)  # first N images of the split (shard
    #                                                     order: the same images every trial)
    batch_size: int = Field(default=32, gt=0)
    device: str = "auto"  # where the tuning process scores: auto | cpu | cuda


class ObjectiveConfig(BaseModel):
    """What one trial trains, what it reports while training, and how it is scored."""

    model_config = ConfigDict(extra="forbid")

    stages: list[TunedStage] = Field(default_factory=lambda: ["stage1"])
    max_steps: dict[str, int] = Field(default_factory=lambda: {"stage1": 60, "stage2": 60})
    split: Literal["train", "val", "test"] = "train"  # the data subset trials train on
    # Intermediate values for the pruner: this metrics.jsonl key (lower is better), averaged
    # over `report_every` steps. loss_caption, not loss: loss adds lambda_distill * loss_distill,
    # so trials with different lambdas would not be comparable.
    report_metric: str = "loss_caption"
    report_every: int = Field(default=5, gt=0)  # steps between intermediate values
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    in_process: bool = False  # train in this process (tests; one trial at a time, no deepspeed
    #                           launcher, num_processes must be 1)
    keep_outputs: bool = False  # keep each trial's output dir (checkpoints, export)

    @model_validator(mode="after")
    def _check(self) -> ObjectiveConfig:
        if self.stages[0] != "stage1" or len(set(self.stages)) != len(self.stages):
            raise ValueError(f"stages must be [stage1] or [stage1, stage2], got {self.stages}")
        missing = [s for s in self.stages if s not in self.max_steps]
        if missing:
            raise ValueError(f"max_steps lacks {missing}")
        if self.score.metric.startswith("caption2bbox/") and "stage2" not in self.stages:
            raise ValueError(
                f"score.metric {self.score.metric} scores box outputs, which only stage2 "
                "trains: add stage2 to stages or score val_loss"
            )
        return self


class TuneConfig(BaseModel):
    """``params:tune`` (``conf/base/parameters_tune.yml``)."""

    model_config = ConfigDict(extra="forbid")

    n_trials: int = Field(gt=0)  # total across every worker on the study
    timeout_s: float | None = Field(default=None, gt=0)  # per worker
    output_root: str = "data/06_models/tune"  # trial runs train in <root>/<study>/trial_NNNN/
    study: StudyConfig = Field(default_factory=StudyConfig)
    pruner: PrunerConfig = Field(default_factory=PrunerConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    space: dict[str, ParamSpec]

    @model_validator(mode="after")
    def _check_space(self) -> TuneConfig:
        metric = self.objective.score.metric
        if self.study.direction != SCORE_DIRECTIONS[metric]:
            raise ValueError(
                f"study.direction is {self.study.direction} but objective.score.metric {metric} "
                f"is to {SCORE_DIRECTIONS[metric]}"
            )
        unused = sorted(n for n, p in self.space.items() if p.stage not in self.objective.stages)
        if unused:
            raise ValueError(f"space {unused} target stages the objective does not train")
        return self
