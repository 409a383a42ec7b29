"""Pretrain: fit the tokenizer, warm up the LLM on text, then GranViT stage 1 (+ the ablation's
``global_only`` base encoder in the separate ``base_encoder`` pipeline)."""

from granvit_pipeline.pipelines.pretrain.pipeline import (
    create_base_encoder_pipeline,
    create_pipeline,
)

__all__ = ["create_base_encoder_pipeline", "create_pipeline"]
