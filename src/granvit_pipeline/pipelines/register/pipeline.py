"""``register``: evaluation report + stage-2 export -> registered version -> promotion decision."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from granvit_pipeline.pipelines.register import nodes

# The tracking hooks give nodes with this tag a nested MLflow run of their own, and
# MLFLOW_RUN_ID / MLFLOW_TRACKING_URI while they run (conf/base/mlflow.yml `nested_runs`).
RUN_TAG = "mlflow_run"


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.register_encoder,
                [
                    "evaluation_report",
                    "stage2_result",
                    "params:pretrain",
                    "params:adapt",
                    "params:evaluate",
                    "params:register",
                ],
                "registered_encoder",
                name="register_encoder",
                tags=[RUN_TAG],
            ),
            Node(
                nodes.promote_encoder,
                ["registered_encoder", "params:register"],
                "promotion_decision",
                name="promote_encoder",
                tags=[RUN_TAG],
            ),
        ]
    )
