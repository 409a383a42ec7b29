"""Export and reload trained models in Hugging Face format (safetensors only, never pickle).

``export_encoder(model, dir)`` writes the encoder with ``save_pretrained`` at the top of
``dir`` (so ``transformers.AutoModel.from_pretrained(dir)`` loads a ``SiglipVisionModel``),
plus ``projector.safetensors``, ``granvit.json`` (the full config) and ``tokenizer/``.

``load_encoder(dir)`` reads it back as a GranViT for encoder-only use (its LLM is random).

``export_full(model, dir)`` writes ``encoder/`` and ``llm/`` (``save_pretrained``),
``projector.safetensors``, ``granvit.json`` and ``tokenizer/``; ``load_full(dir)`` rebuilds the
model through the ordinary local-weights path of :class:`GranViTConfig`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from granvit_pipeline.model.config import GranViTConfig, fit_vocab
from granvit_pipeline.model.modeling import GranViT
from granvit_pipeline.model.tokenizer import load_tokenizer

logger = logging.getLogger(__name__)

CONFIG_FILE = "granvit.json"
PROJECTOR_FILE = "projector.safetensors"


def _portable_config(config: GranViTConfig) -> str:
    """Config JSON without machine-specific weight paths."""
    update = {"vision_weights_dir": None, "llm_weights_dir": None, "tokenizer_dir": None}
    return config.model_copy(update=update).model_dump_json(indent=2)


def _save_common(model: GranViT, out: Path, tokenizer: Any | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(_portable_config(model.config))
    state = {k: v.detach().cpu().contiguous() for k, v in model.projector.state_dict().items()}
    save_file(state, str(out / PROJECTOR_FILE))
    if tokenizer is not None:
        tokenizer.save_pretrained(out / "tokenizer")


def export_encoder(model: GranViT, out_dir: str | Path, tokenizer: Any | None = None) -> Path:
    """Encoder (HF format, safetensors) + projector + config (+ tokenizer) into ``out_dir``."""
    out = Path(out_dir)
    _save_common(model, out, tokenizer)
    model.vision.save_pretrained(out)
    logger.info("exported encoder to %s", out)
    return out


def export_full(model: GranViT, out_dir: str | Path, tokenizer: Any | None = None) -> Path:
    """Whole model: ``encoder/``, ``llm/``, projector, config (+ tokenizer) into ``out_dir``."""
    out = Path(out_dir)
    _save_common(model, out, tokenizer)
    model.vision.save_pretrained(out / "encoder")
    model.llm.save_pretrained(out / "llm")
    logger.info("exported full model to %s", out)
    return out


def load_full(model_dir: str | Path) -> tuple[GranViT, Any | None]:
    """Inverse of :func:`export_full` -> ``(model, tokenizer or None)``."""
    root = Path(model_dir)
    if not (root / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{root} has no {CONFIG_FILE}: not written by export_full")
    config = GranViTConfig.model_validate_json((root / CONFIG_FILE).read_text())
    config = config.model_copy(
        update={"vision_weights_dir": root / "encoder", "llm_weights_dir": root / "llm"}
    )
    model = GranViT(config)
    model.projector.load_state_dict(load_file(str(root / PROJECTOR_FILE)))
    tokenizer = load_tokenizer(root / "tokenizer") if (root / "tokenizer").is_dir() else None
    return model, tokenizer


def load_encoder(export_dir: str | Path) -> GranViT:
    """Inverse of :func:`export_encoder`, as a :class:`GranViT` for encoder-only use (e.g.
    the region probe): encoder + projector from ``export_dir``; the LLM is freshly initialised
    from the config and meaningless (an encoder export has none)."""
    root = Path(export_dir)
    if not (root / CONFIG_FILE).is_file() or not (root / "config.json").is_file():
        raise FileNotFoundError(
            f"{root} is not an encoder export (needs {CONFIG_FILE} and config.json)"
        )
    config = GranViTConfig.model_validate_json((root / CONFIG_FILE).read_text())
    model = GranViT(config.model_copy(update={"vision_weights_dir": root}))
    model.projector.load_state_dict(load_file(str(root / PROJECTOR_FILE)))
    return model


def build_model(config: GranViTConfig, tokenizer: Any | None = None) -> tuple[GranViT, Any]:
    """Model + tokenizer from a config: the tokenizer given, else ``config.tokenizer_dir``.

    A randomly initialised LLM gets exactly the tokenizer's vocabulary (``fit_vocab``); a
    pretrained one (``llm_weights_dir``) must already cover it.
    """
    if tokenizer is None:
        if config.tokenizer_dir is None:
            raise ValueError("pass a tokenizer or set tokenizer_dir in the GranViT config")
        tokenizer = load_tokenizer(config.tokenizer_dir)
    return GranViT(fit_vocab(config, len(tokenizer))), tokenizer
