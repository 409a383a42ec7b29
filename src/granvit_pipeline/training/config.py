"""Training configuration: one validated `TrainConfig`, and the DeepSpeed JSON resolved from it.

The DeepSpeed JSON templates in `conf/base/deepspeed/` write `"auto"` for every value the trainer
knows (batch sizes, optimizer hyperparameters, clipping, precision, ZeRO stage), so each is stated
once, here. `resolve_deepspeed_config` fills them; a template that states a concrete value that
disagrees with the `TrainConfig` is an error, never silently overridden.

The learning-rate schedule (linear warmup, then cosine to `min_lr_ratio * lr`) is owned by the
trainer (`training.schedule`), so a template must not carry a `scheduler` block.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ImportString,
    SerializeAsAny,
    TypeAdapter,
    model_validator,
)

AUTO = "auto"
ADAM_FAMILY = {"adam", "adamw"}
_RECIPE_CLASS = TypeAdapter(ImportString)


class TrainConfig(BaseModel):
    """Everything a training run needs; validated once, at the edge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The recipe class (``training.recipes.Recipe``). In run_config.json its import path: the
    # training processes read the config from JSON, so the class crosses as a string.
    recipe: ImportString
    steps: int = Field(gt=0)  # optimizer steps in total
    micro_batch_size: int = Field(gt=0)  # samples per process per forward/backward
    grad_accum_steps: int = Field(default=1, gt=0)  # micro-batches per optimizer step
    lr: float = Field(gt=0)  # peak learning rate, reached at the end of warmup
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)  # cosine floor, as a fraction of lr
    warmup_steps: int = Field(default=0, ge=0)  # linear warmup from lr/warmup to lr
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0)  # Adam epsilon
    grad_clip: float = Field(default=1.0, ge=0)  # max global grad norm; 0 disables clipping
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    zero_stage: Literal[0, 1, 2, 3] = 2
    deepspeed_config: Path  # DeepSpeed JSON template with "auto" values
    output_dir: Path  # the run's directory (``training.run_dir``)
    checkpoint_every: int = Field(default=0, ge=0)  # optimizer steps; 0: no periodic checkpoints
    keep_checkpoints: int = Field(default=2, ge=1)  # newest K complete checkpoints are kept
    log_every: int = Field(default=10, gt=0)  # steps between log lines (metrics.jsonl: all)
    num_processes: int = Field(default=1, gt=0)  # total processes (all nodes) for `launch`
    hostfile: Path | None = None  # DeepSpeed hostfile, for several nodes
    resume_from: str = "auto"  # "auto": newest complete checkpoint if any; "none"; or a path
    stop_after_step: int | None = Field(default=None, gt=0)  # debug: exit as if killed
    recipe_args: SerializeAsAny[BaseModel]  # an instance of ``recipe.Args``

    @model_validator(mode="before")
    @classmethod
    def _validate_recipe_args(cls, data: Any) -> Any:
        """``recipe_args`` (a dict, or the recipe's ``Args`` already) -> ``recipe.Args``."""
        if not isinstance(data, dict) or "recipe" not in data:
            return data
        recipe = _RECIPE_CLASS.validate_python(data["recipe"])
        args_model = getattr(recipe, "Args", None)
        if not (isinstance(args_model, type) and issubclass(args_model, BaseModel)):
            raise ValueError(f"recipe {recipe!r} has no Args (the pydantic model of its args)")
        args = data.get("recipe_args", {})
        if not isinstance(args, args_model):
            args = args_model.model_validate(args)
        return {**data, "recipe": recipe, "recipe_args": args}

    @model_validator(mode="after")
    def _check_consistency(self) -> TrainConfig:
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps {self.warmup_steps} > steps {self.steps}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        return self

    def resolved_precision(self, device: str) -> Literal["fp32", "bf16"]:
        """`auto` means bf16 on CUDA and fp32 elsewhere."""
        if self.precision == "auto":
            return "bf16" if device == "cuda" else "fp32"
        return self.precision


class DeepSpeedConfigError(ValueError):
    """A DeepSpeed template contradicts the TrainConfig or has a value nobody can fill."""


