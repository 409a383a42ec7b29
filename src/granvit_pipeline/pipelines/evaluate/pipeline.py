"""``evaluate``: load the stage-2 export, score the val split, write the metrics JSON."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from granvit_pipeline.pipelines.evaluate import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.load_model,
                ["stage2_result", "params:evaluate"],
                "evaluation_model",
                name="load_evaluation_model",
            ),
            Node(
                nodes.score_regions,
                ["evaluation_model", "shards", "params:evaluate"],
                "region_metrics",
                name="score_regions",
            ),
            Node(
                nodes.score_probe,
                ["evaluation_model", "shards", "params:evaluate"],
                "probe_metrics",
                name="score_probe",
            ),
            Node(
                nodes.build_report,
                ["region_metrics", "probe_metrics", "stage2_result", "shards", "params:evaluate"],
                "evaluation_report",
                name="build_evaluation_report",
            ),
        ]
    )
