from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from granvit_pipeline.model.config import PRESET_NAMES, get_preset
from granvit_pipeline.model.modeling import GranViT


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_validates(name: str) -> None:
    cfg = get_preset(name)
    assert cfg.name == name
    assert cfg.num_image_tokens == (cfg.vision.image_size // cfg.vision.patch_size) ** 2


def test_paper_sizes() -> None:
    cfg = get_preset("paper")
    assert (cfg.vision.hidden_size, cfg.vision.num_layers, cfg.vision.num_heads) == (1152, 27, 16)
    assert (cfg.vision.image_size, cfg.vision.patch_size) == (512, 16)
    assert (cfg.llm.hidden_size, cfg.llm.num_layers, cfg.llm.num_kv_heads) == (1536, 28, 2)
    assert cfg.llm.vocab_size == 151936 and cfg.llm.rope_theta == 1e6


def test_nested_overrides_merge() -> None:
    cfg = get_preset("demo", llm={"vocab_size": 999}, vision={"num_layers": 2})
    assert cfg.llm.vocab_size == 999 and cfg.llm.hidden_size == get_preset("demo").llm.hidden_size
    assert cfg.vision.num_layers == 2


@pytest.mark.parametrize(
    "overrides",
    [
        {"vision": {"num_layrs": 2}},
        {"unknown": 1},
        {"vision": {"patch_size": 7}},
        {"llm": {"num_heads": 5}},
    ],
)
def test_bad_config_raises(overrides: dict) -> None:
    with pytest.raises(ValidationError):
        get_preset("tiny", **overrides)


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="unknown GranViT preset"):
        get_preset("huge")


@pytest.mark.parametrize("field", ["vision_weights_dir", "llm_weights_dir"])
def test_weights_dir_without_config_names_the_dir(tmp_path: Path, field: str) -> None:
    empty = tmp_path / "weights"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=str(empty)):
        GranViT(get_preset("tiny", **{field: empty}))