def load_template(path: Path) -> dict[str, Any]:
    """Read a DeepSpeed JSON template."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise DeepSpeedConfigError(f"DeepSpeed config template not found: {path}") from err
    except json.JSONDecodeError as err:
        raise DeepSpeedConfigError(f"DeepSpeed config {path} is not valid JSON: {err}") from err


def trainer_known_values(
    cfg: TrainConfig, world_size: int, device: str, optimizer_type: str
) -> dict[str, Any]:
    """Dotted DeepSpeed keys -> the value the TrainConfig gives them."""
    values: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": cfg.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum_steps,
        "train_batch_size": cfg.micro_batch_size * cfg.grad_accum_steps * world_size,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization.stage": cfg.zero_stage,
        "bf16.enabled": cfg.resolved_precision(device) == "bf16",
        "fp16.enabled": False,
        "optimizer.params.lr": cfg.lr,
        "optimizer.params.weight_decay": cfg.weight_decay,
    }
    if optimizer_type.lower() in ADAM_FAMILY:
        values["optimizer.params.betas"] = list(cfg.betas)
        values["optimizer.params.eps"] = cfg.eps
        if device != "cuda":  # DeepSpeed's FusedAdam needs CUDA; torch's AdamW runs anywhere
            values["optimizer.params.torch_adam"] = True
    return values


def _same(stated: Any, wanted: Any) -> bool:
    if isinstance(stated, bool) or isinstance(wanted, bool):
        return stated is wanted
    if isinstance(stated, int | float) and isinstance(wanted, int | float):
        return math.isclose(stated, wanted, rel_tol=1e-9, abs_tol=0.0)
    if isinstance(stated, list | tuple) and isinstance(wanted, list | tuple):
        return len(stated) == len(wanted) and all(map(_same, stated, wanted))
    return stated == wanted


def _fill(config: dict[str, Any], dotted: str, wanted: Any, source: str) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    stated = node.get(leaf, AUTO)
    if stated == AUTO:
        node[leaf] = wanted
    elif not _same(stated, wanted):
        raise DeepSpeedConfigError(
            f"{source}: '{dotted}' is {stated!r} in the DeepSpeed config but the training "
            f'parameters give {wanted!r}; state it once (write "auto" in the JSON)'
        )


def _leftover_autos(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        found: list[str] = []
        for key, value in node.items():
            found += _leftover_autos(value, f"{prefix}.{key}" if prefix else key)
        return found
    return [prefix] if node == AUTO else []


def resolve_deepspeed_config(
    template: dict[str, Any],
    cfg: TrainConfig,
    world_size: int,
    device: str,
    source: str | Path | None = None,
) -> dict[str, Any]:
    """Fill every "auto" in a DeepSpeed template from `cfg`; raise on any contradiction.

    `source` names the template in error messages (default: `cfg.deepspeed_config`).
    """
    source = str(source or cfg.deepspeed_config)
    if "scheduler" in template:
        raise DeepSpeedConfigError(
            f"{source}: remove the 'scheduler' block; the trainer owns the LR schedule "
            "(warmup_steps, min_lr_ratio in the training parameters)"
        )
    resolved = json.loads(json.dumps(template))  # deep copy, JSON types only
    optimizer = resolved.setdefault("optimizer", {"type": "AdamW", "params": {}})
    optimizer.setdefault("params", {})
    for dotted, wanted in trainer_known_values(
        cfg, world_size, device, str(optimizer.get("type", ""))
    ).items():
        _fill(resolved, dotted, wanted, source)
    leftover = _leftover_autos(resolved)
    if leftover:
        raise DeepSpeedConfigError(
            f"{source}: the trainer does not know how to fill 'auto' for {', '.join(leftover)}"
        )
    return resolved


def run_config_dict(cfg: TrainConfig, deepspeed: dict, world_size: int, device: str) -> dict:
    """The fully resolved run configuration, as written to `<output_dir>/run_config.json`."""
    return {
        "train": cfg.model_dump(mode="json"),
        "deepspeed": deepspeed,
        "world_size": world_size,
        "device": device,
        "precision": cfg.resolved_precision(device),
    }


def write_run_config(path: Path, run_config: dict) -> None:
    """Write the run config atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(run_config, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def read_run_config(path: Path) -> TrainConfig:
    """Read `run_config.json` back into a validated TrainConfig."""
    data = json.loads(Path(path).read_text())
    return TrainConfig.model_validate(data["train"])
