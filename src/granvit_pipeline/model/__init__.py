"""GranViT model library (no Kedro): presets, model, tokenizer, box codec, RoI, distillation.

Entry points: :func:`config.get_preset`, :class:`modeling.GranViT`,
:func:`tokenizer.train_tokenizer`, :class:`data.Collator`, :func:`objectives.stage_loss`,
:class:`distill.EMATeacher`, :func:`export.export_encoder` / :func:`export.load_full`.
"""

from granvit_pipeline.model.box_codec import BoxParseError, format_box, parse_box, try_parse_box
from granvit_pipeline.model.config import (
    GranViTConfig,
    LLMConfig,
    VisionConfig,
    fit_vocab,
    get_preset,
)
from granvit_pipeline.model.data import Collator, Example, build_examples, preprocess_image
from granvit_pipeline.model.distill import DistillConfig, EMATeacher, crop_boxes, distill_loss
from granvit_pipeline.model.export import build_model, export_encoder, export_full, load_full
from granvit_pipeline.model.modeling import GranViT, GranViTOutput
from granvit_pipeline.model.objectives import StageObjective, stage_loss
from granvit_pipeline.model.prompts import PromptTemplates
from granvit_pipeline.model.roi import roi_features
from granvit_pipeline.model.stages import STAGES, StageSpec, stage_spec
from granvit_pipeline.model.tokenizer import load_tokenizer, normalize_text, train_tokenizer

__all__ = [
    "STAGES",
    "BoxParseError",
    "Collator",
    "DistillConfig",
    "EMATeacher",
    "Example",
    "GranViT",
    "GranViTConfig",
    "GranViTOutput",
    "LLMConfig",
    "PromptTemplates",
    "StageObjective",
    "StageSpec",
    "VisionConfig",
    "build_examples",
    "build_model",
    "crop_boxes",
    "distill_loss",
    "export_encoder",
    "export_full",
    "fit_vocab",
    "format_box",
    "get_preset",
    "load_full",
    "load_tokenizer",
    "normalize_text",
    "parse_box",
    "preprocess_image",
    "roi_features",
    "stage_loss",
    "stage_spec",
    "train_tokenizer",
    "try_parse_box",
]
