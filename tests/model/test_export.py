from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModel

from granvit_pipeline.model.config import GranViTConfig, get_preset
from granvit_pipeline.model.export import (
    build_model,
    export_encoder,
    export_full,
    load_encoder,
    load_full,
)
from granvit_pipeline.model.modeling import GranViT


def test_exported_encoder_loads_with_automodel(
    tiny_model: GranViT, tokenizer: Any, tmp_path: Path
) -> None:
    out = export_encoder(tiny_model, tmp_path / "enc", tokenizer)
    assert (out / "model.safetensors").is_file() and (out / "projector.safetensors").is_file()
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))
    loaded = AutoModel.from_pretrained(out, local_files_only=True).eval()
    pixels = torch.randn(2, 3, tiny_model.image_size, tiny_model.image_size)
    tiny_model.eval()
    with torch.no_grad():
        expected = tiny_model.encode_image(pixels)
        got = loaded(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_export_full_round_trip(tiny_model: GranViT, tokenizer: Any, tmp_path: Path) -> None:
    export_full(tiny_model, tmp_path / "full", tokenizer)
    model, tok = load_full(tmp_path / "full")
    assert tok is not None and tok.get_vocab() == tokenizer.get_vocab()
    g = torch.Generator().manual_seed(0)
    s = tiny_model.image_size
    pixels = torch.randn(2, 3, s, s, generator=g)
    ids = torch.randint(5, len(tokenizer), (2, 7), generator=g)
    mask = torch.ones_like(ids)
    tiny_model.eval()
    model.eval()
    with torch.no_grad():
        a = tiny_model(ids, mask, ids, pixel_values=pixels, return_logits=True)
        b = model(ids, mask, ids, pixel_values=pixels, return_logits=True)
    torch.testing.assert_close(b.logits, a.logits, rtol=0, atol=0)
    saved = GranViTConfig.model_validate_json((tmp_path / "full" / "granvit.json").read_text())
    assert saved.vision_weights_dir is None and saved.vision == tiny_model.config.vision


def test_bf16_export_loads_back_in_fp32(tiny_model: GranViT, tmp_path: Path) -> None:
    """A GPU run exports bf16 weights; loading must not mix them with the fp32 projector."""
    half = copy.deepcopy(tiny_model).to(torch.bfloat16)
    export_full(half, tmp_path / "bf16", None)
    model, _ = load_full(tmp_path / "bf16")
    expected = dict(half.named_parameters())
    for name, value in model.named_parameters():
        assert value.dtype == torch.float32, name
        assert torch.equal(value, expected[name].float()), name
    ids = torch.randint(5, 50, (2, 7))
    s = model.image_size
    out = model(ids, torch.ones_like(ids), ids, pixel_values=torch.randn(2, 3, s, s))
    assert torch.isfinite(out.loss)


def test_mismatched_weights_are_refused(tiny_model: GranViT, tmp_path: Path) -> None:
    export_full(tiny_model, tmp_path / "full")
    config = tiny_model.config.model_copy(
        update={
            "vision_weights_dir": tmp_path / "full" / "encoder",
            "vision": tiny_model.config.vision.model_copy(update={"hidden_size": 64}),
        }
    )
    with pytest.raises(ValueError, match="hidden_size"):
        GranViT(config)
    with pytest.raises(FileNotFoundError, match=r"granvit\.json"):
        load_full(tmp_path)


def test_build_model_from_tokenizer_dir(tokenizer: Any, tmp_path: Path) -> None:
    tokenizer.save_pretrained(tmp_path / "tok")
    config = get_preset("tiny", tokenizer_dir=tmp_path / "tok")
    model, tok = build_model(config)
    assert model.llm.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert tok.get_vocab() == tokenizer.get_vocab()
    with pytest.raises(ValueError, match="tokenizer_dir"):
        build_model(get_preset("tiny"))


def test_load_encoder_round_trips_the_encoder_and_projector(tmp_path) -> None:
    torch.manual_seed(0)
    model = GranViT(get_preset("tiny"))
    export_encoder(model, tmp_path / "enc")
    loaded = load_encoder(tmp_path / "enc")
    pixels = torch.randn(2, 3, model.image_size, model.image_size)
    model.eval(), loaded.eval()
    assert torch.equal(model.encode_image(pixels), loaded.encode_image(pixels))
    feats = model.encode_image(pixels)
    assert torch.equal(model.projector(feats), loaded.projector(feats))
    with pytest.raises(FileNotFoundError, match="not an encoder export"):
        load_encoder(tmp_path)
