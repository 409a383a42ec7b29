"""``RunContext``: what the step loop needs of a run, built once by ``engine.setup``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from granvit_pipeline.training.config import TrainConfig
from granvit_pipeline.training.recipes import Recipe, ResumableData
from granvit_pipeline.training.run_dir import RunDir


@dataclass
class RunContext:
    """Everything the loop needs, built once by ``engine.setup``."""

    cfg: TrainConfig
    rank: int
    world_size: int
    device: str
    run_config: dict[str, Any]
    recipe: Recipe
    engine: Any  # deepspeed.DeepSpeedEngine
    data: ResumableData
    meta: dict[str, Any]  # checkpoint compatibility fields
    start_step: int
    resumed_from: Path | None
    started_at: float

    @property
    def run_dir(self) -> RunDir:
        return RunDir(self.cfg.output_dir)
