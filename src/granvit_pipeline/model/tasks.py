"""The tasks a training row can be (GranViT, DESIGN.md section 2); prompts in ``prompts``."""

from __future__ import annotations

from typing import Literal, get_args

Task = Literal["global", "bbox2caption", "caption2bbox"]
RegionTask = Literal["caption2bbox", "bbox2caption"]  # tasks about one region
TASKS: tuple[Task, ...] = get_args(Task)  # in this order (the collator draws by it)
REGION_TASKS: tuple[RegionTask, ...] = get_args(RegionTask)
