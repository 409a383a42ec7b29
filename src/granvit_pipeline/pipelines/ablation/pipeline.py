"""``ablation``: stage 1 without distillation, every encoder probed alike, the table, and the
run report with the table. Needs the default run's outputs (stage1_result, stage2_result,
evaluation_report, report_examples) and the ``base_encoder`` pipeline's (the registry runs
both together as ``ablation``)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from granvit_pipeline.pipelines.ablation import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.train_stage1_no_distill,
                [
                    "shards",
                    "tokenizer",
                    "lm_warmup_result",
                    "params:pretrain.common",
                    "params:pretrain.stage1",
                ],
                "stage1_no_distill_result",
                name="train_stage1_no_distill",
            ),
            Node(
                nodes.score_ablation_encoders,
                [
                    "global_only_result",
                    "stage1_no_distill_result",
                    "stage1_result",
                    "shards",
                    "params:evaluate",
                ],
                "ablation_encoder_probes",
                name="score_ablation_encoders",
            ),
            Node(
                nodes.build_ablation_table,
                ["ablation_encoder_probes", "evaluation_report"],
                ["ablation_table", "ablation_table_markdown"],
                name="build_ablation_table",
            ),
            Node(
                nodes.render_ablation_report,
                [
                    "evaluation_report",
                    "report_examples",
                    "stage2_result",
                    "params:evaluate",
                    "ablation_table",
                ],
                "evaluation_report_ablation_html",
                name="render_ablation_report",
            ),
        ]
    )
