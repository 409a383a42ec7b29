"""``tune``: Optuna search over stage 1 (+ stage 2); needs ``pretrain``'s tokenizer and
``lm_warmup_result`` (run ``pretrain`` first)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from granvit_pipeline.pipelines.tune import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.tune_stages,
                [
                    "shards",
                    "tokenizer",
                    "lm_warmup_result",
                    "params:pretrain.common",
                    "params:pretrain.stage1",
                    "params:adapt.stage2",
                    "params:tune",
                ],
                ["tune_summary", "tuned_parameters"],
                name="tune_stages",  # not train_*: the trials are the nested runs
            )
        ]
    )
