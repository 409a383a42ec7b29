"""``pretrain``: tokenizer -> lm_warmup -> stage1; ``base_encoder``: the ablation's global_only."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from granvit_pipeline.pipelines.pretrain import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.train_tokenizer,
                ["shards", "params:pretrain"],
                "tokenizer",
                name="train_tokenizer",
            ),
            Node(
                nodes.train_lm_warmup,
                ["shards", "tokenizer", "params:pretrain.common", "params:pretrain.lm_warmup"],
                "lm_warmup_result",
                name="train_lm_warmup",
            ),
            Node(
                nodes.train_stage1,
                [
                    "shards",
                    "tokenizer",
                    "lm_warmup_result",
                    "params:pretrain.common",
                    "params:pretrain.stage1",
                ],
                "stage1_result",
                name="train_stage1",
            ),
        ]
    )


def create_base_encoder_pipeline(**kwargs) -> Pipeline:
    """The ablation's base encoder: global captions only, as many steps as stage 1.

    A separate pipeline because it costs as much as stage 1; it needs ``pretrain``'s
    tokenizer and ``lm_warmup_result`` (run ``pretrain`` first, or both together).
    """
    return Pipeline(
        [
            Node(
                nodes.train_global_only,
                [
                    "shards",
                    "tokenizer",
                    "lm_warmup_result",
                    "params:pretrain.common",
                    "params:pretrain.stage1",
                    "params:pretrain.global_only",
                ],
                "global_only_result",
                name="train_global_only",
            )
        ]
    )
