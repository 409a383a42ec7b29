"""The tasks a training row can be (GranViT, DESIGN.md section 2); prompts in ``prompts``."""

from __future__ import annotations

from typing import Literal

Task = Literal["global", "bbox2caption", "caption2bbox"]
TASKS: tuple[Task, ...] = ("global", "bbox2caption", "caption2bbox")
REGION_TASKS: tuple[Task, ...] = ("caption2bbox", "bbox2caption")  # tasks about one region
