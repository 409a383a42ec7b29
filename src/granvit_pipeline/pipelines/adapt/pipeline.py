"""``adapt``: stage 2 from stage 1's result."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from granvit_pipeline.pipelines.adapt import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.train_stage2,
                [
                    "shards",
                    "tokenizer",
                    "stage1_result",
                    "params:pretrain.common",
                    "params:adapt",
                ],
                "stage2_result",
                name="train_stage2",
            )
        ]
    )
