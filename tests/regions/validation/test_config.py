"""``params:validate``: the demo data's thresholds apply only when every source is the demo."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from granvit_pipeline.regions.readers import IngestParams
from granvit_pipeline.regions.validation.config import ValidateParams, ValidationConfig

SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}
PARAMS = ValidateParams(checks={"max_text_chars": 50}, demo_overrides={"min_box_area": 64})


def test_demo_overrides_apply_to_demo_data_only() -> None:
    demo = IngestParams(split_fractions=SPLITS, demo_dir=Path("demo"))
    coco = IngestParams(
        format="coco", annotations=Path("a.json"), images=Path("img"),
        split_fractions=SPLITS, demo_dir=Path("demo"),
    )  # fmt: skip
    assert PARAMS.config_for(demo) == ValidationConfig(max_text_chars=50, min_box_area=64)
    assert PARAMS.config_for(coco) == ValidationConfig(max_text_chars=50)


def test_unknown_keys_are_errors() -> None:
    with pytest.raises(pydantic.ValidationError, match="max_text_char"):
        ValidateParams(checks={"max_text_char": 50})
    with pytest.raises(pydantic.ValidationError, match="demo_override"):
        ValidateParams(demo_override={})
