from kedro.pipeline import Node, Pipeline

from granvit_pipeline.pipelines.validate import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.check_regions,
                inputs=["raw_regions", "params:validate", "params:ingest"],
                outputs="validation_result",
                name="check_regions",
            ),
            Node(
                nodes.render_validation_report,
                inputs=["validation_result", "raw_regions"],
                outputs=["validation_report_json", "validation_report_html"],
                name="render_validation_report",
            ),
            # Takes the report so that it is written before a threshold failure stops the run.
            Node(
                nodes.accept_regions,
                inputs=["raw_regions", "validation_result", "validation_report_json"],
                outputs="regions",
                name="accept_regions",
            ),
        ]
    )
