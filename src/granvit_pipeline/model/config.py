"""GranViT configuration: one pydantic tree, named presets on one builder (torchtune style).

``get_preset(name, **overrides)`` is the one entry point; sizes live only in :data:`_PRESETS`.
Nested overrides merge, e.g. ``get_preset("demo", llm={"vocab_size": len(tokenizer)})``.
Validated once at the edge (``extra="forbid"``: a typo in YAML is an error, not a silent no-op).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class VisionConfig(BaseModel):
    """SigLIP-style ViT encoder (built as ``transformers.SiglipVisionModel``)."""

    model_config = ConfigDict(extra="forbid")

    hidden_size: int = Field(gt=0)  # width of every patch token (C_vision)
    num_layers: int = Field(gt=0)  # transformer blocks
    num_heads: int = Field(gt=0)  # attention heads; must divide hidden_size
    intermediate_size: int = Field(gt=0)  # MLP width inside each block
    image_size: int = Field(gt=0)  # square encoder input side S, pixels (aspect-preserving pad)
    patch_size: int = Field(gt=0)  # patch side; S / patch_size patches per side
    use_head: bool = False  # SigLIP attention-pooling head: unused by GranViT, so off by default
    layer_norm_eps: float = 1e-6  # LayerNorm epsilon (SigLIP default)

    @model_validator(mode="after")
    def _check_shapes(self) -> VisionConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"vision hidden_size {self.hidden_size} % heads {self.num_heads} != 0")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} not a multiple of {self.patch_size}")
        return self

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid ``(h, w)`` of the encoder output."""
        side = self.image_size // self.patch_size
        return side, side


class LLMConfig(BaseModel):
    """Qwen2-style causal LLM (built as ``transformers.Qwen2ForCausalLM``)."""

    model_config = ConfigDict(extra="forbid")

    vocab_size: int = Field(gt=0)  # must cover the tokenizer (see ``fit_vocab``)
    hidden_size: int = Field(gt=0)  # model width D (projector output)
    num_layers: int = Field(gt=0)  # decoder blocks
    num_heads: int = Field(gt=0)  # query heads; must divide hidden_size
    num_kv_heads: int = Field(gt=0)  # key/value heads (GQA); must divide num_heads
    intermediate_size: int = Field(gt=0)  # SwiGLU MLP width
    max_position_embeddings: int = Field(default=4096, gt=0)  # longest image+text sequence
    rope_theta: float = Field(default=10000.0, gt=0)  # RoPE base frequency
    tie_word_embeddings: bool = True  # lm_head shares the input embedding matrix
    rms_norm_eps: float = 1e-6  # RMSNorm epsilon

    @model_validator(mode="after")
    def _check_heads(self) -> LLMConfig:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"llm heads do not divide: hidden {self.hidden_size}, heads {self.num_heads}, "
                f"kv heads {self.num_kv_heads}"
            )
        return self


class GranViTConfig(BaseModel):
    """The whole model: encoder -> 2-layer MLP projector -> causal LLM."""

    model_config = ConfigDict(extra="forbid")

    name: str = "custom"  # preset name, for logs and run names
    vision: VisionConfig  # encoder sizes (or the checked sizes of ``vision_weights_dir``)
    llm: LLMConfig  # LLM sizes (or the checked sizes of ``llm_weights_dir``)
    # Local HF directories (config.json + safetensors); never hub names. None = random init.
    vision_weights_dir: Path | None = None
    llm_weights_dir: Path | None = None
    tokenizer_dir: Path | None = None  # a saved PreTrainedTokenizerFast (ours or the LLM's)
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"  # HF attention kernel
    gradient_checkpointing: bool = False  # recompute activations in encoder + LLM (big models)

    @property
    def num_image_tokens(self) -> int:
        """Image tokens prepended to the text: every patch token of the encoder."""
        h, w = self.vision.grid
        return h * w


_PRESETS: dict[str, dict[str, Any]] = {
    # Unit tests: forward+backward in milliseconds.
    "tiny": {
        "vision": dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8),
        "llm": dict(vocab_size=512, hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                    intermediate_size=64, max_position_embeddings=512),
    },
    # Laptop demo (~3M parameters with a ~2k-word tokenizer): learns the demo data on 2 CPU cores.
    # Set llm.vocab_size from the trained tokenizer (``fit_vocab``).
    "demo": {
        "vision": dict(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=512,
                       image_size=64, patch_size=8),
        "llm": dict(vocab_size=2048, hidden_size=192, num_layers=4, num_heads=6, num_kv_heads=2,
                    intermediate_size=512, max_position_embeddings=1024),
    },
    # Paper: SigLIP2-so400m-patch16-512-sized encoder + Qwen2.5-1.5B-sized LLM.
    "paper": {
        "vision": dict(hidden_size=1152, num_layers=27, num_heads=16, intermediate_size=4304,
                       image_size=512, patch_size=16),
        "llm": dict(vocab_size=151936, hidden_size=1536, num_layers=28, num_heads=12,
                    num_kv_heads=2, intermediate_size=8960, max_position_embeddings=32768,
                    rope_theta=1_000_000.0, tie_word_embeddings=True),
        "gradient_checkpointing": True,
    },
}  # fmt: skip

PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, BaseModel):
            value = value.model_dump()
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def get_preset(name: str, **overrides: Any) -> GranViTConfig:
    """Build the named preset; ``overrides`` merge into it (nested dicts merge key by key)."""
    if name not in _PRESETS:
        raise ValueError(f"unknown GranViT preset {name!r}; choose one of {PRESET_NAMES}")
    return GranViTConfig.model_validate(_merge({"name": name, **_PRESETS[name]}, overrides))


def fit_vocab(config: GranViTConfig, tokenizer_size: int) -> GranViTConfig:
    """Return ``config`` with the LLM vocabulary sized to a tokenizer of ``tokenizer_size``.

    A randomly initialised LLM gets exactly ``tokenizer_size`` rows; a pretrained one
    (``llm_weights_dir``) keeps its vocabulary, which must already cover the tokenizer.
    """
    if config.llm_weights_dir is None:
        return config.model_copy(
            update={"llm": config.llm.model_copy(update={"vocab_size": tokenizer_size})}
        )
    if tokenizer_size > config.llm.vocab_size:
        raise ValueError(
            f"tokenizer has {tokenizer_size} tokens but the LLM in {config.llm_weights_dir} "
            f"has only {config.llm.vocab_size} embedding rows"
        )
    return config
