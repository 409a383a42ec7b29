"""``evaluate``: load the stage-2 export, score the val split, write the metrics JSON and the
HTML run report (with a headless-Chromium screenshot when Chromium is installed)."""

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
            Node(
                nodes.pick_report_examples,
                ["evaluation_model", "shards", "params:evaluate"],
                "report_examples",
                name="pick_report_examples",
            ),
            Node(
                nodes.render_run_report,
                ["evaluation_report", "report_examples", "stage2_result", "params:evaluate"],
                "evaluation_report_html",
                name="render_run_report",
            ),
            Node(
                nodes.screenshot_run_report,
                ["evaluation_report_html", "params:evaluate"],
                "evaluation_report_screenshot",
                name="screenshot_run_report",
            ),
        ]
    )
