"""``ablation``: base encoder + stage 1 without distillation, probed like every encoder, and
the table, and the run report with the table. Needs the default run's outputs
(stage1_result, stage2_result, evaluation_report, report_examples)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from granvit_pipeline.pipelines.ablation import nodes
from granvit_pipeline.pipelines.evaluate import nodes as evaluate_nodes
from granvit_pipeline.pipelines.pretrain.pipeline import create_base_encoder_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    return create_base_encoder_pipeline() + Pipeline(
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
                evaluate_nodes.render_run_report,
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
