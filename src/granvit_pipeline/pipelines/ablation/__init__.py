"""``ablation``: the paper's Table 3 ladder on our data (base encoder, + stage 1,
+ self-distillation, + stage 2) as one table."""

from granvit_pipeline.pipelines.ablation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
