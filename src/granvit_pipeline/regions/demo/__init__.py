"""Built-in demo data: synthetic shape scenes with referring expressions, plus rendered text.

- ``config``: :class:`DemoConfig` (``params:ingest.demo``).
- ``scenes``: :func:`generate_demo` and :func:`demo_scene` draw the images and their records.
- ``language``: the referring expressions and global captions of a scene's objects.
- ``statistics``: :func:`demo_statistics`, counts and chance baselines of the records.
"""

from granvit_pipeline.regions.demo.config import DemoConfig
from granvit_pipeline.regions.demo.language import RELATIONS, ShapeObject
from granvit_pipeline.regions.demo.scenes import (
    DemoImage,
    DemoScene,
    TextLine,
    demo_scene,
    generate_demo,
)
from granvit_pipeline.regions.demo.statistics import demo_statistics

__all__ = [
    "RELATIONS",
    "DemoConfig",
    "DemoImage",
    "DemoScene",
    "ShapeObject",
    "TextLine",
    "demo_scene",
    "demo_statistics",
    "generate_demo",
]
